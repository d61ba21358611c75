"""Unit tests of the SSH Textual driver: colour choice, the parser's cache,
the neutralised stdout redirect, colour-safe render caches, and `run_tui`
over a stand-in channel (the real SSH server is tested end to end elsewhere)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import sys
import weakref

import asyncssh
import pytest
import textual.app
from rich.color import ColorSystem
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual.app import App, ComposeResult
from textual.strip import Strip
from textual.widgets import Static

from sshpanel.ssh.driver import (
    SessionParser,
    apply_color_system,
    color_system_for_term,
    isolate_strip_render_cache,
    neutralise_stdout_redirect,
    run_tui,
    share_parsed_stylesheets,
)

KITTY_CTRL_A = "\x1b[97;5u"


def async_test(function):
    """Runs an async test in its own event loop (no pytest plugin needed)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        asyncio.run(asyncio.wait_for(function(*args, **kwargs), timeout=30))

    return run


@pytest.mark.parametrize(
    "term, expected",
    [
        ("xterm-kitty", "truecolor"),
        ("xterm-direct", "truecolor"),
        ("xterm-direct256", "truecolor"),
        ("alacritty", "truecolor"),
        ("wezterm", "truecolor"),
        ("foot", "truecolor"),
        ("ghostty", "truecolor"),
        ("xterm-ghostty", "truecolor"),
        ("xterm-256color", "256"),
        ("screen-256color", "256"),
        ("tmux-256color", "256"),
        ("xterm", "standard"),
        ("vt100", "standard"),
        ("vt220", "standard"),
        ("screen", "standard"),
        ("linux", "standard"),
        ("dumb", "standard"),
        ("", "standard"),
        (None, "standard"),
        ("XTERM-256COLOR", "256"),
    ],
)
def test_color_system_for_term(term, expected):
    assert color_system_for_term(term) == expected


def test_apply_color_system_sets_the_app_console():
    app = App()
    apply_color_system(app, "256")
    assert app.console.color_system == "256"
    apply_color_system(app, "truecolor")
    assert app.console.color_system == "truecolor"


def test_parser_cache_is_per_instance_and_parsers_are_collected():
    first, second = SessionParser(), SessionParser()
    for parser in (first, second):
        keys = [event.key for event in parser.feed(KITTY_CTRL_A)]
        assert keys == ["ctrl+a"]
        assert KITTY_CTRL_A in parser._extended_keys
    assert first._extended_keys is not second._extended_keys
    refs = [weakref.ref(first), weakref.ref(second)]
    del first, second, parser
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


def test_parser_cache_is_bounded():
    parser = SessionParser()
    for code in range(1000):
        list(parser.feed(f"\x1b[{code};5u"))
    assert len(parser._extended_keys) <= 256


def test_neutralise_stdout_redirect_is_idempotent():
    neutralise_stdout_redirect()
    first = (textual.app.redirect_stdout, textual.app.redirect_stderr)
    neutralise_stdout_redirect()
    assert (textual.app.redirect_stdout, textual.app.redirect_stderr) == first
    assert first[0] is not contextlib.redirect_stdout
    before = sys.stdout, sys.stderr
    with textual.app.redirect_stdout(io.StringIO()), textual.app.redirect_stderr(io.StringIO()):
        assert (sys.stdout, sys.stderr) == before


def test_render_caches_respect_each_console_colour_system():
    isolate_strip_render_cache()
    isolate_strip_render_cache()  # idempotent
    truecolor = Console(color_system="truecolor", force_terminal=True)
    eight_bit = Console(color_system="256", force_terminal=True)
    style = Style(color="#123456", bgcolor="#abcdef")
    # A strip shared by every app in the process (class-level cache).
    blank = Strip.blank(4, Style(bgcolor="#abcdef"))
    assert blank is Strip.blank(4, Style(bgcolor="#abcdef"))
    strip = Strip([Segment("x", style)])
    assert "38;2;18;52;86" in strip.render(truecolor)
    assert "38;2;" not in strip.render(eight_bit) and "38;5;" in strip.render(eight_bit)
    assert "48;2;" in blank.render(truecolor)
    assert "48;2;" not in blank.render(eight_bit)
    assert Strip.render_style(style, "x", ColorSystem.STANDARD) != Strip.render_style(
        style, "x", ColorSystem.TRUECOLOR
    )


class ThemedApp(App[None]):
    """An app with CSS of its own that uses a theme variable."""

    CSS = "#themed { background: $primary; }"

    def compose(self) -> ComposeResult:
        yield Static("x", id="themed")


async def _background_and_rules(theme: str) -> tuple[object, list[object]]:
    app = ThemedApp()
    app.theme = theme
    async with app.run_test() as pilot:
        await pilot.pause()
        background = app.query_one("#themed").styles.background
        rules = list(app.stylesheet.rules)
    return background, rules


def test_parsed_stylesheets_are_shared_per_theme_and_hold_no_app():
    share_parsed_stylesheets()
    share_parsed_stylesheets()  # idempotent
    first, first_rules = asyncio.run(_background_and_rules("textual-dark"))
    second, second_rules = asyncio.run(_background_and_rules("textual-dark"))
    light, light_rules = asyncio.run(_background_and_rules("textual-light"))
    assert first == second and all(a is b for a, b in zip(first_rules, second_rules, strict=True))  # reused
    assert light != first and not {id(r) for r in light_rules} & {id(r) for r in first_rules}  # never shared
    gc.collect()
    assert not [obj for obj in gc.get_objects() if isinstance(obj, ThemedApp)]


# run_tui over a stand-in channel --------------------------------------------


class FakeStdin:
    """Returns queued text; raises queued exceptions (as asyncssh does)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    async def read(self, n: int = -1) -> str:
        item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item


class FakeStdout:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.parts: list[str] = []

    def write(self, data: str) -> None:
        if self.channel.closed:
            raise BrokenPipeError("Channel not open for sending")
        self.parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class FakeChannel:
    def __init__(self) -> None:
        self.closed = False

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed


class FakeProcess:
    """The parts of `asyncssh.SSHServerProcess` that `run_tui` uses."""

    def __init__(self, size=(90, 30), term="xterm-256color") -> None:
        self.channel = FakeChannel()
        self.stdin = FakeStdin()
        self.stdout = FakeStdout(self.channel)
        self.size = size
        self.term = term

    def get_terminal_size(self) -> tuple[int, int, int, int]:
        return (*self.size, 0, 0)

    def get_terminal_type(self) -> str:
        return self.term


class KeyApp(App[None]):
    """Records the keys and sizes it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []
        self.sizes: list[tuple[int, int]] = []

    def compose(self) -> ComposeResult:
        yield Static("hello from the app")

    def on_key(self, event) -> None:
        self.keys.append(event.key)

    def on_resize(self, event) -> None:
        self.sizes.append(tuple(event.size))


async def wait_for(condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@async_test
async def test_run_tui_delivers_keys_and_resizes_and_ends_on_eof():
    process = FakeProcess()
    app = KeyApp()
    session = asyncio.create_task(run_tui(process, app))
    await wait_for(lambda: app.is_running and "hello from the app" in process.stdout.text)
    assert app.console.color_system == "256"
    assert app.size == (90, 30)
    process.stdin.queue.put_nowait("ab")
    await wait_for(lambda: app.keys == ["a", "b"])
    process.stdin.queue.put_nowait("\x1b")  # a lone Escape arrives after ESCDELAY
    await wait_for(lambda: app.keys == ["a", "b", "escape"])
    process.stdin.queue.put_nowait(asyncssh.TerminalSizeChanged(120, 35, 0, 0))
    await wait_for(lambda: app.size == (120, 35))
    process.stdin.queue.put_nowait("")
    await asyncio.wait_for(session, timeout=10)
    out = process.stdout.text
    assert "\x1b[?1049h" in out and "\x1b[?1006h" in out and "\x1b[?2004h" in out
    assert out.rindex("\x1b[?1049l") > out.rindex("hello from the app")
    assert out.rstrip().endswith("\x1b[?1004l")


@pytest.mark.parametrize("error", [ConnectionResetError("gone"), asyncssh.ConnectionLost("lost"), RuntimeError("odd")])
@async_test
async def test_run_tui_ends_on_any_read_error(error):
    process = FakeProcess()
    app = KeyApp()
    session = asyncio.create_task(run_tui(process, app))
    await wait_for(lambda: app.is_running)
    process.channel.closed = True
    process.stdin.queue.put_nowait(error)
    await asyncio.wait_for(session, timeout=10)
    assert not app.is_running


@async_test
async def test_run_tui_ends_when_client_leaves_before_the_app_starts():
    process = FakeProcess()
    process.stdin.queue.put_nowait("")
    app = KeyApp()
    await asyncio.wait_for(run_tui(process, app), timeout=10)
    assert not app.is_running


@async_test
async def test_run_tui_leaves_no_app_alive():
    process = FakeProcess(term="xterm-kitty")
    app = KeyApp()
    session = asyncio.create_task(run_tui(process, app))
    await wait_for(lambda: app.is_running)
    process.stdin.queue.put_nowait(KITTY_CTRL_A + "x")
    await wait_for(lambda: "x" in app.keys)
    process.stdin.queue.put_nowait("")
    await session
    ref = weakref.ref(app)
    del app, session
    gc.collect()
    assert ref() is None


@async_test
async def test_screenshot_and_urls_never_act_on_the_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url, *a, **k: opened.append(url))
    process = FakeProcess()
    app = KeyApp()
    session = asyncio.create_task(run_tui(process, app))
    await wait_for(lambda: app.is_running)
    app.deliver_screenshot(path=str(tmp_path))
    app.open_url("https://example.invalid/")
    await wait_for(lambda: any("screenshot" in n.message.lower() for n in app._notifications))
    process.stdin.queue.put_nowait("")
    await session
    assert list(tmp_path.iterdir()) == []
    assert opened == []
