"""Provides `ContainerTable`, the table of one user's containers."""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable

from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from sshpanel.access.units import format_age
from sshpanel.backend.views import ContainerView
from sshpanel.tui.widgets.log_view import drawn

COLUMNS = (
    ("NAME", "name"),
    ("IMAGE", "image"),
    ("STATE", "state"),
    ("STATUS", "status"),
    ("PORTS", "ports"),
    ("CREATED", "created"),
)
"""Column labels and keys, in display order (as `docker ps` prints them)."""

STATE_STYLES = {
    "running": "bold green",
    "restarting": "yellow",
    "paused": "yellow",
    "created": "cyan",
    "exited": "red",
    "dead": "bold red",
    "removing": "dim",
}
"""Rich style of each Docker state in the STATE column."""

SHRINK_ORDER = (("image", 12), ("ports", 9), ("status", 12))
"""Columns shortened (with `…`) when the table is too narrow, in this order,
each never below the given width."""


def shorten(text: str, width: int) -> str:
    """Shortens text to `width` characters, ending it with `…` when cut."""
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


class ContainerTable(DataTable):
    """A table of containers that keeps the cursor on the same container
    across refreshes.

    Rows are keyed by full container ID. Every cell is a `Text`, never a
    `str`, so that names, images and Docker's texts are not read as markup.

    Args:
        cursor_moved: Called at once, in the same call as the cursor's move,
            whenever it lands on another row: what follows the selection
            then redraws in the same frame as the table (issue 8, keystroke
            latency; DataTable's `RowHighlighted` message arrives after the
            table's frame is sent).
        id: Widget id.
        classes: CSS classes.
    """

    def __init__(self, *, cursor_moved: Callable[[], None] | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._views: dict[str, ContainerView] = {}
        """The containers shown, by ID, in display order."""
        self._cursor_moved = cursor_moved

    def on_mount(self) -> None:
        """Adds the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def watch_cursor_coordinate(self, old_coordinate: Coordinate, new_coordinate: Coordinate) -> None:
        """Moves the highlight (DataTable's own watcher), then calls `cursor_moved`."""
        super().watch_cursor_coordinate(old_coordinate, new_coordinate)
        if old_coordinate.row != new_coordinate.row and self._cursor_moved is not None:
            self._cursor_moved()

    @property
    def selected_container(self) -> ContainerView | None:
        """The container under the cursor, or None when the table is empty."""
        if not self._views or self.row_count == 0:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        key = self.coordinate_to_cell_key((row, 0)).row_key.value
        return self._views.get(key or "")

    def select_container(self, name: str) -> bool:
        """Moves the cursor to the container named `name` (its short name);
        returns False when no such container is shown."""
        for row, view in enumerate(self._views.values()):
            if view.name == name:
                self.move_cursor(row=row)
                return True
        return False

    @property
    def containers(self) -> list[ContainerView]:
        """The containers shown, in display order."""
        return list(self._views.values())

    def show_containers(self, views: Iterable[ContainerView], now: dt.datetime | None = None) -> None:
        """Shows these containers, updating rows in place when the set is unchanged.

        Args:
            views: The containers, in display order.
            now: The current time for the CREATED column (defaults to now).
        """
        views = list(views)
        now = now or dt.datetime.now(dt.timezone.utc)
        limits = self._fit_widths(views, now)
        rows = {view.id: self._cells(view, now, limits) for view in views}
        same_rows = list(rows) == list(self._views)
        selected = None if same_rows else self.selected_container
        # Before the rows change: a cursor move while they do reads the new views.
        self._views = {view.id: view for view in views}
        if same_rows:
            for key, cells in rows.items():
                for (_, column), cell in zip(COLUMNS, cells):
                    # Every update re-renders the table, and a width update lays out the
                    # screen again: skip unchanged cells, widths only when the text's width
                    # changed ("5m ago" -> "6m ago" keeps it; issue 8, idle CPU).
                    old = self.get_cell(key, column)
                    if (old.plain, old.style, old.spans) != (cell.plain, cell.style, cell.spans):
                        self.update_cell(key, column, cell, update_width=old.cell_len != cell.cell_len)
        else:
            self.clear()
            for key, cells in rows.items():
                self.add_row(*cells, key=key)
            if selected is not None and selected.id in rows:
                self.move_cursor(row=list(rows).index(selected.id), animate=False)

    def on_resize(self, event: events.Resize) -> None:
        """Refits the columns to the new width."""
        if self._views:
            self.show_containers(list(self._views.values()))

    def _fit_widths(self, views: list[ContainerView], now: dt.datetime) -> dict[str, int]:
        """Widths of the shrinkable columns so that every column fits the table."""
        widest = {key: len(label) for label, key in COLUMNS}
        for view in views:
            for (_, key), text in zip(COLUMNS, self._texts(view, now)):
                widest[key] = max(widest[key], len(text))
        if not self.size.width:
            return widest
        padding = 2 * self.cell_padding * len(COLUMNS) + 2  # + vertical scrollbar
        excess = sum(widest.values()) + padding - self.size.width
        for key, minimum in SHRINK_ORDER:
            if excess <= 0:
                break
            cut = min(excess, max(0, widest[key] - minimum))
            widest[key] -= cut
            excess -= cut
        return widest

    @staticmethod
    def _texts(view: ContainerView, now: dt.datetime) -> tuple[str, ...]:
        return (drawn(view.name), drawn(view.image), view.state, drawn(view.status), drawn(view.ports),
                format_age((now - view.created).total_seconds(), compact=True))

    def _cells(self, view: ContainerView, now: dt.datetime, limits: dict[str, int]) -> tuple[Text, ...]:
        name, image, state, status, ports, created = self._texts(view, now)
        return (
            Text(name, style="bold"),
            Text(shorten(image, limits["image"])),
            Text(state, style=STATE_STYLES.get(state, "")),
            Text(shorten(status, limits["status"])),
            Text(shorten(ports, limits["ports"])),
            Text(created),
        )
