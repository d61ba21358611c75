"""Faults stay contained: an exception in one session ends only that session
with a message (docs/ARCHITECTURE.md invariant 5); SIGTERM closes sessions
promptly and leaves a sound database; the exec parser survives hostile
input."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
import sys
import time

import asyncssh
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.config import load_settings
from sshpanel.errors import PanelError
from sshpanel.ssh.commands import build_parser
from sshpanel.ssh.commands.base import HelpShown
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store
from tests.conftest import TEST_IMAGE, remove_namespace, start_panel
from tests.test_sessions import _read_until


def test_exception_in_one_session_spares_the_others(tmp_path, docker_client, monkeypatch):
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings({"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data",
                              "host_keys_dir": tmp_path / "hk", "namespace": namespace})
    keys = {name: asyncssh.generate_private_key("ssh-ed25519") for name in ("victim", "bystander")}

    from sshpanel.tui.app import PanelApp
    from sshpanel.backend.user.workspace import Workspace

    original_screen = PanelApp.get_default_screen
    original_containers = Workspace.containers

    def broken_screen(self):
        if self.workspace.principal.name == "victim":
            raise RuntimeError("injected fault")
        return original_screen(self)

    def broken_containers(self, all=True):
        if self.principal.name == "victim":
            raise RuntimeError("injected fault")
        return original_containers(self, all=all)

    monkeypatch.setattr(PanelApp, "get_default_screen", broken_screen)
    monkeypatch.setattr(Workspace, "containers", broken_containers)

    async def connect(server, name):
        return await asyncssh.connect("127.0.0.1", server.port, username=name, client_keys=[keys[name]],
                                      known_hosts=None, agent_path=None)

    async def scenario():
        server = PanelServer(settings, open_store(settings))
        await server.start()
        accounts = Accounts(server.store, settings)
        for name, key in keys.items():
            await asyncio.to_thread(accounts.add_user, name, [key.export_public_key().decode()])
        try:
            bystander = await connect(server, "bystander")
            screen = await bystander.create_process(term_type="xterm", term_size=(100, 30))
            await _read_until(screen.stdout, "bystander")

            victim = await connect(server, "victim")
            crashed = await victim.create_process(term_type="xterm", term_size=(100, 30))
            output = await _read_until(crashed.stdout, "internal error")
            tui_status = (await asyncio.wait_for(crashed.wait(), 20)).exit_status
            command = await victim.run("ps")

            still = await bystander.run("ps")
            screen.stdin.write("q")
            bystander_status = (await asyncio.wait_for(screen.wait(), 20)).exit_status
            victim.close()
            bystander.close()
            return output, tui_status, command, still, bystander_status
        finally:
            await server.stop()

    try:
        output, tui_status, command, still, bystander_status = asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert "internal error" in output
    assert tui_status != 0
    assert command.exit_status == 1 and "internal error" in command.stderr
    assert "injected" not in command.stderr
    assert still.exit_status == 0 and "CONTAINER ID" in still.stdout
    assert bystander_status == 0


def test_sigterm_closes_sessions_and_keeps_the_database_sound(tmp_path, docker_client):
    """SIGTERM: the server stops accepting (a connection tried afterwards is
    refused), tells the open sessions (a dashboard and a `logs -f`, each
    client's output captured), closes them and leaves a sound database."""
    panel = start_panel(tmp_path, f"sptest{secrets.token_hex(3)}")
    try:
        alice = panel.add_user("alice")
        assert panel.run(alice, "run", "--name", "talker", TEST_IMAGE, "sleep", "600").returncode == 0
        loud = [{"LogLevel=ERROR": "LogLevel=INFO"}.get(arg, arg) for arg in panel.ssh_args(alice) if arg != "-q"]
        sessions = [
            subprocess.Popen([*loud, "-tt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE),
            subprocess.Popen([*loud, "logs", "-f", "talker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE),
        ]
        deadline = time.monotonic() + 20
        while panel.log().count("session start user=alice") < 2 + 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the `run` above was one session, then these two
        panel.process.send_signal(signal.SIGTERM)
        while "stopped accepting connections" not in panel.log() and time.monotonic() < deadline + 20:
            time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", panel.port), timeout=5).close()
        assert panel.process.wait(timeout=15) == 0
        for session in sessions:
            out, err = session.communicate(timeout=15)
            told = out.decode(errors="replace") + err.decode(errors="replace")
            assert "sshpanel: the panel is shutting down" in told, told[-500:]
        check = subprocess.run([sys.executable, "-m", "sshpanel", "db", "check"], env=panel.env(), capture_output=True, text=True)
        assert check.stdout.strip() == "ok"
    finally:
        if panel.process.poll() is None:
            panel.process.kill()
        remove_namespace(docker_client, panel.namespace)


@hsettings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=8))
def test_exec_parser_never_crashes(argv):
    parser, handlers = build_parser()
    try:
        args = parser.parse_args(argv)
    except (PanelError, HelpShown):
        return
    assert args.verb is None or args.verb in handlers or args.verb == "help"


def test_idle_dashboard_is_closed_with_a_message(tmp_path, docker_client):
    """Idle is measured on keyboard input (a timer per timeout period)."""
    panel = start_panel(tmp_path, f"sptest{secrets.token_hex(3)}", extra_env={"SSHPANEL_IDLE_TIMEOUT": "2"})
    try:
        alice = panel.add_user("alice")

        async def scenario() -> tuple[str, float]:
            async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)],
                                        known_hosts=None, agent_path=None) as conn:
                process = await conn.create_process(term_type="xterm", term_size=(100, 30))
                await _read_until(process.stdout, "alice")
                started = time.monotonic()
                process.stdin.write("j")  # one key, then nothing (typing on: the test below)
                output = await _read_until(process.stdout, "without input", timeout=30)
                return output, time.monotonic() - started

        output, waited = asyncio.run(scenario())
        assert "closed after 2 s without input" in output
        assert waited >= 2
    finally:
        panel.process.terminate()
        panel.process.wait(timeout=15)
        remove_namespace(docker_client, panel.namespace)


def test_typing_keeps_a_dashboard_open_while_refreshes_do_not(tmp_path, docker_client):
    """Idle is measured on input only: a dashboard that gets a harmless key
    every half second stays open well past `SSHPANEL_IDLE_TIMEOUT`, while one
    beside it that only receives screen refreshes (live stats of a busy
    container, every 0.5 s) is closed with the message."""
    panel = start_panel(tmp_path, f"sptest{secrets.token_hex(3)}",
                        extra_env={"SSHPANEL_IDLE_TIMEOUT": "3", "SSHPANEL_STATS_INTERVAL": "0.5"})
    try:
        alice = panel.add_user("alice")
        busy = panel.run(alice, "run", "--name", "spin", "--cpus", "0.05", TEST_IMAGE, "sh", "-c", "while :; do :; done")
        assert busy.returncode == 0, busy.stderr

        async def collect(stdout: asyncssh.SSHReader, into: list[str]) -> None:
            while chunk := await stdout.read(65536):
                into.append(chunk)

        async def scenario() -> tuple[str, str, int | None, int | None]:
            async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)],
                                        known_hosts=None, agent_path=None) as conn:
                typist = await conn.create_process(term_type="xterm", term_size=(100, 30))
                idler = await conn.create_process(term_type="xterm", term_size=(100, 30))
                await _read_until(typist.stdout, "spin")
                await _read_until(idler.stdout, "spin")
                loop = asyncio.get_running_loop()
                idle = asyncio.create_task(_read_until(idler.stdout, "without input", timeout=60))
                typed: list[str] = []
                reader = asyncio.create_task(collect(typist.stdout, typed))
                closed_at = None
                # Keystrokes paced every 0.5 s until the idle session was
                # closed and for more than one more timeout after that.
                while closed_at is None or loop.time() - closed_at < 4:
                    typist.stdin.write("j")
                    await asyncio.sleep(0.5)
                    if closed_at is None and idle.done():
                        closed_at = loop.time()
                    assert not reader.done(), "the typing session was closed"
                typing_status = typist.exit_status
                typist.stdin.write("q")
                await asyncio.wait_for(typist.wait_closed(), 20)
                await reader
                return idle.result(), "".join(typed), typing_status, typist.exit_status

        idle_output, typed_output, while_typing, after_quit = asyncio.run(scenario())
        assert "closed after 3 s without input" in idle_output
        refreshes = idle_output.split("\x1b[?1049l")[0]  # what it got before its screen was torn down
        # Several repaints of the stats panel reached it while it was idle.
        assert refreshes.count("CPU limit") >= 3, "the idle dashboard got no refreshes, so they were not tested"
        assert "without input" not in typed_output
        assert while_typing is None and after_quit == 0
    finally:
        panel.process.terminate()
        panel.process.wait(timeout=15)
        remove_namespace(docker_client, panel.namespace)
