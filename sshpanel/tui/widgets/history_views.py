"""Provides the history widgets: `DailyChart`, deployments and failures per
day as bars, `HistoryTable`, the timeline of events, and `last_record_text`,
the one line the dashboard shows about the newest record."""

from __future__ import annotations

from typing import Iterable, Sequence

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable

from sshpanel.backend.user.history import DailyCount, HistoryEntry
from sshpanel.tui.widgets.graphs import bar_rows
from sshpanel.tui.widgets.log_view import drawn

DEPLOYMENT_STYLE = "green"
FAILURE_STYLE = "red"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How event times are shown (UTC, as the history counts days)."""


def outcome_text(entry: HistoryEntry) -> Text:
    """`✓`/`✗` with the exit code when there is one (`✗ exit 3`)."""
    mark = Text("✓", style=DEPLOYMENT_STYLE) if entry.ok else Text("✗", style=FAILURE_STYLE)
    if entry.exit_code is not None:
        mark.append(f" exit {entry.exit_code}")
    return mark


def last_record_text(entry: HistoryEntry | None) -> Text:
    """The dashboard's line about the user's newest history record."""
    if entry is None:
        return Text("Last record: none yet", style="dim")
    text = Text.assemble(("Last record ", "bold"), f"{entry.time:%Y-%m-%d %H:%M} UTC  ")
    text.append(drawn(entry.container or "-"), style="bold")
    text.append(f" {entry.kind} ")
    text.append_text(outcome_text(entry))
    detail = drawn(entry.detail.split("\n", 1)[0])
    if detail:
        text.append(f"  {detail}", style="dim")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class DailyChart(Widget):
    """Deployments (green) and failures (red) per day as side-by-side bars,
    oldest day on the left, with the totals and a date axis."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.counts: list[DailyCount] = []
        """The days shown, oldest first."""

    def show(self, counts: Sequence[DailyCount]) -> None:
        """Shows these days."""
        self.counts = list(counts)
        self.refresh()

    def render(self) -> Text:
        """Legend line, bars, a base line, dates every week."""
        counts = self.counts
        if not counts:
            return Text("loading…", style="dim")
        width, height = self.size.width, self.size.height
        days = len(counts)
        step = max(2, min(4, (width - 5) // days))
        rows = max(1, height - 3)
        top = max(1, *(c.deployments for c in counts), *(c.failures for c in counts))
        values: list[float] = []
        styles: list[str] = []
        for count in counts:
            values += [count.deployments, count.failures] + [0] * (step - 2)
            styles += [DEPLOYMENT_STYLE, FAILURE_STYLE] + [""] * (step - 2)
        deployed = sum(c.deployments for c in counts)
        failed = sum(c.failures for c in counts)
        text = Text()
        text.append("■", style=DEPLOYMENT_STYLE)
        text.append(f" {deployed} deployments  ")
        text.append("■", style=FAILURE_STYLE)
        text.append(f" {failed} failures  ·  last {days} days (UTC)\n")
        for index, line in enumerate(bar_rows(values, top, len(values), rows)):
            label = str(top) if index == 0 else ""
            text.append(f"{label:>3} │", style="dim")
            for char, style in zip(line, styles):
                text.append(char if style else " ", style=style)
            text.append("\n")
        text.append("  0 └" + "─" * len(values) + "\n", style="dim")
        axis = [" "] * (len(values) + 10)  # room for the last label
        for index in range(days - 1, -1, -7):  # weekly, ending with today
            label = counts[index].date.strftime("%m-%d")
            start = 5 + index * step
            if start + len(label) <= len(axis):
                axis[start : start + len(label)] = label
        text.append("".join(axis).rstrip(), style="dim")
        return text


class HistoryTable(DataTable):
    """The timeline, newest first: time, container, kind, outcome, detail."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.entries: list[HistoryEntry] = []
        """The events shown, newest first."""

    def on_mount(self) -> None:
        """Adds the columns."""
        for label in ("TIME (UTC)", "CONTAINER", "KIND", "OK", "DETAIL"):
            self.add_column(label, key=label)

    @property
    def selected(self) -> HistoryEntry | None:
        """The event under the cursor."""
        if not self.entries or self.row_count == 0:
            return None
        return self.entries[min(max(self.cursor_row, 0), len(self.entries) - 1)]

    def show(self, entries: Iterable[HistoryEntry]) -> None:
        """Shows these events (the cursor goes back to the newest)."""
        self.entries = list(entries)
        self.clear()
        for entry in self.entries:
            self.add_row(
                Text(f"{entry.time:{TIME_FORMAT}}"),
                Text(drawn(entry.container or "-"), style="bold"),
                Text(entry.kind),
                outcome_text(entry),
                Text(drawn(entry.detail.split("\n", 1)[0][:80])),
            )
