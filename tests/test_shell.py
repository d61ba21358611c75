"""Shell and exec in a container (issue 5), end to end through the real
OpenSSH client, the real server and the real engine; interactive sessions
run inside tmux so they get a real terminal."""

from __future__ import annotations

import secrets
import shlex
import shutil
import subprocess

import pytest

from tests.conftest import TEST_IMAGE, wait_for

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


@pytest.fixture(scope="module")
def box(panel, docker_client):
    """Alice's running container `box`."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "box", TEST_IMAGE, "sleep", "3600")
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.box")
    yield container
    panel.run(alice, "rm", "-f", "box")


def _execs(docker_client, container) -> list[dict]:
    ids = docker_client.api.inspect_container(container.id).get("ExecIDs") or []
    return [docker_client.api.exec_inspect(exec_id) for exec_id in ids]


class Terminal:
    """One tmux session on a private tmux server, running an SSH command."""

    def __init__(self, command: list[str], width: int = 100, height: int = 30) -> None:
        self.socket = f"sshpanel-test-{secrets.token_hex(4)}"
        # The pane outlives ssh so its exit status can be read.
        script = f'{shlex.join(command)}; echo "[exit $?]"; exec cat'
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script)

    def tmux(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen().splitlines()]

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)
        self.tmux("send-keys", "-t", "t", "Enter")

    def key(self, name: str) -> None:
        self.tmux("send-keys", "-t", "t", name)

    def wait_line(self, line: str, timeout: float = 20.0) -> None:
        wait_for(lambda: line in self.lines(), timeout, f"{line!r} on the screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def open_terminal(command: list[str], **size) -> Terminal:
        term = Terminal(command, **size)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


# Non-interactive exec ------------------------------------------------------


def test_exec_streams_stdout_and_stderr_and_exits_with_status(panel, box):
    alice = panel.users["alice"]
    result = panel.run(alice, "exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert panel.run(alice, "exec", "box", "true").returncode == 0


def test_exec_passes_stdin_through_byte_for_byte(panel, box):
    alice = panel.users["alice"]
    data = bytes(range(256)) * 64 + "naïve ✓\n".encode() + b"\xe2\x9c"  # ends inside a UTF-8 sequence
    result = subprocess.run(
        [*panel.ssh_args(alice), "--", "exec box cat"], input=data, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_exec_arguments_are_not_parsed_by_a_shell(panel, box):
    alice = panel.users["alice"]
    result = panel.run(alice, "exec", "box", "echo", "$(id)", "`id`", "a;b", "it's")
    assert result.stdout == "$(id) `id` a;b it's\n"


def test_exec_is_never_privileged_and_runs_as_default_or_given_user(panel, box, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "exec", "box", "id", "-u").stdout == "0\n"
    assert panel.run(alice, "exec", "-u", "1234", "box", "id", "-u").stdout == "1234\n"
    # The engine lists running execs only: look at two while they run.
    clients = [
        subprocess.Popen([*panel.ssh_args(alice), "--", command], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for command in ("exec box sleep 3001", "exec -u 1234 box sleep 3002")
    ]
    try:
        execs = wait_for(lambda: len(_execs(docker_client, box)) == 2 and _execs(docker_client, box), what="two execs")
        assert all(not e["ProcessConfig"]["privileged"] for e in execs)
        users = {e["ProcessConfig"]["arguments"][0]: e["ProcessConfig"].get("user", "") for e in execs}
        assert users == {"3001": "", "3002": "1234"}
    finally:
        for client in clients:
            client.kill()
            client.wait()
    # A client that goes away hangs up its command, like a terminal would.
    wait_for(lambda: "sleep 300" not in box.exec_run(["ps"]).output.decode(), what="the execs to end")


def test_exec_refuses_bad_input(panel, box):
    alice = panel.users["alice"]
    assert panel.run(alice, "exec", "box").returncode == 2
    bad_user = panel.run(alice, "exec", "-u", "x;y", "box", "id")
    assert bad_user.returncode == 1
    assert "invalid user" in bad_user.stderr
    no_tty = panel.run(alice, "exec", "-it", "box", "sh")
    assert no_tty.returncode == 2
    assert "not a TTY" in no_tty.stderr
    shell = panel.run(alice, "shell", "box")
    assert shell.returncode == 2
    assert "needs a terminal" in shell.stderr
    unknown = panel.run(alice, "exec", "café–✓", "true")
    assert unknown.returncode == 1
    assert unknown.stderr == "Error: no such container: café–✓\n", "messages stay UTF-8 on a byte channel"


def test_exec_in_a_stopped_container_fails(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "create", "--name", "idle", TEST_IMAGE, "sleep", "60").returncode == 0
    result = panel.run(alice, "exec", "idle", "true")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: container idle is not running: start it first"
    panel.run(alice, "rm", "idle")


def test_bob_cannot_exec_into_alice_container_regression(panel, box, docker_client):
    """Scope (docs/ARCHITECTURE.md invariant 1): name, full ID and every ID
    prefix read as "not found"."""
    bob = panel.users["bob"]
    refs = ["box", box.id, box.name, *[box.id[:n] for n in range(1, 13)]]
    for ref in refs:
        result = panel.run(bob, "exec", ref, "id")
        assert result.returncode == 1, ref
        assert result.stderr.strip() == f"Error: no such container: {ref}", ref
        assert result.stdout == ""
    for ref in ("box", box.id[:12]):
        shell = subprocess.run(
            [*panel.ssh_args(bob, "-tt"), "--", f"shell {ref}"], capture_output=True, text=True, timeout=60
        )
        assert shell.returncode == 1
        assert f"no such container: {ref}" in shell.stdout + shell.stderr


# Interactive shell ---------------------------------------------------------


@needs_tmux
def test_interactive_exec_end_to_end_in_a_real_terminal(panel, box, terminal):
    alice = panel.users["alice"]
    term = terminal([*panel.ssh_args(alice, "-tt"), "exec -it box sh"])
    term.type("echo $((6*7))")
    term.wait_line("42")
    term.type("stty size")
    term.wait_line("30 100")
    term.type("exit 3")
    term.wait_line("[exit 3]")


@needs_tmux
def test_resize_reaches_the_container(panel, box, terminal):
    alice = panel.users["alice"]
    term = terminal([*panel.ssh_args(alice, "-tt"), "shell box"])
    term.type("stty size")
    term.wait_line("30 100")
    term.tmux("resize-window", "-t", "t", "-x", "120", "-y", "40")
    # Resizes travel as SSH window-change requests; poll until one arrived.
    wait_for(
        lambda: term.type("stty size") or "40 120" in term.lines(),
        what=f"the new size in the container:\n{term.screen()}",
    )


@needs_tmux
def test_control_keys_reach_the_shell_not_the_panel(panel, box, terminal):
    alice = panel.users["alice"]
    term = terminal([*panel.ssh_args(alice, "-tt"), "shell box"])
    term.type("echo ready-$((1+1)); sleep 1000")
    term.wait_line("ready-2")
    term.key("C-c")
    term.type("echo status=$?")
    term.wait_line("status=130")
    term.type("echo go-$((2+2)); sleep 1001")
    term.wait_line("go-4")
    term.key("C-z")
    wait_for(lambda: any("Stopped" in line for line in term.lines()), what=f"job stopped:\n{term.screen()}")
    term.type("kill -9 %1")
    assert panel.run(alice, "exec", "box", "true").returncode == 0


@needs_tmux
def test_ctrl_d_at_the_prompt_ends_the_shell(panel, box, terminal):
    alice = panel.users["alice"]
    term = terminal([*panel.ssh_args(alice, "-tt"), "shell box"])
    term.type("echo hello-$((3+4))")
    # Ctrl+D means EOF only at the shell's prompt (it reads the line raw there).
    wait_for(lambda: [line for line in term.lines() if line][-2:] == ["hello-7", "/ #"], what="the prompt")
    term.key("C-d")
    term.wait_line("[exit 0]")


@needs_tmux
def test_dropped_client_hangs_up_the_shell(panel, box, terminal, docker_client):
    alice = panel.users["alice"]
    term = terminal([*panel.ssh_args(alice, "-tt"), "shell box"])
    term.type("echo marker-$((2+3)); sleep 4242")
    term.wait_line("marker-5")

    def sleeping() -> bool:
        return "sleep 4242" in box.exec_run(["ps"]).output.decode()

    assert sleeping()
    term.close()
    wait_for(lambda: not sleeping(), what="the shell of a dropped client to end")


# The reusable bridge, as the TUI session hands its terminal over -----------


def test_bridge_shell_hands_the_terminal_over_and_back(panel, box):
    """`bridge_shell` on a PTY channel whose previous reader was cancelled
    mid-read (as the TUI driver stops its reader): the shell gets the
    keystrokes and the size changes, returns its exit status, and the channel
    is text again afterwards with nothing typed later lost."""
    import asyncio

    import asyncssh

    from sshpanel.access.principal import Principal
    from sshpanel.backend.engine import Engine
    from sshpanel.backend.user.workspace import Workspace
    from sshpanel.config import load_settings
    from sshpanel.ssh.shell_bridge import bridge_shell
    from sshpanel.store import open_store

    settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace})
    store = open_store(settings)
    engine = Engine(settings)
    alice = store.user_by_name("alice")
    workspace = Workspace(Principal(alice.id, "alice", "user"), store, engine, settings)

    class NoAuth(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return False

    async def session(process: asyncssh.SSHServerProcess) -> None:
        assert await process.stdin.readexactly(6) == "hello\n"
        previous = asyncio.create_task(process.stdin.read(100))
        await asyncio.sleep(0)
        previous.cancel()
        status = await bridge_shell(process, workspace, "box")
        process.stdout.write(f"[status {status}]\r\n")
        after = await process.stdin.readline()
        process.stdout.write(f"[after {after.strip()}]\r\n")
        process.exit(0)

    async def scenario() -> None:
        server = await asyncssh.create_server(
            NoAuth, "127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            process_factory=session, encoding="utf-8", errors="replace", line_editor=False,
        )
        port = server.sockets[0].getsockname()[1]
        try:
            async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="x") as conn:
                client = await conn.create_process(term_type="xterm", term_size=(90, 20))
                seen = ""

                async def until(text: str) -> None:
                    nonlocal seen
                    async with asyncio.timeout(20):
                        while text not in seen:
                            seen += await client.stdout.read(4096)

                client.stdin.write("hello\n")
                await until("/ # ")
                client.stdin.write("stty size\r")
                await until("20 90")
                client.change_terminal_size(100, 25)
                client.stdin.write("stty size; printf 'caf\\303\\251 %s\\n' $((6*7))\r")
                await until("café 42")
                assert "25 100" in seen
                client.stdin.write("exit 4\r")
                await until("[status 4]")
                client.stdin.write("naïve\n")
                await until("[after naïve]")
                await client.wait_closed()
        finally:
            server.close()

    try:
        asyncio.run(scenario())
    finally:
        engine.close()
        store.close()
