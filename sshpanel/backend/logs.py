"""Provides `LogFollower`, a container's log stream read in its own thread
into a bounded buffer with stdout and stderr told apart, and `WorkspaceLogs`,
which opens one for a user's own container.

The Docker SDK's `logs(stream=True)` drops the stream type of each frame, so
the frames of `GET /containers/ID/logs` go through the engine seam's one
`FrameDecoder` (raw bytes when the container has a TTY). Closing
a follower shuts the HTTP socket down, which ends the reading thread at
once: a viewer that goes away leaves no thread and no Docker stream behind.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
import threading
from dataclasses import dataclass
from typing import Callable

from sshpanel.backend.engine import STDERR, Engine, FrameDecoder, translate_errors
from sshpanel.backend.workspace import Workspace
from sshpanel.errors import EngineUnavailable, PanelError

MAX_LINE = 64 * 1024
"""Bytes after which a line without a newline is cut (a flood without
newlines must not grow memory)."""
_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ")


@dataclass(frozen=True)
class LogLine:
    """One line a container wrote.

    Attributes:
        stream: `stdout` or `stderr`.
        text: The line without its newline (invalid UTF-8 replaced).
        timestamp: Docker's RFC 3339 time of the line with nanoseconds
            (`2024-05-01T12:00:00.123456789Z`), as `docker logs -t` prints it.
    """

    stream: str
    text: str
    timestamp: str

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
        try:
            for chunk in response:
                for kind, data in decoder.frames(chunk):
                    self._split("stderr" if kind == STDERR else "stdout", pending, data)
                if self._closed:
                    break
            for stream, rest in pending.items():
                if rest:
                    self._push(_line(stream, rest))
        except Exception as exc:  # any failure ends this stream, never the server
            if not self._closed:
                self.error = EngineUnavailable(f"the log stream broke: {type(exc).__name__}")
        finally:
            response.close()
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._notify()

    def _split(self, stream: str, pending: dict[str, bytes], data: bytes) -> None:
        text = pending[stream] + data
        *lines, rest = text.split(b"\n")
        for raw in lines:
            self._push(_line(stream, raw))
        while len(rest) > MAX_LINE:
            self._push(_line(stream, rest[:MAX_LINE]))
            rest = rest[MAX_LINE:]
        pending[stream] = rest
        if lines:
            self._notify()

    def _push(self, line: LogLine) -> None:
        """Appends a line; when the buffer is full, drops the oldest line or
        (without `drop_oldest`) tells the subscribers and waits for `take`."""
        while True:
            with self._cond:
                if self._closed:
                    return
                if len(self._lines) >= self._max and self.drop_oldest:
                    self._lines.popleft()
                    self.dropped += 1
                if len(self._lines) < self._max:
                    self._lines.append(line)
                    return
            self._notify()
            with self._cond:
                if len(self._lines) >= self._max and not self._closed:
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
            self.workspace.engine, row.docker_id, follow, tail, since, max_lines, drop_oldest
        )
        return follower.start()


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
