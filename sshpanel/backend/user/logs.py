"""Provides `LogFollower`, a container's log stream read in its own thread
into a buffer bounded in lines and in bytes with stdout and stderr told
apart, `WorkspaceLogs`, which opens one for a user's own container, and
`trim_freed_memory`, which hands memory a closed viewer freed back to the
system (issue 26).

The Docker SDK's `logs(stream=True)` drops the stream type of each frame, so
the frames of `GET /containers/ID/logs` go through the engine seam's one
`FrameDecoder` (raw bytes when the container has a TTY). Closing
a follower shuts the HTTP socket down, which ends the reading thread at
once: a viewer that goes away leaves no thread and no Docker stream behind.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sshpanel.backend.engine import STDERR, Engine, FrameDecoder, translate_errors
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import EngineUnavailable, PanelError

MAX_LINE = 64 * 1024
"""Bytes after which a line without a newline is cut (a flood without
newlines must not grow memory)."""
CHUNK_COST = 1024
"""Bytes a chunk read from the engine counts in `max_rate` on top of its
length (each read costs the interpreter lock a round, whatever its size)."""
LINE_COST = 100
"""Bytes counted per line on top of its text in a byte budget (the objects
holding it)."""
_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ")


@dataclass(frozen=True)
class LogLine:
    """One line a container wrote.

    Attributes:
        stream: `stdout` or `stderr`.
        text: The line without its newline (invalid UTF-8 replaced).
        timestamp: Docker's RFC 3339 time of the line with nanoseconds
            (`2024-05-01T12:00:00.123456789Z`), as `docker logs -t` prints it.
        cut: Bytes of the line that were not kept (`LogFollower`'s
            `cut_at`); 0 for a whole line.
    """

    stream: str
    text: str
    timestamp: str
    cut: int = 0

    @property
    def cost(self) -> int:
        """What the line counts in a byte budget: its text plus `LINE_COST`."""
        return len(self.text) + LINE_COST

    @property
    def time(self) -> dt.datetime | None:
        """The timestamp as an aware datetime (microseconds), None if absent."""
        if not self.timestamp:
            return None
        head, _, rest = self.timestamp.rstrip("Z").partition(".")
        micros = (rest[:6]).ljust(6, "0") if rest else "000000"
        return dt.datetime.fromisoformat(f"{head}.{micros}").replace(tzinfo=dt.timezone.utc)


class LogFollower:
    """Reads one container's log in a thread into a bounded buffer.

    Args:
        engine: The Docker engine.
        docker_id: Full container ID (already resolved for its owner).
        follow: Keep reading new lines until closed or the container stops.
        tail: Start with only the last N lines; None for the whole log.
        since: Only lines from this time on (timezone-aware).
        max_lines: Lines the buffer holds.
        max_bytes: Bytes the buffer holds (`LogLine.cost`); None: no bound
            but `max_lines`.
        cut_at: Bytes of a line kept; the rest of it is dropped as it
            arrives and counted in `LogLine.cut` (a viewer never holds a
            60 KB line). None: lines longer than `MAX_LINE` are split.
        max_rate: Bytes a second read at most (a token bucket holding one
            second's worth; each chunk counts `CHUNK_COST` more). A faster
            log waits in the engine and is shown late: four viewers of
            floods reading as fast as the engine sends kept the interpreter
            lock so busy that other users' commands took 20 to 50 times as
            long (issue 26, `benchmarks/fig_neighbours.py`). None: no bound.
        drop_oldest: When the buffer is full, drop its oldest line (a screen
            that shows the newest lines) instead of waiting for `take` (a
            command that must print every line; Docker then waits too).

    Use: `start()` (blocks on Docker), then `take()` whenever a subscriber is
    told that lines arrived, and `close()` when done.

    Attributes:
        dropped: Lines dropped because the buffer was full (`drop_oldest`).
        error: Set when the stream broke before its end (not when closed).
    """

    def __init__(
        self,
        engine: Engine,
        docker_id: str,
        follow: bool = True,
        tail: int | None = None,
        since: dt.datetime | None = None,
        max_lines: int = 10_000,
        drop_oldest: bool = True,
        max_bytes: int | None = None,
        cut_at: int | None = None,
        max_rate: int | None = None,
    ) -> None:
        self.engine = engine
        self.docker_id = docker_id
        self.follow = follow
        self.tail = tail
        self.since = since
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.error: PanelError | None = None
        self._lines: collections.deque[LogLine] = collections.deque()
        self._max = max(1, max_lines)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._cut_at = cut_at
        self._max_rate = max_rate
        self._skipped = {"stdout": 0, "stderr": 0}
        """Bytes dropped so far of the line being read, per stream (`cut_at`)."""
        self._cond = threading.Condition()
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._ended = False
        self._closed = False
        self._response = None
        self._thread: threading.Thread | None = None

    def start(self) -> "LogFollower":
        """Opens the Docker log stream and starts the reading thread.

        Returns:
            self.

        Raises:
            NotFound: The container is gone.
            EngineUnavailable, EngineError: Docker refused or is unreachable.
        """
        params: dict[str, object] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": int(self.follow),
            "tail": "all" if self.tail is None else str(max(0, self.tail)),
        }
        if self.since is not None:
            # A float holds an epoch time to ~0.24 µs: one microsecond earlier keeps
            # a line stamped exactly `since` (as `logs -t` prints it) included.
            params["since"] = f"{self.since.timestamp() - 1e-6:.9f}"
        with translate_errors("no such container"):
            tty, response = self.engine.open_logs(self.docker_id, params)
        self._response = response
        self._thread = threading.Thread(
            target=self._read, args=(response, tty), name=f"sshpanel-logs-{self.docker_id[:12]}", daemon=True
        )
        self._thread.start()
        return self

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback()` from the reading thread when lines arrive or the
        stream ends; returns the function that stops the calls."""
        with self._cond:
            key = self._next
            self._next += 1
            self._subscribers[key] = callback

        def unsubscribe() -> None:
            with self._cond:
                self._subscribers.pop(key, None)

        return unsubscribe

    def take(self, max_lines: int = 1000) -> list[LogLine]:
        """Removes and returns up to `max_lines` buffered lines, oldest first.

        Never blocks (safe on the event loop).
        """
        with self._cond:
            count = min(max_lines, len(self._lines))
            lines = [self._lines.popleft() for _ in range(count)]
            self._bytes -= sum(line.cost for line in lines)
            if lines:
                self._cond.notify_all()
            return lines

    @property
    def ended(self) -> bool:
        """True once the stream is over (container stopped, log read to the
        end without follow, error, or closed) and every line was taken."""
        with self._cond:
            return self._ended and not self._lines

    def close(self) -> None:
        """Ends the stream: shuts the Docker socket down, so the thread ends.

        Idempotent, quick, no waiting (safe on the event loop); `join` waits.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._lines.clear()
            self._bytes = 0
            self._cond.notify_all()
        if self._response is not None:
            self._response.close()

    def join(self, timeout: float | None = None) -> bool:
        """Waits for the reading thread; returns True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _read(self, response, tty: bool) -> None:
        pending = {"stdout": b"", "stderr": b""}
        decoder = FrameDecoder(tty)
        tokens, tick = float(self._max_rate or 0), time.monotonic()
        try:
            for chunk in response:
                if self._max_rate:
                    tokens, tick = self._pace(tokens, tick, len(chunk) + CHUNK_COST)
                for kind, data in decoder.frames(chunk):
                    self._split("stderr" if kind == STDERR else "stdout", pending, data)
                if self._closed:
                    break
            for stream, rest in pending.items():
                if rest:
                    self._push(self._whole(stream, rest))
        except Exception as exc:  # any failure ends this stream, never the server
            if not self._closed:
                self.error = EngineUnavailable(f"the log stream broke: {type(exc).__name__}")
        finally:
            response.close()
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._notify()

    def _pace(self, tokens: float, tick: float, cost: int) -> tuple[float, float]:
        """Takes `cost` from the token bucket of `max_rate`, waiting (or
        until closed) when it is empty. Returns the bucket and its time."""
        now = time.monotonic()
        tokens = min(float(self._max_rate), tokens + (now - tick) * self._max_rate) - cost
        if tokens < 0:
            with self._cond:
                self._cond.wait_for(lambda: self._closed, -tokens / self._max_rate)
        return tokens, now

    def _split(self, stream: str, pending: dict[str, bytes], data: bytes) -> None:
        text = pending[stream] + data
        *lines, rest = text.split(b"\n")
        for raw in lines:
            self._push(self._whole(stream, raw))
        if self._cut_at is not None and len(rest) > self._cut_at:
            self._skipped[stream] += len(rest) - self._cut_at
            rest = rest[: self._cut_at]
        while len(rest) > MAX_LINE:
            self._push(_line(stream, rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        pending[stream] = rest
        if lines:
            self._notify()

    def _whole(self, stream: str, raw: bytes) -> LogLine:
        """A complete line read, cut at `cut_at` (with what was dropped of it
        before counted in)."""
        if self._cut_at is None:
            return _line(stream, raw)
        cut = self._skipped[stream] + max(0, len(raw) - self._cut_at)
        self._skipped[stream] = 0
        line = _line(stream, raw[: self._cut_at])
        return LogLine(line.stream, line.text, line.timestamp, cut) if cut else line

    def _full(self, line: LogLine) -> bool:
        """True when `line` does not fit next to the buffered lines (a line
        always fits into an empty buffer)."""
        if not self._lines:
            return False
        over_bytes = self._max_bytes is not None and self._bytes + line.cost > self._max_bytes
        return len(self._lines) >= self._max or over_bytes

    def _push(self, line: LogLine) -> None:
        """Appends a line; when the buffer is full (lines or bytes), drops the
        oldest lines or (without `drop_oldest`) tells the subscribers and
        waits for `take`."""
        while True:
            with self._cond:
                if self._closed:
                    return
                while self.drop_oldest and self._full(line):
                    self._bytes -= self._lines.popleft().cost
                    self.dropped += 1
                if not self._full(line):
                    self._lines.append(line)
                    self._bytes += line.cost
                    return
            self._notify()
            with self._cond:
                if self._full(line) and not self._closed:
                    self._cond.wait(1.0)

    def _notify(self) -> None:
        with self._cond:
            callbacks = list(self._subscribers.values())
        for callback in callbacks:
            callback()


class WorkspaceLogs:
    """Log access for one user's own containers.

    Args:
        workspace: The user's Workspace (names are resolved among their
            containers only).
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def open(
        self,
        ref: str,
        follow: bool = True,
        tail: int | None = None,
        since: dt.datetime | None = None,
        max_lines: int = 10_000,
        drop_oldest: bool = True,
        max_bytes: int | None = None,
        cut_at: int | None = None,
        max_rate: int | None = None,
    ) -> LogFollower:
        """Starts reading the log of one of the user's containers.

        Args: as `LogFollower` (`ref` is a name or ID prefix). Blocks: call
        it in a thread. The caller must `close()` the follower.

        Raises:
            NotFound: No such container among the user's.
            EngineUnavailable, EngineError: Docker refused or is unreachable.
        """
        row = self.workspace.resolve(ref)
        follower = LogFollower(
            self.workspace.engine, row.docker_id, follow, tail, since, max_lines, drop_oldest, max_bytes, cut_at,
            max_rate,
        )
        return follower.start()


def trim_freed_memory() -> None:
    """Asks glibc to hand the heap memory that is free back to the system
    (`malloc_trim(0)`): the many mid-sized strings of a log viewer are
    freed when it closes, but glibc keeps freed memory below its highest
    allocation in the process, so the server's RSS would stay at its peak
    (measured: issue 26). Does nothing where glibc is not the allocator.
    Blocks for a few milliseconds: call it in a thread."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    libc = ctypes.CDLL(name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _line(stream: str, raw: bytes) -> LogLine:
    """Builds a line from Docker's `TIMESTAMP text` bytes."""
    raw = raw.rstrip(b"\r")
    match = _STAMP.match(raw)
    stamp = ""
    if match:
        stamp = match.group(1).decode("ascii")
        raw = raw[match.end() :]
    return LogLine(stream, raw.decode("utf-8", errors="replace"), stamp)


def find_matches(text: str, query: str, ignore_case: bool = True) -> list[tuple[int, int]]:
    """Returns the (start, end) spans of `query` in `text`, for highlighting.

    Args:
        text: One log line.
        query: Plain text to find (not a pattern).
        ignore_case: Match regardless of case.

    Returns:
        Non-overlapping spans, left to right; empty when `query` is empty.
    """
    if not query:
        return []
    flags = re.IGNORECASE if ignore_case else 0
    return [m.span() for m in re.finditer(re.escape(query), text, flags)]
