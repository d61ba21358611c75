"""Provides `ContainerGraphs`, the larger CPU and memory graphs of one
container over the last minutes, with its network, block I/O and pids."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from sshpanel.access.units import format_bytes
from sshpanel.tui.widgets.graphs import bar_rows, scale_top
from sshpanel.tui.widgets.stats_panel import CPU_FLOOR, HISTORY, MEMORY_FLOOR, StatsWatcher, cpu_detail, rate

if TYPE_CHECKING:
    from sshpanel.backend.engine.stats import WorkspaceStats

FIXED_LINES = 5
"""Lines that are not graph rows: two titles, network, block I/O, time axis."""


class ContainerGraphs(StatsWatcher):
    """CPU and memory graphs of one container filling the widget, newest on
    the right, each on a scale from 0 to its peak (with a floor, so that an
    idle container stays flat).

    Args:
        stats: The user's view of the collector.
        docker_id: Full ID of the container shown.
        span: Seconds the kept samples cover (for the time axis).
        id: Widget id.
    """

    def __init__(self, stats: WorkspaceStats | None, docker_id: str, span: float, *, id: str | None = None) -> None:
        super().__init__(stats, id=id)
        self.docker_id = docker_id
        """The container shown."""
        self.span = span
        """Seconds the kept samples cover."""

    def render(self) -> Text:
        """Draws both graphs and the figure lines at the widget's size."""
        if self.error is not None:
            return Text(f"Stats unavailable: {self.error.message}", style="yellow")
        samples = self.samples(self.docker_id)
        if not samples:
            return Text("Not running, or waiting for the first sample…", style="dim")
        latest = samples[-1]
        width, height = self.size.width, self.size.height
        rows = max(1, (height - FIXED_LINES) // 2)
        cpu_values = [s.cpu_percent for s in samples]
        memory_values = [float(s.memory) for s in samples]
        cpu_top = scale_top(cpu_values, CPU_FLOOR)
        memory_top = scale_top(memory_values, MEMORY_FLOOR)
        text = Text()
        self._title(text, "CPU", f"{latest.cpu_percent:.1f}% of one CPU · {cpu_detail(latest)}",
                    f"scale {cpu_top:.3g}%", width)
        for line in bar_rows(cpu_values, cpu_top, width, rows):
            text.append(line + "\n", style="green")
        memory = f"{format_bytes(latest.memory)} / {format_bytes(latest.memory_limit)} ({latest.memory_percent:.1f}%)"
        self._title(text, "Memory", memory, f"scale {format_bytes(int(memory_top))}", width)
        for line in bar_rows(memory_values, memory_top, width, rows):
            text.append(line + "\n", style="magenta")
        text.append("Network   ", style="bold")
        text.append(f"↓ {rate(latest.net_rx_rate)}  ↑ {rate(latest.net_tx_rate)}  "
                    f"(since start {format_bytes(latest.net_rx)} / {format_bytes(latest.net_tx)})\n")
        text.append("Block I/O ", style="bold")
        text.append(f"read {rate(latest.block_read_rate)}  write {rate(latest.block_write_rate)}  ·  ")
        text.append("PIDs ", style="bold")
        text.append(f"{latest.pids}\n")
        left, right = f"← {self.span / 60:g} min", "now →"
        text.append(left + " " * max(1, width - len(left) - len(right)) + right, style="dim")
        return text

    @staticmethod
    def _title(text: Text, label: str, figures: str, scale: str, width: int) -> None:
        """One title line: label and figures on the left, the scale on the right."""
        left = f"{label} {figures}"
        gap = max(1, width - len(left) - len(scale))
        text.append(label, style="bold")
        text.append(f" {figures}" + " " * gap)
        text.append(scale + "\n", style="dim")


def history_span(stats: WorkspaceStats | None) -> float:
    """Seconds that `HISTORY` samples cover at the collector's interval."""
    interval = stats.collector.interval if stats is not None else 2.0
    return HISTORY * interval
