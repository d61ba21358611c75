"""Rendering tests of the shell key, the scripts screens, provisioning and the
create-and-provision path, with fake services (allowed for rendering only),
and of the driver's terminal hand-over over a stand-in channel.

The real shell through OpenSSH is in tests/test_tui_shell_e2e.py; scripts and
runs against the real engine in tests/test_provision.py."""

from __future__ import annotations

import asyncio
import threading

import pytest
from textual.widgets import TextArea

from sshpanel.backend.engine import STDERR, STDOUT
from sshpanel.errors import Conflict, EngineError
from sshpanel.ssh.driver import TerminalHandOver, run_tui
from sshpanel.tui import PanelApp
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.create import CreateContainerModal
from sshpanel.tui.screens.provision import LOG_LINES, ProvisionScreen, ScriptPickerModal
from sshpanel.tui.screens.script_editor import ScriptEditorScreen
from sshpanel.tui.screens.scripts import ScriptsScreen
from sshpanel.tui.widgets.output_log import OutputInbox, OutputLog
from tests.test_driver import FakeProcess, KeyApp, wait_for
from tests.test_tui_render import FakeWorkspace, async_test, notifications, screen_text, settle, table
from tests.tui_fakes import FakeProvisioner, FakeShell, services


def messages(app: PanelApp) -> list[str]:
    return [n.message for n in notifications(app)]


def fits(app: PanelApp, width: int) -> bool:
    return all(len(line) <= width for line in screen_text(app).splitlines())


@pytest.fixture
def workspace() -> FakeWorkspace:
    return FakeWorkspace()


# Shell ---------------------------------------------------------------------


@async_test
async def test_o_opens_a_shell_in_the_selected_running_container(workspace):
    shell = FakeShell()
    app = PanelApp(workspace, services=services(shell=shell))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("o")
        await settle(pilot, lambda: shell.opened == ["web"])
        shell.status = 130
        await pilot.press("o")
        await settle(pilot, lambda: "The shell in web exited with status 130." in messages(app))
        await pilot.press("down", "o")  # db is not running
        await settle(pilot, lambda: "db is not running: start it first." in messages(app))
        assert shell.opened == ["web", "web"]


@async_test
async def test_shell_errors_go_through_the_error_handler(workspace):
    shell = FakeShell()
    shell.fail_with = Conflict("container web is not running")
    app = PanelApp(workspace, services=services(shell=shell))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("o")
        await settle(pilot, lambda: any(n.severity == "error" for n in notifications(app)))
        error = next(n for n in notifications(app) if n.severity == "error")
        assert (error.title, error.message) == ("Conflict", "container web is not running")
        assert app.is_running


@async_test
async def test_no_shell_without_a_terminal_to_lend(workspace):
    app = PanelApp(workspace, services=services(shell=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("o")
        await pilot.pause()
        assert not notifications(app)


@async_test
async def test_hand_over_lends_the_terminal_and_takes_it_back():
    process = FakeProcess(size=(90, 30))
    app = KeyApp()
    hand_over = TerminalHandOver()
    session = asyncio.create_task(run_tui(process, app, hand_over))
    await wait_for(lambda: app.is_running and "hello from the app" in process.stdout.text)
    typed: list[str] = []

    async def shell() -> int:
        process.stdout.write("$ ")
        typed.append(await process.stdin.read(100))  # Ctrl+C, Ctrl+D, Ctrl+Z: bytes for the shell
        app.query_one("Static").update("changed while away")  # a frame nobody sees
        await asyncio.sleep(0.1)
        process.stdout.write("bye\r\n")
        return 7

    process.stdin.queue.put_nowait("\x03\x04\x1a")
    before = len(process.stdout.text)
    assert await hand_over(shell) == 7
    assert typed == ["\x03\x04\x1a"] and app.keys == []
    during = process.stdout.text[before:process.stdout.text.index("bye\r\n") + 5]
    assert during.startswith("\x1b[?2004l") and "\x1b[?1049l" in during  # the terminal restored first
    assert "changed while away" not in during and during.endswith("$ bye\r\n")
    await wait_for(lambda: "changed while away" in process.stdout.text)  # repainted on return
    assert process.stdout.text.rindex("\x1b[?1049h") > process.stdout.text.index("bye")
    process.stdin.queue.put_nowait("z")
    await wait_for(lambda: app.keys == ["z"])
    process.stdin.queue.put_nowait("")
    await asyncio.wait_for(session, timeout=10)
    assert hand_over.session is None
    with pytest.raises(RuntimeError):
        await hand_over(shell)


@async_test
async def test_hand_over_ends_the_app_when_the_client_left_during_the_shell():
    process = FakeProcess()
    app = KeyApp()
    hand_over = TerminalHandOver()
    session = asyncio.create_task(run_tui(process, app, hand_over))
    await wait_for(lambda: app.is_running)

    async def shell() -> int:
        process.channel.closed = True
        return 129

    assert await hand_over(shell) == 129
    await asyncio.wait_for(session, timeout=10)
    assert not app.is_running


# Scripts -------------------------------------------------------------------


@async_test
async def test_scripts_screen_lists_and_previews_with_bash_highlighting(workspace):
    app = PanelApp(workspace, services=services())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        assert "i Scripts" in screen_text(app).splitlines()[-1]
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and app.screen.scripts)
        text = screen_text(app)
        assert "install" in text and "setup" in text and "SHA256" in text
        assert "echo 'hello \"world\"' $(date)" in text  # the first script's text, as written
        preview = app.screen.query_one("#script-preview", TextArea)
        assert preview.read_only and preview.language == "bash"
        await pilot.press("down")
        await settle(pilot, lambda: "apt-get update" in screen_text(app))
        assert fits(app, 80)


@async_test
async def test_new_script_is_saved_exactly_as_typed(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and app.screen.scripts)
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, ScriptEditorScreen))
        editor = app.screen
        assert editor.query_one("#script-body", TextArea).language == "bash"
        await pilot.press(*"Bad name", "ctrl+s")
        await settle(pilot, lambda: editor.error_text.startswith("invalid script name"))
        await pilot.press("ctrl+a", "ctrl+k", *"web-app", "enter")
        await pilot.press(*"echo \"$(id -u)\" `date` 'ü'", "ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and "web-app" in app.screen.scripts)
        saved = [c for c in provisioner.calls if c[0] == "save"][-1]
        assert saved == ("save", "web-app", "#!/bin/sh\nset -e\n\necho \"$(id -u)\" `date` 'ü'")
        assert "Created script web-app" in messages(app)
        assert app.screen.selected.name == "web-app"
        assert threading.main_thread().name not in provisioner.threads


@async_test
async def test_editor_asks_before_dropping_changes_and_edits_in_place(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and app.screen.scripts)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, ScriptEditorScreen))
        assert "Script install" in screen_text(app) and fits(app, 120)
        await pilot.press(*"true", "escape", "escape")  # the first Escape leaves the text area
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("escape")  # keep editing
        await settle(pilot, lambda: isinstance(app.screen, ScriptEditorScreen))
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen))
        assert provisioner.bodies["install"].endswith("$(date)\ntrue")
        assert "Saved script install" in messages(app)


@async_test
async def test_delete_script_asks_first(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and app.screen.scripts)
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Delete script install?" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen))
        assert "install" in provisioner.bodies
        await pilot.press("d", "y")
        await settle(pilot, lambda: "Deleted script install" in messages(app))
        await settle(pilot, lambda: list(app.screen.scripts) == ["setup"])


# Provisioning --------------------------------------------------------------


@async_test
async def test_provision_streams_stdout_and_stderr_and_reports_the_exit(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p")
        await settle(pilot, lambda: isinstance(app.screen, ScriptPickerModal))
        assert "Provision web with" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and app.screen.result is not None)
        screen = app.screen
        text = screen_text(app)
        assert "step 1" in text and "step 2" in text and "warning: spécial" in text and "done" in text
        assert "✓ install finished in web: exit 0 after 1.5s" in text
        log = screen.query_one(OutputLog)
        styles = {str(line.text): line for line in log.lines}
        assert any("warning: spécial" in plain for plain in styles)
        assert ("run", "web", "install") in provisioner.calls
        assert "x Cancel run" not in text.splitlines()[-1]
        await pilot.press("escape")
        await settle(pilot, lambda: table(app).row_count == 2 and app.screen is not screen)


@async_test
async def test_stderr_lines_are_red():
    log_lines: list = []

    class Probe(OutputLog):
        def write(self, content, *args, **kwargs):
            log_lines.append(content)
            return self

    probe = Probe(100)
    probe.feed(STDOUT, b"out\nhalf")
    probe.feed(STDERR, b"err\n")
    probe.flush()
    assert [(str(t), str(t.style)) for t in log_lines] == [("out", ""), ("err", "red"), ("half", "")]


@async_test
async def test_failed_run_is_shown_and_provision_needs_a_running_container(workspace):
    provisioner = FakeProvisioner()
    provisioner.exit_code = 3
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and app.screen.result is not None)
        assert "✗ install failed in web: exit 3" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, ProvisionScreen))
        await pilot.press("down", "p")
        await settle(pilot, lambda: "db is not running: start it first." in messages(app))
        provisioner.fail_with = EngineError("the engine refused")
        await pilot.press("up", "p", "enter")
        await settle(pilot, lambda: any(n.title == "Docker error" for n in notifications(app)))
        assert "the engine refused" in app.screen.status_text


@async_test
async def test_cancel_kills_the_run_and_leaving_asks_first(workspace):
    provisioner = FakeProvisioner()
    provisioner.hold = True
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and "step 2" in screen_text(app))
        screen = app.screen
        assert "x Cancel run" in screen_text(app).splitlines()[-1]
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("escape")  # stay
        await settle(pilot, lambda: app.screen is screen)
        assert not provisioner.cancelled.is_set()
        await pilot.press("x")
        await settle(pilot, lambda: provisioner.cancelled.is_set() and not screen.running)
        assert "provisioning cancelled" in screen.status_text
        assert not any(n.severity == "error" for n in notifications(app))  # the user asked for it


@async_test
async def test_leaving_a_running_provision_cancels_it(workspace):
    provisioner = FakeProvisioner()
    provisioner.hold = True
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and provisioner.started.is_set())
        await pilot.press("escape", "y")
        await settle(pilot, lambda: provisioner.cancelled.is_set())
        await settle(pilot, lambda: not isinstance(app.screen, (ProvisionScreen, ConfirmModal)))


@async_test
async def test_a_flood_of_output_stays_bounded(workspace):
    provisioner = FakeProvisioner()
    provisioner.output = [
        (STDOUT, b"".join(b"line %d\n" % i for i in range(j, j + 1000))) for j in range(0, 20000, 1000)
    ]
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("p", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and app.screen.result is not None)
        log = app.screen.query_one(OutputLog)
        assert len(log.lines) <= LOG_LINES
        assert "line 19999" in screen_text(app)


def test_output_inbox_drops_the_oldest_when_the_reader_falls_behind():
    inbox = OutputInbox(limit=10)
    assert inbox.put(STDOUT, b"aaaa") is True
    assert inbox.put(STDOUT, b"bbbb") is False
    inbox.put(STDERR, b"cccc")
    chunks, dropped = inbox.take()
    assert chunks == [(STDOUT, b"bbbb"), (STDERR, b"cccc")] and dropped == 4
    assert inbox.take() == ([], 0)
    assert inbox.put(STDOUT, b"d") is True


@async_test
async def test_create_form_offers_scripts_and_provisions_after_start(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, CreateContainerModal))
        assert "Provision" in screen_text(app) and "no script" in screen_text(app)
        assert "Create" in screen_text(app)  # the buttons still fit 24 lines
        app.screen.query_one("#create-script").value = "setup"
        await pilot.press(*"cache", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and app.screen.result is not None)
        create = next(c for c in workspace.calls if c[0] == "create")
        assert create[1].name == "cache" and create[2] is True
        assert ("run", "cache", "setup") in provisioner.calls
        assert "Created and started cache" in messages(app)


@async_test
async def test_create_form_without_scripts_does_not_ask(workspace):
    provisioner = FakeProvisioner()
    provisioner.bodies.clear()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, CreateContainerModal))
        assert "Provision" not in screen_text(app)
        await pilot.press(*"cache", "enter")
        await settle(pilot, lambda: table(app).row_count == 3)
        assert not [c for c in provisioner.calls if c[0] == "run"]


@async_test
async def test_new_screens_fit_120x35(workspace):
    provisioner = FakeProvisioner()
    app = PanelApp(workspace, services=services(provisioner))
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("i")
        await settle(pilot, lambda: isinstance(app.screen, ScriptsScreen) and app.screen.scripts)
        assert fits(app, 120) and "n New" in screen_text(app)
        await pilot.press("escape", "p", "enter")
        await settle(pilot, lambda: isinstance(app.screen, ProvisionScreen) and app.screen.result is not None)
        assert fits(app, 120) and "exit 0" in screen_text(app)
