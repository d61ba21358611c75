"""Provides `run_tui`, which runs one Textual app on one asyncssh server process.

Textual's own drivers assume one app per process (signal handlers,
`sys.__stdin__`); `SSHDriver` writes to the SSH channel and a per-session
reader task feeds the channel's input to a parser. Process-wide behaviours of
Textual that break with many apps in one process are neutralised here too
(docs/PITFALLS.md "Textual in many sessions in one process").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any, Awaitable, BinaryIO, Callable, TextIO, TypeVar

import asyncssh
from textual import constants, events
from textual._parser import ParseError
from textual._time import get_time
from textual.driver import Driver
from textual.geometry import Size
from textual.message import Message
from textual.messages import InBandWindowResize

from sshpanel.ssh.driver_patches import (
    SessionParser,
    apply_color_system,
    color_system_for_term,
    isolate_strip_render_cache,
    neutralise_stdout_redirect,
    share_parsed_stylesheets,
)
from sshpanel.ssh.pty import pty_size

if TYPE_CHECKING:
    from textual.app import App

log = logging.getLogger(__name__)

T = TypeVar("T")

"""Terminal size used when the client did not send one."""
READ_SIZE = 4096
"""Characters read from the channel at a time."""

MAX_WRITE_BUFFER = 8 * 1024 * 1024
"""Unsent output (bytes) after which a client counts as gone (not reading)."""
MAX_PENDING = 1024
"""Input messages kept while the driver is not built yet."""

class SSHDriver(Driver):
    """A Textual driver that draws on, and reads from, one SSH channel.

    `App._build_driver` builds it through the `functools.partial` that
    `run_tui` installs as `app.driver_class`, which adds `session`.
    """

    def __init__(
        self, app: App[Any], *, debug: bool = False, mouse: bool = True,
        size: tuple[int, int] | None = None, session: _Session,
    ) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        self._session = session
        self._loop_thread = threading.get_ident()
        self.application_mode = False
        """True between `start_application_mode` and `stop_application_mode`."""
        self.in_band_window_resize = False
        """True once the terminal reports its size in-band (mode 2048)."""
        session.attach(self)

    def write(self, data: str) -> None:
        """Writes terminal output (text with escape sequences) from any thread."""
        if threading.get_ident() == self._loop_thread:
            self._session.write(data)
        else:
            self._loop.call_soon_threadsafe(self._session.write, data)

    def flush(self) -> None:
        """Nothing to do: asyncssh sends as soon as the channel window allows."""

    def disable_input(self) -> None:
        """Stops delivering input to the app; the channel is still watched for EOF."""
        self._session.input_enabled = False

    def start_application_mode(self) -> None:
        """Enters the alternate screen, enables mouse and paste, posts the size."""
        self.application_mode = True
        write = self.write
        write("\x1b[?1049h")  # alternate screen
        if self._mouse:
            write("\x1b[?1000h\x1b[?1003h\x1b[?1015h\x1b[?1006h")  # all mouse events, SGR coordinates
        write("\x1b[?25l")  # hide cursor
        write("\x1b[?1004h")  # focus in/out reports
        if not constants.DISABLE_KITTY_KEY:
            write("\x1b[>25u")  # Kitty keyboard protocol, with LinuxDriver's flags
        write("\x1b[?2026$p")  # ask whether synchronized output is supported
        write("\x1b[?2048$p")  # ask whether in-band resize is supported
        write("\x1b[?2004h")  # bracketed paste
        write("\x1b[?7l")  # no line wrap
        width, height = self._session.terminal_size()
        self.process_message(events.Resize(Size(width, height), Size(width, height)))

    def stop_application_mode(self) -> None:
        """Restores the client's terminal (idempotent)."""
        if not self.application_mode:
            return
        self.application_mode = False
        self.disable_input()
        write = self.write
        write("\x1b[?2004l")  # bracketed paste off
        write("\x1b[?7h")  # line wrap on
        if self.in_band_window_resize:
            write("\x1b[?2048l\x1b[?1016l")  # in-band resize and pixel mouse off
        if self._mouse:
            write("\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l")
        if not constants.DISABLE_KITTY_KEY:
            write("\x1b[<u")  # pop the Kitty keyboard mode (before leaving the alt screen)
        write("\x1b[?1049l")  # leave the alternate screen
        write("\x1b[?25h")  # show cursor
        write("\x1b[?1004l")  # focus reports off

    def process_message(self, message: Message) -> None:
        """Handles the in-band resize handshake (as `LinuxDriver`), then forwards the message."""
        if isinstance(message, InBandWindowResize) and message.supported:
            self.in_band_window_resize = True
            if not message.enabled:
                self.write("\x1b[?2048h")
                message = InBandWindowResize(True, True)
            if self._mouse:
                self.write("\x1b[?1016h")  # mouse coordinates in pixels
        super().process_message(message)

    def open_url(self, url: str, new_tab: bool = True) -> None:
        """Does nothing: the base class would open a browser on the server."""
        log.info("ignored request to open a URL from an SSH session")

    def deliver_binary(  # type: ignore[override]
        self, binary: BinaryIO | TextIO, *, delivery_key: str, name: str | None = None, **_options: Any
    ) -> None:
        """Refuses: the base class would write the file (a screenshot) on the server's disk."""
        binary.close()
        refused = PermissionError("saving files is not available over SSH")
        self._app.post_message(events.DeliveryFailed(key=delivery_key, exception=refused, name=name))


class _Session:
    """The state of one `run_tui` call: channel, app, parser and driver."""

    def __init__(self, process: asyncssh.SSHServerProcess[str], app: App[Any], idle_timeout: float = 0.0) -> None:
        self.process = process
        self.app = app
        self.idle_timeout = idle_timeout
        """Seconds without input before the app is ended (0 = never)."""
        self.idled_out = False
        self._last_input = asyncio.get_running_loop().time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self.parser = SessionParser()
        self.driver: SSHDriver | None = None
        self.input_enabled = True
        self.channel_open = True
        self.finished = False
        self.suspended = False
        """True while the terminal is lent to other work (`hand_over`): frames are dropped."""
        self.reader: asyncio.Task[None] | None = None
        """The task feeding channel input to the app (one reader at a time)."""
        self._pending: list[Message] = []
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def attach(self, driver: SSHDriver) -> None:
        """Called by the driver once built; delivers input that came earlier."""
        self.driver = driver
        for message in self._pending:
            self._deliver(message)
        self._pending.clear()

    def terminal_size(self) -> tuple[int, int]:
        """The PTY size the client last sent (clamped, see `pty_size`), or
        80×24 when it sent none."""
        width, height, *_ = self.process.get_terminal_size()
        return pty_size(width, height)

    def write(self, data: str) -> None:
        """Writes to the channel (event-loop thread only); drops output once it
        closed, and while the terminal is handed over."""
        if not self.channel_open or self.suspended:
            return
        try:
            self.process.stdout.write(data)
        except (OSError, asyncssh.Error):  # closed under us: the reader ends the app
            self.channel_open = False
        else:
            if self.process.channel.get_write_buffer_size() > MAX_WRITE_BUFFER:
                log.info("SSH client stopped reading its output; ending the session")
                self.channel_open = False
                self.end_app()

    async def read_input(self) -> None:
        """Feeds channel input to the app until EOF or an error, then ends the app."""
        stdin = self.process.stdin
        try:
            while True:
                try:
                    data = await stdin.read(READ_SIZE)
                except asyncssh.TerminalSizeChanged as change:
                    self._resized(change.width, change.height)
                    continue
                except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                    continue  # requests on a live channel, not a disconnect
                if not data:
                    break
                self._feed(data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # asyncssh raises various errors on an abrupt disconnect
            log.debug("SSH session input ended: %r", exc)
        self.channel_open = not self.process.channel.is_closing()
        self.end_app()

    def start_reading(self) -> None:
        """Starts the task that feeds channel input to the app."""
        self.reader = asyncio.create_task(self.read_input(), name="sshpanel-tui-input")

    async def stop_reading(self) -> None:
        """Cancels the input task and waits until it has ended."""
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    async def hand_over(self, work: Callable[[], Awaitable[T]]) -> T:
        """Lends the terminal to `work()` (a shell bridge), then gives it back
        to the app, repainted whole; ends the app if the client left meanwhile.

        Input stops first (asyncssh allows one reader at a time); the app's
        frames are dropped while `work` runs.

        Raises:
            RuntimeError: The app is not running on this session.
            Exception: What `work` raised (the app has the terminal back).
        """
        driver = self.driver
        if driver is None or self.finished:
            raise RuntimeError("the dashboard is not running")
        await self.stop_reading()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self.parser = SessionParser()  # drops a half-read escape sequence
        driver.stop_application_mode()  # first: writes the restore sequences
        self.suspended = True  # then: write() drops the app's frames
        try:
            return await work()
        finally:
            self.suspended = False
            if self.process.channel.is_closing() or self.finished:
                self.channel_open = not self.process.channel.is_closing()
                self.end_app()
            else:
                self.input_enabled = True  # stop_application_mode cleared it
                driver.start_application_mode()
                self.app.refresh(layout=True)  # the terminal lost every frame
                self.start_reading()

    def end_app(self) -> None:
        """Asks the app to exit; works before it runs too (it then never starts)."""
        if not self.finished:  # exit() would overwrite a finished app's return code
            self.app.exit()

    def close(self) -> None:
        """Cancels the pending timers and restores the terminal if still open."""
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self.driver is not None and self.driver.application_mode:
            self.driver.stop_application_mode()

    def start_idle_timer(self) -> None:
        """Arms the idle check: one timer per timeout period, not per keystroke."""
        if self.idle_timeout > 0:
            self._idle_handle = self._loop.call_later(self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self.finished:
            return
        now = self._loop.time()
        if self.suspended:  # the user is typing into a shell, not idle
            self._last_input = now
        remaining = self._last_input + self.idle_timeout - now
        if remaining > 0:
            self._idle_handle = self._loop.call_later(remaining, self._idle_check)
            return
        log.info("dashboard session idle for %.0f s; closing it", self.idle_timeout)
        self.idled_out = True
        self.end_app()

    def _feed(self, data: str) -> None:
        self._last_input = self._loop.time()
        try:
            for message in list(self.parser.feed(data)):
                self._deliver(message)
        except ParseError as exc:  # only after EOF, which is never fed
            log.debug("unparsable terminal input: %r", exc)
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        """Wakes the parser when a lone Escape has waited ESCDELAY, never otherwise."""
        timeout = self.parser._timeout_time
        if timeout is None or self._tick_handle is not None:
            return
        self._tick_handle = self._loop.call_later(max(0.0, timeout - get_time()), self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        for message in self.parser.tick():
            self._deliver(message)
        self._schedule_tick()

    def _resized(self, width: int, height: int) -> None:
        # A terminal that reports sizes in-band (with pixel sizes) is believed instead.
        if width > 0 and height > 0 and not (self.driver and self.driver.in_band_window_resize):
            self._deliver(events.Resize(Size(width, height), Size(width, height)))

    def _deliver(self, message: Message) -> None:
        if isinstance(message, events.Resize):  # window changes and in-band reports alike
            size = Size(*pty_size(message.size.width, message.size.height))
            if size != message.size:
                message = events.Resize(size, size, pixel_size=message.pixel_size)
        if self.driver is None:
            if len(self._pending) < MAX_PENDING:
                self._pending.append(message)
        elif self.input_enabled:
            self.driver.process_message(message)


class TerminalHandOver:
    """Lets an app lend its terminal to a shell: made before the app, bound
    to the session by `run_tui` while it runs (`_Session.hand_over`)."""

    def __init__(self) -> None:
        self.session: _Session | None = None

    async def __call__(self, work: Callable[[], Awaitable[T]]) -> T:
        """Runs `work()` with the terminal.

        Raises:
            RuntimeError: No app is running on the terminal.
        """
        if self.session is None:
            raise RuntimeError("the dashboard is not running")
        return await self.session.hand_over(work)


async def run_tui(
    process: asyncssh.SSHServerProcess[str],
    app: App[Any],
    hand_over: TerminalHandOver | None = None,
    idle_timeout: float = 0.0,
) -> None:
    """Runs a Textual app on an SSH channel until it exits or the client leaves.

    The process must have a PTY and use `encoding='utf-8'`. The app's
    `driver_class` is replaced by one bound to this channel, and its colour
    system is chosen from the client's `TERM`. The channel is left open:
    the caller ends it (`process.exit(...)`).

    Args:
        process: The asyncssh server process of the session.
        app: A fresh app instance (one per session).
        hand_over: Bound to the session while it runs.
        idle_timeout: Seconds without keyboard input after which the app is
            ended with a message (0 = never). Output does not count as activity.
    """
    neutralise_stdout_redirect()
    isolate_strip_render_cache()
    share_parsed_stylesheets()
    apply_color_system(app, color_system_for_term(process.get_terminal_type()))
    session = _Session(process, app, idle_timeout)
    app.driver_class = functools.partial(SSHDriver, session=session)  # type: ignore[assignment]
    if hand_over is not None:
        hand_over.session = session
    session.start_reading()
    session.start_idle_timer()
    try:
        await app.run_async(size=session.terminal_size())
    finally:
        session.finished = True
        if hand_over is not None:
            hand_over.session = None
        await session.stop_reading()
        session.close()
    if session.idled_out and session.channel_open:
        session.write(f"\r\nsshpanel: closed after {idle_timeout:.0f} s without input.\r\n")
    elif app.return_code and session.channel_open:
        session.write("\r\nsshpanel: the session ended because of an internal error.\r\n")
