"""Provides `AuditLogScreen`, the audit log newest first, filtered by user,
action and outcome, with the selected entry shown in full."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Input, Select, Static

from sshpanel.backend.records import AuditView
from sshpanel.tui.screens.admin_base import AdminSectionScreen
from sshpanel.tui.widgets.admin_tables import AuditTable, outcome_style
from sshpanel.tui.widgets.log_view import drawn

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin

LIMIT = 500
"""Entries loaded at most (the newest)."""

FILTER_DEBOUNCE = 0.4
"""Seconds after the last keystroke in a filter before the log is reloaded."""

OUTCOMES = (("any outcome", ""), ("ok", "ok"), ("failed", "failed"), ("error", "error"))
"""Choices of the outcome filter: label and the prefix the backend matches."""


def entry_details(entry: AuditView) -> Text:
    """Formats every field of one entry for the detail lines under the table.

    Args:
        entry: The entry.
    """
    return Text.assemble(
        (entry.time.strftime("%Y-%m-%d %H:%M:%S UTC"), "bold"), "  ", (drawn(entry.actor), "bold"),
        f"  from {drawn(entry.source or '-')}\n",
        f"key {drawn(entry.fingerprint or '-')}\n",
        (drawn(entry.action), "bold"), f" {drawn(entry.target or '-')}: ",
        (drawn(entry.outcome), outcome_style(entry.outcome)),
    )


class AuditLogScreen(AdminSectionScreen):
    """Every action of every user, newest first; the filters reload the log
    as you type."""

    LABEL = "Audit log"

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self, admin: Admin, sections: Sequence[type[AdminSectionScreen]]) -> None:
        super().__init__(admin, sections)
        self._debounce: Timer | None = None

    def compose_section(self) -> ComposeResult:
        """Filters, the table, the selected entry."""
        with Horizontal(id="audit-filters"):
            yield Input(placeholder="user", id="audit-user", compact=True)
            yield Input(placeholder="action (run, user.add…)", id="audit-action", compact=True)
            yield Select(OUTCOMES, value="", allow_blank=False, id="audit-outcome", compact=True)
        yield AuditTable(id="audit-table")
        yield Static("", id="audit-detail", markup=False)

    def on_mount(self) -> None:
        """Loads the newest entries; the table has the focus."""
        super().on_mount()
        self.query_one(AuditTable).focus()
        self.reload()

    @property
    def table(self) -> AuditTable:
        """The audit table."""
        return self.query_one(AuditTable)

    def action_focus_filter(self) -> None:
        """Moves the focus to the user filter (Tab goes on to the others)."""
        self.query_one("#audit-user", Input).focus()

    def action_reload(self) -> None:
        """Reloads the log with the current filters."""
        self.reload()

    def reload(self) -> None:
        """Loads the newest entries that match the filters (a load still
        running is superseded)."""
        user = self.query_one("#audit-user", Input).value.strip() or None
        action = self.query_one("#audit-action", Input).value.strip() or None
        outcome = self.query_one("#audit-outcome", Select).value
        prefix = outcome if isinstance(outcome, str) and outcome else None
        self.call_backend(
            lambda: self.admin.audit_log(user=user, action=action, outcome=prefix, limit=LIMIT),
            self._show_entries,
            failed=self.load_failed,
            group="audit",
            exclusive=True,
        )

    def _show_entries(self, entries: list[AuditView]) -> None:
        self.load_succeeded()
        self.table.show(entries)
        self.sub_title = f"{self.LABEL} · {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
        self._show_detail()

    @on(Input.Changed)
    def filter_typed(self) -> None:
        """Reloads shortly after the last keystroke."""
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(FILTER_DEBOUNCE, self._debounced_reload)

    def _debounced_reload(self) -> None:
        self._debounce = None
        self.reload()

    @on(Input.Submitted)
    @on(Select.Changed, "#audit-outcome")
    def filter_chosen(self) -> None:
        """Reloads at once (Enter in a filter, another outcome chosen)."""
        self.reload()

    @on(DataTable.RowHighlighted, "#audit-table")
    def _show_detail(self) -> None:
        """Shows every field of the selected entry under the table."""
        entry = self.table.selected
        self.query_one("#audit-detail", Static).update(entry_details(entry) if entry is not None else "")
