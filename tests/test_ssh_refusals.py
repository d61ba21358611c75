"""What the SSH transport refuses (issue 7): local and dynamic forwarding
anywhere but the user's own containers (issue 25, tests/test_forwarding.py),
Unix socket and remote forwarding, X11 and agent forwarding, unknown
subsystems, and client environment variables outside the allow-list."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import time

import asyncssh
import pytest

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.config import load_settings
from sshpanel.ssh.forwarding import REFUSED
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store
from tests.conftest import SSH_BASE, TEST_IMAGE, remove_namespace

HOSTILE_ENV = "SetEnv=LD_PRELOAD=/tmp/evil.so SSHPANEL_X=1 LANG=C.UTF-8"
"""What a client sends: two variables outside the allow-list, one inside."""


def _connect(panel, user) -> asyncssh.SSHClientConnection:
    return asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[str(user.key)],
                            known_hosts=None, agent_path=None)


def _forwarding(panel, attempt) -> tuple[BaseException | None, str]:
    """Runs `attempt(conn)` on an authenticated connection of alice, then
    proves the connection is still logged in (so a refusal is the server's
    answer to the forwarding, not a failed login).

    Returns:
        The exception `attempt` raised (None if none) and `whoami`'s output.
    """

    async def scenario() -> tuple[BaseException | None, str]:
        async with _connect(panel, panel.users["alice"]) as conn:
            try:
                await asyncio.wait_for(attempt(conn), 20)
                error = None
            except (asyncssh.Error, asyncssh.ChannelListenError, OSError) as exc:
                error = exc
            return error, (await conn.run("whoami")).stdout

    return asyncio.run(scenario())


def _assert_prohibited(error: BaseException | None, whoami: str) -> None:
    assert isinstance(error, asyncssh.ChannelOpenError), error
    assert error.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
    assert error.reason == REFUSED
    assert whoami.startswith("alice")


def test_local_forwarding_is_refused(panel):
    """`ssh -L`: a `direct-tcpip` channel to a port that does listen (the
    panel's own) is refused by the server."""
    _assert_prohibited(*_forwarding(panel, lambda conn: conn.open_connection("127.0.0.1", panel.port)))


def test_local_forwarding_listener_gets_nothing_through(panel):
    """`ssh -L` as OpenSSH does it: the client's local listener accepts, the
    server refuses the channel, the local connection is closed unanswered."""

    async def attempt(conn):
        listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", panel.port)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
            received = await reader.read()
            writer.close()
        finally:
            listener.close()
        raise asyncssh.ChannelOpenError(0, f"received {received!r}")

    error, whoami = _forwarding(panel, attempt)
    assert str(error) == "received b''" and whoami.startswith("alice")
    assert "refused tcp forwarding to '127.0.0.1'" in panel.log()


def test_dynamic_forwarding_is_refused(panel):
    """`ssh -D`: the SOCKS request becomes a `direct-tcpip` channel to the
    panel's own port, which the server refuses. The client's SOCKS side
    answers before the channel opens (asyncssh and OpenSSH both do), so the
    proof is that the target's SSH banner never comes through."""

    async def attempt(conn):
        listener = await conn.forward_socks("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.get_port())
            writer.write(b"\x05\x01\x00")
            assert await reader.readexactly(2) == b"\x05\x00"
            writer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + panel.port.to_bytes(2, "big"))
            reply = await reader.read()
            writer.close()
        finally:
            listener.close()
        raise asyncssh.ChannelOpenError(0, "banner came through" if b"SSH-2.0" in reply else "nothing came through")

    error, whoami = _forwarding(panel, attempt)
    assert str(error) == "nothing came through" and whoami.startswith("alice")
    assert f"refused tcp forwarding to '127.0.0.1' port {panel.port}" in panel.log()


def test_unix_socket_forwarding_is_refused(panel):
    """`ssh -L PORT:/var/run/docker.sock`: `direct-streamlocal` is refused
    (it would hand out the Docker socket, root on the host)."""
    _assert_prohibited(*_forwarding(panel, lambda conn: conn.open_unix_connection("/var/run/docker.sock")))


def test_remote_forwarding_is_refused(panel):
    """`ssh -R`, TCP and Unix socket: the server answers the global request
    with a failure."""
    error, whoami = _forwarding(panel, lambda conn: conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 22))
    assert isinstance(error, asyncssh.ChannelListenError) and whoami.startswith("alice")
    error, whoami = _forwarding(panel, lambda conn: conn.forward_remote_path("/tmp/sshpanel-r.sock", "/tmp/x"))
    assert isinstance(error, asyncssh.ChannelListenError) and whoami.startswith("alice")
    assert "refused remote forwarding of '127.0.0.1'" in panel.log()
    alice = panel.users["alice"]
    result = subprocess.run(
        [*panel.ssh_args(alice, "-v", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"), "whoami"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 255
    assert "Authenticated to" in result.stderr and "remote port forwarding failed" in result.stderr.lower()


def test_unknown_subsystem_gets_a_message(panel):
    alice = panel.users["alice"]
    result = subprocess.run([*panel.ssh_args(alice, "-s"), "nosuch"], capture_output=True, text=True, timeout=30, input="")
    assert result.returncode == 1
    assert "unknown subsystem" in result.stderr


def _hostile(panel, user, command: str, *options: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs `command` with the hostile environment sent along."""
    return subprocess.run([*panel.ssh_args(user, "-o", HOSTILE_ENV, *options), "--", command],
                          capture_output=True, text=True, timeout=60, input=input)


def _leaks(output: str) -> bool:
    return "LD_PRELOAD" in output or "SSHPANEL_X" in output or "evil.so" in output


def test_client_environment_never_reaches_a_container(panel):
    """Through `exec`, `exec -it`, `shell`, `provision` and `run`: the
    container's environment never holds what the client sent."""
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "envprobe", TEST_IMAGE, "sleep", "600").returncode == 0
    try:
        plain = _hostile(panel, alice, "exec envprobe env")
        assert plain.returncode == 0, plain.stderr
        assert "PATH=" in plain.stdout and not _leaks(plain.stdout)
        tty = _hostile(panel, alice, "exec -it envprobe env", "-tt")
        assert "PATH=" in tty.stdout and not _leaks(tty.stdout)
        shell = _hostile(panel, alice, "shell envprobe", "-tt", input="env; exit\n")
        assert "PATH=" in shell.stdout and not _leaks(shell.stdout)
        provision = _hostile(panel, alice, "provision envprobe -", input="env\n")
        assert provision.returncode == 0, provision.stderr
        assert "PATH=" in provision.stdout and not _leaks(provision.stdout)
        run = _hostile(panel, alice, f"run --name envrun {TEST_IMAGE} env")
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 30
        logs = panel.run(alice, "logs", "envrun")
        while "PATH=" not in logs.stdout and time.monotonic() < deadline:
            time.sleep(0.2)
            logs = panel.run(alice, "logs", "envrun")
        assert "PATH=" in logs.stdout and not _leaks(logs.stdout)
    finally:
        panel.run(alice, "rm", "-f", "envprobe", "envrun")


def test_client_environment_never_reaches_a_dashboard_shell(panel):
    """The dashboard's `o` shell (real OpenSSH client in tmux, sending the
    hostile environment): the container shell's environment holds none of it."""
    from tests.test_tui_e2e import Terminal, _wait

    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "envshell", TEST_IMAGE, "sleep", "600").returncode == 0
    command = [*SSH_BASE[:-2], "-tt", "-o", HOSTILE_ENV, "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}-env", command, width=100, height=30)
    try:
        term.wait_for("envshell")
        _wait(lambda: "Quit" in term.screen())
        term.keys("o")
        term.wait_for("/ #")
        term.type("echo paths=$(env | grep -c ^PATH=) leaks=$(env | grep -c -e LD_PRE -e SSHPANEL_X -e evil)")
        term.keys("Enter")
        _wait(lambda: any(line.startswith("paths=") for line in term.screen().splitlines()))
        assert "paths=1 leaks=0" in [line.rstrip() for line in term.screen().splitlines()]
        term.type("exit")
        term.keys("Enter")
        _wait(lambda: "Quit" in term.screen())
        term.keys("q")
        _wait(lambda: not term.alive())
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "envshell")


def test_session_environment_holds_only_allowed_names(tmp_path, docker_client, monkeypatch):
    """The server's own view of a session's environment (what any code could
    read) holds only `TERM`, `LANG` and `LC_*`, from OpenSSH and asyncssh
    clients alike."""
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings({"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data",
                              "host_keys_dir": tmp_path / "hk", "namespace": namespace})
    key_file = tmp_path / "carol"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_file)], check=True)
    seen: list[dict[str, str]] = []

    from sshpanel.ssh import session

    original = session.handle_process

    async def recording(panel, process):
        seen.append(dict(process.env))
        await original(panel, process)

    monkeypatch.setattr(session, "handle_process", recording)

    async def scenario() -> None:
        server = PanelServer(settings, open_store(settings))
        await server.start()
        try:
            accounts = Accounts(server.store, settings)
            await asyncio.to_thread(accounts.add_user, "carol", [key_file.with_suffix(".pub").read_text()])
            openssh = await asyncio.to_thread(
                subprocess.run,
                [*SSH_BASE, "-i", str(key_file), "-p", str(server.port), "-o", HOSTILE_ENV + " LC_TIME=C",
                 "carol@127.0.0.1", "whoami"],
                capture_output=True, text=True, timeout=30,
            )
            assert openssh.returncode == 0, openssh.stderr
            async with asyncssh.connect("127.0.0.1", server.port, username="carol", client_keys=[str(key_file)],
                                        known_hosts=None, agent_path=None) as conn:
                result = await conn.run("whoami", env={"LD_PRELOAD": "/tmp/evil.so", "PATH": "/tmp",
                                                       "LANG": "C.UTF-8", "LC_ALL": "C"})
                assert result.exit_status == 0
        finally:
            await server.stop()

    try:
        asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert seen == [{"LANG": "C.UTF-8", "LC_TIME": "C"}, {"LANG": "C.UTF-8", "LC_ALL": "C"}]


@pytest.mark.parametrize("name, allowed", [
    (b"TERM", True), (b"LANG", True), (b"LC_ALL", True), (b"LC_MESSAGES", True),
    (b"LD_PRELOAD", False), (b"PATH", False), (b"LANGUAGE", False), (b"LC_", False),
    (b"lc_all", False), (b"TERM\n", False), (b"\xff", False),
])
def test_environment_allow_list(name, allowed):
    from sshpanel.ssh.session_channel import env_allowed

    assert env_allowed(name) is allowed


def test_x11_forwarding_is_refused(panel):
    """`ssh -Y`: the server answers the x11-req with a failure (OpenSSH
    prints it with -v) and the session still runs."""
    alice = panel.users["alice"]
    env = {**os.environ, "DISPLAY": "127.0.0.1:99"}
    result = subprocess.run(
        [*panel.ssh_args(alice, "-v", "-Y"), "whoami"],
        capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert "Requesting X11 forwarding" in result.stderr
    assert "X11 forwarding request failed" in result.stderr


def test_agent_forwarding_is_refused(panel, tmp_path):
    """`ssh -A` with a running ssh-agent: the request is sent, the server
    refuses it (asyncssh `agent_forwarding=False`: no agent channel is ever
    opened towards the client) and the session still runs."""
    alice = panel.users["alice"]
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")],
                           capture_output=True, text=True, check=True)
    pid = re.search(r"SSH_AGENT_PID=(\d+)", agent.stdout).group(1)
    env = {**os.environ, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
    try:
        result = subprocess.run([*panel.ssh_args(alice, "-v", "-A"), "whoami"],
                                capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["kill", pid], check=False)
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert "Requesting authentication agent forwarding" in result.stderr
    assert "agent" not in panel.log().lower()
