"""Provides `LogView`, a container's log lines in a scrollable view bounded
in lines and in bytes that renders only the lines on screen: stderr in red,
lines the follower cut marked as such, optional timestamps,
search matches highlighted, and a filter that keeps only matching lines;
and `drawn`, one line of user or container text as one row, made
`visible`."""

from __future__ import annotations

import collections
from typing import Iterable

from rich.cells import cell_len
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sshpanel.access.text import visible
from sshpanel.access.units import format_bytes
from sshpanel.backend.user.logs import LogLine, find_matches

STAMP_WIDTH = 31
"""Cells of a timestamp column (`2024-05-01T12:00:00.123456789Z `)."""
MATCH_STYLE = "black on yellow"
"""Style of search matches."""
CUT_STYLE = "reverse"
"""Style of the marker after a line that was cut."""


def drawn(text: str) -> str:
    """Returns one log line as drawn: control characters made `visible`
    (no escape sequence a container writes reaches the user's terminal; a
    newline inside a line too, so one line stays one row), tabs expanded."""
    return visible(text).replace("\n", "\\x0a").expandtabs(8)


def _cells(text: str) -> int:
    """Terminal cells of drawable text (`rich.cells.cell_len` goes character
    by character through long lines; ASCII is one cell each)."""
    return len(text) if text.isascii() else cell_len(text)


def cut_marker(cut: int) -> str:
    """The marker drawn after a line the follower cut: how much was dropped."""
    return f" … {format_bytes(cut)} more"


class LogView(ScrollView, can_focus=True):
    """A bounded log: the newest `max_lines` lines within `max_bytes`,
    drawn lazily.

    Only the lines on screen are rendered, so adding lines costs the same
    whatever the buffer holds, and a filter or a search is one pass over at
    most `max_lines` lines.

    Args:
        max_lines: Lines kept; older ones are dropped.
        max_bytes: Bytes kept (`LogLine.cost`: the text and what holds it);
            older lines are dropped (the newest line is always kept).
        id: Widget id.
    """

    def __init__(self, max_lines: int, max_bytes: int | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        """Lines kept."""
        self.max_bytes = max_bytes
        """Bytes kept (None: only `max_lines` bounds the view)."""
        self.kept_bytes = 0
        """What the kept lines cost (`LogLine.cost`), bytes."""
        self.query = ""
        """The search text ('' for none), matched regardless of case."""
        self.filtering = False
        """Show only lines that match `query`."""
        self.timestamps = False
        """Show Docker's timestamp before each line."""
        self._all: collections.deque[LogLine] = collections.deque()
        self._shown: collections.deque[LogLine] = collections.deque(maxlen=max_lines)
        self._width = 0
        self._to_newest = False
        """A scroll to the newest line waits for the next refresh (the new
        size must be laid out first); `hold` drops it."""

    @property
    def line_count(self) -> int:
        """Lines kept (whether shown or filtered out)."""
        return len(self._all)

    @property
    def shown_count(self) -> int:
        """Lines shown."""
        return len(self._shown)

    @property
    def shown_lines(self) -> list[LogLine]:
        """The lines shown, oldest first."""
        return list(self._shown)

    def match_count(self) -> int:
        """Lines kept that match the search ('' matches nothing)."""
        return sum(1 for line in self._all if self._matches(line)) if self.query else 0

    def add(self, lines: Iterable[LogLine], follow: bool) -> None:
        """Appends lines; the oldest go beyond `max_lines` or `max_bytes`.

        Args:
            lines: New lines, oldest first.
            follow: Scroll to the newest line afterwards; otherwise the view
                stays on the lines it shows.
        """
        before = len(self._shown)
        added = 0
        for line in lines:
            self._all.append(line)
            self.kept_bytes += line.cost
            self._drop_oldest()
            if self._visible(line):
                self._shown.append(line)
                self._width = max(self._width, self._line_width(line))
                added += 1
        if not added:
            return
        dropped = before + added - len(self._shown)
        self.virtual_size = Size(self._width, len(self._shown))
        if follow:
            self.to_newest()
        elif dropped:  # keep showing the same lines while older ones go
            self.scroll_to(y=max(0, self.scroll_offset.y - dropped), animate=False, immediate=True)
        self.refresh()

    def clear(self) -> None:
        """Drops every line (the screen closes: nothing stays held)."""
        self._all.clear()
        self._shown.clear()
        self.kept_bytes = self._width = 0
        self.virtual_size = Size(0, 0)

    def _drop_oldest(self) -> None:
        """Drops the oldest lines beyond `max_lines` or `max_bytes` (the
        newest is kept), from the shown lines too."""
        while len(self._all) > 1 and (len(self._all) > self.max_lines or (
                self.max_bytes is not None and self.kept_bytes > self.max_bytes)):
            oldest = self._all.popleft()
            self.kept_bytes -= oldest.cost
            if self._shown and self._shown[0] is oldest:
                self._shown.popleft()

    def show(self, *, query: str | None = None, filtering: bool | None = None, timestamps: bool | None = None) -> None:
        """Changes what is shown and how; the view is rebuilt from the kept lines.

        Args:
            query: New search text.
            filtering: Keep only matching lines.
            timestamps: Show timestamps.
        """
        if query is not None:
            self.query = query
        if filtering is not None:
            self.filtering = filtering
        if timestamps is not None:
            self.timestamps = timestamps
        self._shown = collections.deque((line for line in self._all if self._visible(line)), maxlen=self.max_lines)
        self._width = max((self._line_width(line) for line in self._shown), default=0)
        self.virtual_size = Size(self._width, len(self._shown))
        self.refresh()

    def jump_to_match(self, forward: bool = True) -> bool:
        """Scrolls to the next (or previous) shown line that matches.

        Returns:
            False when no other line matches.
        """
        if not self.query:
            return False
        self.hold()
        lines = list(self._shown)
        middle = self.scroll_offset.y + max(0, self.size.height // 2)
        order = range(middle + 1, len(lines)) if forward else range(min(middle, len(lines)) - 1, -1, -1)
        for index in order:
            if self._matches(lines[index]):
                self.scroll_to(y=max(0, index - self.size.height // 2), animate=False, immediate=True)
                return True
        return False

    def to_newest(self) -> None:
        """Scrolls to the newest line, once the new size is laid out (after
        the next refresh), unless `hold` is called before."""
        self._to_newest = True
        self.call_after_refresh(self._scroll_to_newest)

    def hold(self) -> None:
        """Keeps the view where it is now: a scroll to the newest line that
        still waits for the refresh is dropped (pausing right after a batch
        of lines must not move the view once more)."""
        self._to_newest = False

    def _scroll_to_newest(self) -> None:
        if self._to_newest:
            self._to_newest = False
            self.scroll_end(animate=False, x_axis=False, immediate=True)

    def _matches(self, line: LogLine) -> bool:
        return bool(self.query) and self.query.casefold() in line.text.casefold()

    def _visible(self, line: LogLine) -> bool:
        return not self.filtering or not self.query or self._matches(line)

    def _line_width(self, line: LogLine) -> int:
        marker = cell_len(cut_marker(line.cut)) if line.cut else 0
        return _cells(drawn(line.text)) + marker + (STAMP_WIDTH if self.timestamps else 0)

    def lines_on_screen(self) -> list[str]:
        """The lines in the view's window, as drawn (escaped, with their
        timestamps when shown, without styles): what `y` copies."""
        top = max(int(self.scroll_offset.y), 0)
        shown = list(self._shown)[top:top + max(self.size.height, 1)]
        return [self.format_line(line).plain for line in shown]

    def format_line(self, line: LogLine, cells: int | None = None) -> Text:
        """The line as drawn: timestamp (dim), text (stderr red), matches
        highlighted, the marker of a cut line.

        Args:
            line: The line.
            cells: Only the first `cells` characters of the text are needed
                (the right edge of the view): rendering a 4 KiB line whole
                for every row of every frame would cost a flood's viewer
                most of a core.
        """
        text = Text(no_wrap=True, end="")
        if self.timestamps:
            text.append(f"{line.timestamp or '-':<{STAMP_WIDTH - 1}} ", style="dim")
        offset = len(text)
        body = drawn(line.text)
        cropped = cells is not None and len(body) > cells
        if cropped:
            body = body[:cells]
        text.append(body, style="red" if line.stream == "stderr" else "")
        for start, end in find_matches(body, self.query):
            text.stylize(MATCH_STYLE, offset + start, offset + end)
        if line.cut and not cropped:
            text.append(cut_marker(line.cut), style=CUT_STYLE)
        return text

    def render_line(self, y: int) -> Strip:
        """Renders the line at row `y` of the widget."""
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._shown):
            return Strip.blank(width, style)
        text = self.format_line(self._shown[index], scroll_x + width)
        text.stylize_before(style)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, style).apply_offsets(scroll_x, index)
