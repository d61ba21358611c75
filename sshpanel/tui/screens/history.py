"""Provides `HistoryScreen`, the user's (or one container's) deployments and
failures: a bar chart per day over the last 30 days and the timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from sshpanel.backend.user.history import DailyCount, HistoryEntry
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.widgets.history_views import DailyChart, HistoryTable, outcome_text
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import drawn

if TYPE_CHECKING:
    from sshpanel.backend.user.history import WorkspaceHistory

DAYS = 30
"""Days the chart and the timeline cover."""
EVENTS = 500
"""Events the timeline shows at most."""


class HistoryScreen(PanelScreen[None]):
    """Deployments vs failures per day and the events behind them, newest
    first; the selected event's full detail (a provisioning run's last
    lines of output, for instance) below the table.

    Args:
        history: The user's history (blocking calls, run in thread workers).
        container: Only this container's history (its name: removed
            containers of that name included); None for all of the user's.
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self, history: WorkspaceHistory, container: str | None = None) -> None:
        super().__init__()
        self.history = history
        """The user's history; only ever called from thread workers."""
        self.container = container
        """The container shown, None for all."""

    def compose(self) -> ComposeResult:
        """Header, the chart, the timeline, the selected event's detail, the footer."""
        yield Header()
        yield DailyChart(id="daily-chart")
        yield HistoryTable(id="history-table")
        yield Static("", id="history-detail", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Loads the history."""
        self.title = "sshpanel"
        self.sub_title = f"History of {self.container}" if self.container else "History of your containers"
        self.action_reload()

    def action_reload(self) -> None:
        """Loads the daily counts and the events again."""
        container = self.container
        self.call_backend(
            lambda: (self.history.daily(DAYS, container), self.history.events(container, DAYS, EVENTS)),
            self._show,
            group="history",
            exclusive=True,
        )

    def _show(self, loaded: tuple[list[DailyCount], list[HistoryEntry]]) -> None:
        counts, entries = loaded
        self.query_one(DailyChart).show(counts)
        self.query_one(HistoryTable).show(entries)
        self.set_class(not entries, "-empty")
        self._show_detail()

    @on(DataTable.RowHighlighted, "#history-table")
    def _show_detail(self) -> None:
        entry = self.query_one(HistoryTable).selected
        detail = self.query_one("#history-detail", Static)
        if entry is None:
            detail.update(Text(f"No events in the last {DAYS} days.", style="dim"))
            return
        text = Text.assemble((f"{entry.kind} ", "bold"), drawn(entry.container or "-"), " ")
        text.append_text(outcome_text(entry))
        if entry.detail:
            text.append("\n" + "\n".join(drawn(line) for line in entry.detail.split("\n")))
        detail.update(text)

    def action_close(self) -> None:
        """Back to the previous screen."""
        self.app.pop_screen()
