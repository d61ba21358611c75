"""Provides `OutputLog`, a bounded log of a process's stdout and stderr
(stderr in red), and `OutputInbox`, the thread-safe, bounded hand-off of
output bytes from a worker thread to the event loop."""

from __future__ import annotations

import codecs
import collections
import threading

from rich.text import Text
from textual.widgets import RichLog

from sshpanel.backend.engine import STDERR, STDOUT
from sshpanel.tui.widgets.log_view import drawn

STREAM_STYLES = {STDOUT: "", STDERR: "red"}
"""Rich style of each stream's lines."""

MAX_LINE = 4096
"""Characters after which a line without a newline is shown anyway."""


class OutputLog(RichLog):
    """A scrolling log fed with raw output bytes, one line per line written.

    Bytes are decoded as UTF-8 per stream (a character split between two
    chunks is kept whole) and shown by whole lines; the oldest lines go once
    `max_lines` are shown, so any amount of output keeps memory bounded.

    Args:
        max_lines: Lines kept.
        id: Widget id.
    """

    def __init__(self, max_lines: int, *, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, wrap=True, markup=False, highlight=False, id=id)
        self._decoders = {stream: codecs.getincrementaldecoder("utf-8")("replace") for stream in STREAM_STYLES}
        self._partial = {stream: "" for stream in STREAM_STYLES}
        self.lines_written = 0
        """Lines written so far (the log itself keeps only the last ones)."""

    def feed(self, stream: int, data: bytes) -> None:
        """Adds output of one stream; complete lines appear at once.

        Args:
            stream: `STDOUT` or `STDERR` (anything else counts as stdout).
            data: Raw bytes as the process wrote them.
        """
        stream = stream if stream in STREAM_STYLES else STDOUT
        text = self._partial[stream] + self._decoders[stream].decode(data)
        *lines, rest = text.replace("\r\n", "\n").split("\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._partial[stream] = rest
        for line in lines:
            self.write_line(line, stream)

    def flush(self) -> None:
        """Shows what is left of unfinished lines (call when the output ended)."""
        for stream, decoder in self._decoders.items():
            rest = self._partial[stream] + decoder.decode(b"", True)
            self._partial[stream] = ""
            if rest:
                self.write_line(rest, stream)

    def write_line(self, line: str, stream: int = STDOUT, style: str | None = None) -> None:
        """Writes one line (never read as markup; after a carriage return only
        what follows it, as a terminal shows it; control codes made visible).

        Args:
            line: The text, without its newline.
            stream: Picks the style when `style` is None.
            style: A Rich style overriding the stream's.
        """
        self.lines_written += 1
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]  # a progress bar: what a terminal would show last
        self.write(Text(drawn(line), style=STREAM_STYLES.get(stream, "") if style is None else style))


class OutputInbox:
    """Output chunks handed from a worker thread to the event loop.

    `put` never blocks the writer: when the loop falls more than `limit`
    bytes behind, the oldest chunks are dropped and counted.

    Args:
        limit: Bytes kept at most.
    """

    def __init__(self, limit: int = 1024 * 1024) -> None:
        self.limit = limit
        """Bytes kept at most."""
        self._lock = threading.Lock()
        self._chunks: collections.deque[tuple[int, bytes]] = collections.deque()
        self._size = 0
        self._dropped = 0

    def put(self, stream: int, data: bytes) -> bool:
        """Adds a chunk (any thread).

        Returns:
            True when the inbox was empty, i.e. the reader must be woken up.
        """
        with self._lock:
            was_empty = not self._chunks and not self._dropped
            self._chunks.append((stream, data))
            self._size += len(data)
            while self._size > self.limit and len(self._chunks) > 1:
                _, old = self._chunks.popleft()
                self._size -= len(old)
                self._dropped += len(old)
            return was_empty

    def take(self) -> tuple[list[tuple[int, bytes]], int]:
        """Removes everything (event loop).

        Returns:
            (the chunks in order, bytes dropped before them).
        """
        with self._lock:
            chunks, dropped = list(self._chunks), self._dropped
            self._chunks.clear()
            self._size = self._dropped = 0
            return chunks, dropped
