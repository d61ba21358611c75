"""Provides `LogScreen`, one container's log, followed live: pause, the
newest line, timestamps, search with highlighting and a matching-only filter."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Header, Input, Static

from sshpanel.backend.user.logs import LogFollower, trim_freed_memory
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import LogView

if TYPE_CHECKING:
    from sshpanel.backend.user.logs import WorkspaceLogs

TAIL = 500
"""Lines of the log shown when the screen opens."""
MAX_LINES = 10_000
"""Lines the screen keeps (and the follower buffers at most)."""
MAX_BYTES = 8 * 2**20
"""Bytes of lines the screen keeps (issue 26: 10,000 lines of 60 KB held
600 MiB per viewer)."""
BUFFER_BYTES = 2 * 2**20
"""Bytes of lines the follower buffers until the screen takes them; in a
flood the oldest go first, as in the view."""
LINE_BYTES = 4096
"""Bytes of a line kept; the rest is dropped as it arrives and the line
shown with a marker saying how much."""
READ_RATE = 512 * 1024
"""Bytes a second the screen reads of a log at most (`LogFollower`'s
`max_rate`): a faster flood is shown late rather than slowing everyone."""
BATCH = 2000
"""Lines taken per turn of the event loop, so a flood never freezes the screen."""
TAKE_INTERVAL = 0.5
"""Seconds between two batches at least: each one redraws the view, and
four viewers of floods redrawing as often as lines came kept the event
loop busy for every user (issue 26)."""


class LogScreen(PanelScreen[None]):
    """The log of one of the user's containers, following new lines.

    The Docker log stream is read by a `LogFollower` thread into a bounded
    buffer; the screen takes lines in batches when told they arrived.
    Leaving the screen closes the stream (and ends its thread), drops the
    lines and hands the memory they held back to the system.

    Args:
        logs: Opens the user's container logs.
        container: The container's short name.
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("f", "toggle_follow", "Follow"),
        Binding("G,end", "newest", "Newest"),
        Binding("t", "toggle_timestamps", "Times"),
        Binding("slash", "search", "Search"),
        Binding("ampersand", "filter", "Filter"),
        Binding("n", "next_match", "Next"),
        Binding("N", "previous_match", "Prev", show=False),
        Binding("y", "copy_lines", "Copy", show=False),
    ]

    class LinesArrived(Message):
        """The follower has new lines, or its stream ended (from its thread)."""

    def __init__(self, logs: WorkspaceLogs, container: str) -> None:
        super().__init__()
        self.logs = logs
        """Opens the user's container logs; only ever called from thread workers."""
        self.container = container
        """The container's short name."""
        self.follow = True
        """Scroll to each new line (off: the view stays where it is)."""
        self.unseen = 0
        """Lines that arrived while not following."""
        self.follower: LogFollower | None = None
        """The open log stream, once opened."""
        self._lock = threading.Lock()
        self._leaving = False
        self._wake_posted = False  # a LinesArrived is queued: the thread need not post another
        self._unsubscribe: Callable[[], None] | None = None
        self._view = LogView(MAX_LINES, MAX_BYTES, id="log-view")
        self._taken_at = 0.0
        """When lines were last taken (monotonic seconds; the first lines
        are never held back)."""

    def compose(self) -> ComposeResult:
        """Header, status line, the log, the search line, the footer."""
        yield Header()
        yield Static("", id="log-status", markup=False)
        yield self._view
        yield Input(placeholder="search (Enter keeps it, Esc clears it)", id="log-search", compact=True)
        yield KeyFooter()

    @property
    def view(self) -> LogView:
        """The log view."""
        return self.query_one(LogView)

    def on_mount(self) -> None:
        """Opens the Docker log stream in a worker thread."""
        self.title = "sshpanel"
        self.sub_title = f"Logs of {self.container}"
        self.view.focus()
        self._status("opening the log…")
        self.call_backend(self._open, self._opened, group="open-log")

    def _open(self) -> LogFollower | None:
        """Runs in the worker thread; closes the stream at once if the
        screen went away meanwhile (nobody else would)."""
        follower = self.logs.open(self.container, follow=True, tail=TAIL, max_lines=MAX_LINES,
                                  max_bytes=BUFFER_BYTES, cut_at=LINE_BYTES, max_rate=READ_RATE)
        with self._lock:
            if self._leaving:
                follower.close()
                return None
            self.follower = follower
            self._unsubscribe = follower.subscribe(self._wake)
        return follower

    def on_unmount(self) -> None:
        """Closes the log stream (quick, no waiting), drops the lines, and
        trims the heap in a thread (`trim_freed_memory`)."""
        with self._lock:
            self._leaving = True
            follower, unsubscribe = self.follower, self._unsubscribe
            self._unsubscribe = None
            self.follower = None
        if unsubscribe is not None:
            unsubscribe()
        if follower is not None:
            follower.close()
        self._view.clear()
        threading.Thread(target=trim_freed_memory, name="sshpanel-trim", daemon=True).start()

    def _wake(self) -> None:
        """Runs in the follower's thread: posts one message until it is handled."""
        if not self._wake_posted:
            self._wake_posted = True
            self.post_message(self.LinesArrived())

    def _opened(self, follower: LogFollower | None) -> None:
        if follower is not None:
            self._take()

    def on_log_screen_lines_arrived(self, message: LinesArrived) -> None:
        """Takes a batch of lines, at most every `TAKE_INTERVAL` (until then
        the message counts as still posted, so the thread posts no other);
        asks for another turn when more are waiting."""
        wait = self._taken_at + TAKE_INTERVAL - time.monotonic()
        if wait > 0:
            self.set_timer(wait, self._take_posted)
        else:
            self._take_posted()

    def _take_posted(self) -> None:
        self._wake_posted = False
        self._take()

    def _take(self) -> None:
        follower = self.follower
        if follower is None:
            return
        lines = follower.take(BATCH)
        if lines:
            self._taken_at = time.monotonic()
            self.view.add(lines, follow=self.follow)
            if not self.follow:
                self.unseen += len(lines)
        if len(lines) == BATCH:
            self._wake()  # more are waiting: after the screen has drawn this batch
        self._show_state()

    def _show_state(self) -> None:
        follower, view = self.follower, self.view
        parts = [self.container]
        if follower is not None and follower.ended:
            parts.append("stream ended" + (f": {follower.error.message}" if follower.error else ""))
        elif self.follow:
            parts.append("following")
        else:
            parts.append(f"paused, {self.unseen} new" if self.unseen else "paused")
        parts.append(f"{view.line_count} lines")
        if view.query:
            found = view.match_count()
            parts.append(f"{'filter' if view.filtering else 'search'} {view.query!r}: {found} matching")
        if view.timestamps:
            parts.append("timestamps")
        self._status(" · ".join(parts))

    def _status(self, text: str) -> None:
        self.query_one("#log-status", Static).update(Text(text))

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return str(self.query_one("#log-status", Static).content)

    # Keys -----------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        """Pauses or resumes following (resuming jumps to the newest line)."""
        self.follow = not self.follow
        if self.follow:
            self.action_newest()
        else:
            self.view.hold()
        self._show_state()

    def action_newest(self) -> None:
        """Jumps to the newest line and follows again."""
        self.follow = True
        self.unseen = 0
        self.view.to_newest()
        self._show_state()

    def action_toggle_timestamps(self) -> None:
        """Shows or hides Docker's timestamps."""
        self.view.show(timestamps=not self.view.timestamps)
        self._after_change()

    def action_search(self) -> None:
        """Opens the search line: matches are highlighted as you type."""
        self._open_search(filtering=False)

    def action_filter(self) -> None:
        """Opens the search line and shows only matching lines."""
        self._open_search(filtering=True)

    def _open_search(self, filtering: bool) -> None:
        search = self.query_one("#log-search", Input)
        self.view.show(filtering=filtering)
        search.add_class("-visible")
        search.focus()
        self._after_change()

    @on(Input.Changed, "#log-search")
    def _query_changed(self, event: Input.Changed) -> None:
        self.view.show(query=event.value)
        self._after_change()

    @on(Input.Submitted, "#log-search")
    def _query_kept(self) -> None:
        self.query_one("#log-search", Input).remove_class("-visible")
        self.view.focus()

    def action_next_match(self) -> None:
        """Scrolls to the next matching line (pauses following)."""
        self._jump(forward=True)

    def action_previous_match(self) -> None:
        """Scrolls to the previous matching line (pauses following)."""
        self._jump(forward=False)

    def _jump(self, forward: bool) -> None:
        self.follow = False
        if not self.view.jump_to_match(forward):
            self.notify("No more matches." if self.view.query else "Search first with /.", severity="warning")
        self._show_state()

    def _after_change(self) -> None:
        if self.follow:
            self.view.to_newest()
        self._show_state()

    def action_copy_lines(self) -> None:
        """Copies the lines on screen to the user's clipboard through the
        terminal (OSC 52: works over SSH and in tmux with `set-clipboard
        on`), as they are drawn: control characters stay escaped, so a
        paste cannot drive the terminal it lands in."""
        lines = self.view.lines_on_screen()
        if not lines:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.app.copy_to_clipboard("\n".join(lines))
        self.notify(f"Copied {len(lines)} line{'s' if len(lines) != 1 else ''} to your clipboard", markup=False)

    def action_close(self) -> None:
        """Clears the search first if one is open, else goes back."""
        search = self.query_one("#log-search", Input)
        if search.has_class("-visible") or self.view.query:
            search.value = ""
            search.remove_class("-visible")
            self.view.show(query="", filtering=False)
            self.view.focus()
            self._after_change()
            return
        self.app.pop_screen()
