"""Provides `QuotaBar`, one line with the user's containers, memory and CPUs
used against their quotas, and `meter`, the small bar it draws."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from sshpanel.access.units import format_bytes
from sshpanel.backend.records import QuotaView

WARN_RATIO = 0.8
"""From this share of a quota on, its meter turns yellow (red when full)."""


def meter(used: float, limit: float, width: int) -> Text:
    """Draws `used` of `limit` as a bar of `width` cells (`███░░░`).

    Args:
        used: The amount used (any unit, the same as `limit`).
        limit: The maximum; 0 or less draws the bar as full.
        width: Cells; 0 or less draws nothing.

    Returns:
        The bar: green under 80 %, yellow from 80 %, red when full.
    """
    if width <= 0:
        return Text()
    ratio = used / limit if limit > 0 else 1.0
    filled = min(width, round(max(0.0, ratio) * width))
    if used > 0 and filled == 0:
        filled = 1  # a little use is still visible
    style = "red" if ratio >= 1 else "yellow" if ratio >= WARN_RATIO else "green"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"))


def quota_parts(quota: QuotaView) -> list[tuple[str, float, float, str]]:
    """Returns (label, used, limit, text) of each quota the bar shows.

    Args:
        quota: The user's quotas and usage.
    """
    return [
        ("Containers", quota.containers, quota.max_containers, f"{quota.containers}/{quota.max_containers}"),
        ("Memory", quota.memory, quota.max_memory, f"{format_bytes(quota.memory)}/{format_bytes(quota.max_memory)}"),
        ("CPUs", quota.cpus, quota.max_cpus, f"{quota.cpus:g}/{quota.max_cpus:g}"),
    ]


class QuotaBar(Widget):
    """Containers, memory and CPUs used vs allowed, each with a meter that
    takes the room the line has left (none at all when it is too narrow).

    Attributes down: the screen calls `show_quota` with fresh figures.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.quota: QuotaView | None = None
        """The figures shown (None until loaded)."""

    def show_quota(self, quota: QuotaView) -> None:
        """Shows new figures.

        Args:
            quota: The user's quotas and usage; equal figures repaint nothing
                (issue 8, idle CPU).
        """
        if quota == self.quota:
            return
        self.quota = quota
        self.refresh()

    def render(self) -> Text:
        """Draws the line: `Containers ██░░ 2/10  Memory ███░ 512MiB/2GiB  CPUs █░░ 1/2`."""
        if self.quota is None:
            return Text("Quota: loading…", style="dim")
        parts = quota_parts(self.quota)
        fixed = sum(len(label) + len(text) + 2 for label, _, _, text in parts) + 2 * (len(parts) - 1)
        width = min(12, (self.content_size.width - fixed) // len(parts))
        line = Text()
        for index, (label, used, limit, text) in enumerate(parts):
            if index:
                line.append("  ")
            line.append(f"{label} ", style="bold")
            if width >= 3:
                line.append_text(meter(used, limit, width))
            line.append(f" {text}")
        return line
