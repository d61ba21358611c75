"""Provides `HostOverview`, the host's CPU, memory, swap, disk, load, uptime
and Docker engine figures drawn with meters, and whether the engine's
containers are unprivileged."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from sshpanel.access.units import format_bytes, format_uptime
from sshpanel.backend.admin.host import HostView
from sshpanel.tui.widgets.quota_bar import meter

LABEL_WIDTH = 13
"""Width of the labels on the left, cells (the longest, `Unprivileged`, and a space)."""

CORE_CELL = 21
"""Width of one core's entry in the per-core grid (`cpu12 ████░░░  75%`), cells."""


def percent(used: float, total: float) -> str:
    """Returns `used` as a share of `total`, `31%` (`-` when total is 0)."""
    return f"{100 * used / total:.0f}%" if total > 0 else "-"


class HostOverview(Widget):
    """The host overview, redrawn for each new `HostView`.

    Attributes down: the screen calls `show_host` with fresh figures.
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.host: HostView | None = None
        """The figures shown (None until the first measurement)."""

    def show_host(self, host: HostView) -> None:
        """Shows new figures.

        Args:
            host: The measurement.
        """
        self.host = host
        self.refresh(layout=True)

    def render(self) -> Text:
        """Draws one line per figure, and the cores in a grid under the CPU line."""
        host = self.host
        if host is None:
            return Text("Measuring the host…", style="dim")
        width = max(20, self.content_size.width or 80)
        bar = max(4, min(40, width - LABEL_WIDTH - 32))
        lines = [
            self._line("CPU", meter(host.cpu_percent, 100, bar), f" {host.cpu_percent:5.1f}%  "
                       f"{len(host.cpu_per_core)} core{'s' if len(host.cpu_per_core) != 1 else ''}"),
            *self._cores(host.cpu_per_core, width),
            self._line("Memory", meter(host.memory_used, host.memory_total, bar),
                       f" {format_bytes(host.memory_used)} / {format_bytes(host.memory_total)}"
                       f" ({percent(host.memory_used, host.memory_total)})"),
            self._line("Swap", meter(host.swap_used, host.swap_total, bar) if host.swap_total else Text("none"),
                       f" {format_bytes(host.swap_used)} / {format_bytes(host.swap_total)}" if host.swap_total else ""),
            self._line("Disk", meter(host.disk_used, host.disk_total, bar),
                       f" {format_bytes(host.disk_used)} / {format_bytes(host.disk_total)}"
                       f" ({percent(host.disk_used, host.disk_total)})"),
            self._line("", Text(host.disk_path, style="dim")),
            self._line("Load", Text(" ".join(f"{value:.2f}" for value in host.load)), "  (1, 5, 15 min)"),
            self._line("Uptime", Text(format_uptime(host.uptime))),
            self._line("Engine", Text(f"Docker {host.engine_version} (API {host.api_version})")),
            self._line("Unprivileged", Text("true", style="green") if host.unprivileged else Text.assemble(
                ("false", "bold red"), " (root in a container is root on the host)")),
            self._line("Containers", Text.assemble(
                (f"{host.containers_running} running", "green"),
                f" · {host.containers_paused} paused · {host.containers_stopped} stopped"
                f" · {host.containers_total} total",
            )),
            self._line("Images", Text(str(host.images))),
        ]
        return Text("\n").join(lines)

    @staticmethod
    def _line(label: str, value: Text, suffix: str = "") -> Text:
        """One labelled line: `Memory     ████░░ 1GiB / 4GiB (25%)`."""
        return Text.assemble((label.ljust(LABEL_WIDTH), "bold"), value, suffix)

    @staticmethod
    def _cores(per_core: tuple[float, ...], width: int) -> list[Text]:
        """The cores in a grid, as many per line as fit."""
        per_line = max(1, (width - LABEL_WIDTH) // CORE_CELL)
        lines = []
        for start in range(0, len(per_core), per_line):
            line = Text(" " * LABEL_WIDTH)
            for index in range(start, min(start + per_line, len(per_core))):
                name = f"cpu{index}".ljust(5)
                line.append_text(Text.assemble(name, " ", meter(per_core[index], 100, 8),
                                               f" {per_core[index]:3.0f}%  "))
            lines.append(line)
        return lines
