"""Provides `StatsWatcher`, the base of widgets that follow the shared stats
collector, and `ContainerMonitor`, the dashboard's panel with the selected
container's CPU and memory (figures and sparklines) and what can be done
to it."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Callable, Iterable

from rich.text import Text
from textual.message import Message
from textual.widget import Widget

from sshpanel.access.units import format_bytes
from sshpanel.backend.engine.samples import ContainerStats, StatsRound
from sshpanel.backend.views import ContainerView
from sshpanel.errors import PanelError
from sshpanel.tui.widgets.graphs import scale_top, spark

if TYPE_CHECKING:
    from sshpanel.backend.engine.stats import WorkspaceStats

HISTORY = 150
"""Samples kept per container (5 minutes at the default 2 s interval, as
the collector keeps)."""

CPU_FLOOR = 5.0
"""Smallest top of a CPU graph, percent of one CPU."""
MEMORY_FLOOR = 4 * 1024 * 1024
"""Smallest top of a memory graph, bytes."""

HINT = " ⏎ graphs  o shell  l logs  p provision  e edit"
"""What can be done to the selected container (keys not in the footer)."""


def rate(value: float) -> str:
    """Formats bytes per second in decimal units, as `docker stats` does
    for network and block I/O (`1.2kB/s`)."""
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.3g}{unit}/s"
        value /= 1000
    return f"{value:.3g}TB/s"


def cpu_detail(stats: ContainerStats) -> str:
    """The CPU figures besides `docker stats`' percent: share of the limit
    and of the host (`12% of 0.5 CPU limit, 0.8% of host`)."""
    host = f"{stats.cpu_host_percent:.1f}% of host"
    share = stats.cpu_limit_percent
    if share is None or not stats.cpu_limit:
        return host
    return f"{share:.1f}% of {stats.cpu_limit:g} CPU limit, {host}"


class StatsWatcher(Widget):
    """Follows the user's running containers through the shared collector
    (one subscription per widget, never a Docker stream of its own) and
    keeps the recent samples of each.

    Subscribes when mounted, unsubscribes when unmounted. Subclasses draw.

    Args:
        stats: The user's view of the collector; None shows nothing.
        id: Widget id.
    """

    class RoundArrived(Message):
        """A sampling round ended (posted from the collector thread).

        Args:
            stats_round: The user's running containers' samples.
        """

        def __init__(self, stats_round: StatsRound) -> None:
            super().__init__()
            self.stats_round = stats_round

    def __init__(self, stats: WorkspaceStats | None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stats = stats
        """The user's view of the shared collector."""
        self.error: PanelError | None = None
        """Set while the engine cannot be asked."""
        self.rounds = 0
        """Rounds received so far."""
        self._samples: dict[str, collections.deque[ContainerStats]] = {}
        self._unwatch: Callable[[], None] | None = None

    def on_mount(self) -> None:
        """Subscribes (no I/O: safe on the event loop)."""
        if self.stats is not None:
            self._unwatch = self.stats.watch(self._on_round)

    def on_unmount(self) -> None:
        """Unsubscribes, so that the collector lets go of this widget."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _on_round(self, stats_round: StatsRound) -> None:
        """Runs in the collector thread: only posts a message."""
        self.post_message(self.RoundArrived(stats_round))

    def on_stats_watcher_round_arrived(self, message: RoundArrived) -> None:
        """Keeps the new samples (containers that stopped are dropped) and
        redraws (the collector passes on an empty round only once: issue 8)."""
        stats_round = message.stats_round
        self.rounds += 1
        self.error = stats_round.error
        for gone in set(self._samples) - set(stats_round.stats):
            del self._samples[gone]
        for docker_id, stats in stats_round.stats.items():
            self._keep(docker_id, [stats])
        self.refresh()

    def prefill(self, docker_id: str, samples: Iterable[ContainerStats]) -> None:
        """Adds older samples of one container (from the collector's history).

        Args:
            docker_id: Full container ID.
            samples: Oldest first; those not older than what is kept are skipped.
        """
        kept = self._samples.get(docker_id)
        first = kept[0].time if kept else None
        older = [s for s in samples if first is None or s.time < first]
        self._keep(docker_id, older, at_start=True)
        self.refresh()

    def _keep(self, docker_id: str, samples: list[ContainerStats], at_start: bool = False) -> None:
        kept = self._samples.setdefault(docker_id, collections.deque(maxlen=HISTORY))
        if at_start:
            merged = samples + list(kept)
            kept.clear()
            kept.extend(merged[-HISTORY:])
        else:
            kept.extend(samples)

    def samples(self, docker_id: str) -> list[ContainerStats]:
        """The kept samples of one container, oldest first."""
        return list(self._samples.get(docker_id, ()))

    def latest(self, docker_id: str) -> ContainerStats | None:
        """The newest sample of one container, None when it has none."""
        kept = self._samples.get(docker_id)
        return kept[-1] if kept else None


class ContainerMonitor(StatsWatcher):
    """Three lines under the dashboard's table about the selected container:
    CPU and memory with sparklines of the last minutes, network and block
    I/O rates, pids, and the keys that act on it.

    Args:
        stats: The user's view of the collector.
        id: Widget id.
    """

    def __init__(self, stats: WorkspaceStats | None, *, id: str | None = None) -> None:
        super().__init__(stats, id=id)
        self.view: ContainerView | None = None
        """The selected container."""

    def select(self, view: ContainerView | None) -> None:
        """Shows this container (the table's selection); the same view again
        repaints nothing (issue 8, idle CPU)."""
        if view == self.view:
            return
        self.view = view
        self.border_title = "" if view is None else f"{view.name} · {view.state}"
        self.refresh()

    def render(self) -> Text:
        """Draws the two figure lines and the key hint."""
        hint = Text(HINT, style="dim")
        view = self.view
        if view is None:
            return Text("\n\n") + hint
        if self.error is not None:
            return Text(f" stats unavailable: {self.error.message}\n\n", style="yellow") + hint
        latest = self.latest(view.id)
        if latest is None:
            text = " not running" if not view.running else " waiting for the first sample…"
            return Text(text + "\n\n", style="dim") + hint
        samples = self.samples(view.id)
        width = self.size.width
        cpu_values = [s.cpu_percent for s in samples]
        memory_values = [float(s.memory) for s in samples]
        cpu_text = f"{latest.cpu_percent:5.1f}%"
        memory_text = f"{latest.memory_percent:5.1f}%"
        cpu_side = cpu_detail(latest)
        memory_side = f"{format_bytes(latest.memory)} / {format_bytes(latest.memory_limit)}"
        net = f"net ↓{rate(latest.net_rx_rate)} ↑{rate(latest.net_tx_rate)}"
        disk = f"io r{rate(latest.block_read_rate)} w{rate(latest.block_write_rate)} · pids {latest.pids}"
        side = max(len(cpu_side), len(memory_side)) + 2
        right = max(len(net), len(disk)) + 2
        if width - 17 - side - right < 10:
            cpu_side = f"{latest.cpu_limit_percent or 0:.1f}% of limit" if latest.cpu_limit else ""
            side = max(len(cpu_side), len(memory_side)) + 2
        graph = max(0, width - 17 - side - right)
        text = Text()
        text.append(" CPU    ", style="bold")
        text.append(cpu_text)
        text.append("  " + spark(cpu_values, scale_top(cpu_values, CPU_FLOOR), graph), style="green")
        text.append(f"  {cpu_side:<{side - 2}}  {net}\n")
        text.append(" Memory ", style="bold")
        text.append(memory_text)
        text.append("  " + spark(memory_values, scale_top(memory_values, MEMORY_FLOOR), graph), style="magenta")
        text.append(f"  {memory_side:<{side - 2}}  {disk}\n")
        return text + hint
