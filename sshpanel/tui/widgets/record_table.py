"""Provides `RecordTable`, the base of the admin tables: one row per record,
the cursor kept on the same record across refreshes, and long columns
shortened with `…` to fit the width."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, Iterable, TypeVar

from rich.text import Text
from textual import events
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from sshpanel.tui.widgets.log_view import drawn

R = TypeVar("R")


@dataclass(frozen=True)
class Column:
    """One column of a `RecordTable`.

    Attributes:
        label: Header text.
        key: Column key.
        shrink_to: Narrowest width the column may be shortened to when the
            table is too narrow; 0 when it is never shortened.
    """

    label: str
    key: str
    shrink_to: int = 0


def fit_widths(widest: dict[str, int], columns: Iterable[Column], excess: int) -> dict[str, int]:
    """Shortens shrinkable columns, in order, until `excess` cells are saved.

    Args:
        widest: Column key -> widest content (header included), cells.
        columns: The columns, in the order they give up room.
        excess: Cells too many for the available width.

    Returns:
        Column key -> width to show.
    """
    widths = dict(widest)
    for column in columns:
        if excess <= 0:
            break
        if column.shrink_to:
            cut = min(excess, max(0, widths[column.key] - column.shrink_to))
            widths[column.key] -= cut
            excess -= cut
    return widths


class RecordTable(DataTable, Generic[R]):
    """A row-cursor table of records (users, containers, keys, audit entries).

    Subclasses set `COLUMNS` and implement `record_key` and `cells`. Every
    cell is a `Text`, never a `str`, so user text is never read as markup.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    """The columns, in display order."""

    SHRINK_ORDER: ClassVar[tuple[str, ...]] = ()
    """Keys of the columns that give up room first (others follow in display order)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._records: dict[str, R] = {}
        self._widths: dict[str, int] = {}

    def record_key(self, record: R) -> str:
        """Returns the unique key of a record's row."""
        raise NotImplementedError

    def cells(self, record: R) -> tuple[Text, ...]:
        """Returns the cells of a record's row, one per column."""
        raise NotImplementedError

    @property
    def selected(self) -> R | None:
        """The record under the cursor, or None when the table is empty."""
        if not self._records or self.row_count == 0:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        key = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return self._records.get(key or "")

    @property
    def records(self) -> list[R]:
        """The records shown, in display order."""
        return list(self._records.values())

    def show(self, records: Iterable[R]) -> None:
        """Shows these records, in place when the rows and widths are unchanged.

        Args:
            records: The records, in display order.
        """
        keyed = self._keyed(records)
        rows = {key: tuple(_drawn(cell) for cell in self.cells(record)) for key, record in keyed.items()}
        widths = self._fit(rows.values())
        if list(rows) == list(self._records) and widths == self._widths:
            for key, cells in rows.items():
                for column, cell in zip(self.COLUMNS, cells):
                    self.update_cell(key, column.key, _cut(cell, widths[column.key]))
        else:
            selected = self.selected
            self.clear(columns=True)
            for column in self.COLUMNS:
                self.add_column(column.label, key=column.key, width=widths[column.key])
            for key, cells in rows.items():
                self.add_row(*(_cut(cell, widths[c.key]) for c, cell in zip(self.COLUMNS, cells)), key=key)
            if selected is not None and self.record_key(selected) in rows:
                self.move_cursor(row=list(rows).index(self.record_key(selected)), animate=False)
        self._records = keyed
        self._widths = widths

    def _keyed(self, records: Iterable[R]) -> dict[str, R]:
        """Records by row key, in order; a repeated key gets `#2`, `#3`..."""
        keyed: dict[str, R] = {}
        for record in records:
            key = base = self.record_key(record)
            count = 1
            while key in keyed:
                count += 1
                key = f"{base}#{count}"
            keyed[key] = record
        return keyed

    def on_mount(self) -> None:
        """Adds the columns (no rows yet)."""
        self.show([])

    def on_resize(self, event: events.Resize) -> None:
        """Refits the columns to the new width."""
        self.show(self.records)

    def _fit(self, rows: Iterable[tuple[Text, ...]]) -> dict[str, int]:
        """Widths of the columns so that all of them fit the table."""
        widest = {column.key: len(column.label) for column in self.COLUMNS}
        for cells in rows:
            for column, cell in zip(self.COLUMNS, cells):
                widest[column.key] = max(widest[column.key], cell.cell_len)
        if not self.size.width:
            return widest
        padding = 2 * self.cell_padding * len(self.COLUMNS) + 2  # + vertical scrollbar
        excess = sum(widest.values()) + padding - self.size.width
        by_key = {column.key: column for column in self.COLUMNS}
        order = [by_key[key] for key in self.SHRINK_ORDER]
        order += [column for column in self.COLUMNS if column.key not in self.SHRINK_ORDER]
        return fit_widths(widest, order, excess)


def _drawn(cell: Text) -> Text:
    """Returns the cell with its text made one row of `drawn` text (the
    records hold what users control: names, key comments, audit outcomes);
    a cell that changes loses its spans, keeps its style. The net under
    every table: `Text` has already dropped BEL, BS, VT, FF and CR, so a
    subclass draws its user fields itself to show those as escapes too."""
    shown = drawn(cell.plain)
    return cell if shown == cell.plain else Text(shown, style=cell.style)


def _cut(cell: Text, width: int) -> Text:
    """Returns the cell shortened to `width` cells, ending in `…` when cut."""
    if cell.cell_len <= width:
        return cell
    cut = cell.copy()
    cut.truncate(width, overflow="ellipsis")
    return cut
