"""End to end as a person does it: the real OpenSSH client in a tmux
terminal, the dashboard, a container created and driven from the TUI, and
the real engine checked after every step."""

from __future__ import annotations

import shlex
import subprocess
import time

import pytest

from tests.conftest import SSH_BASE


class Terminal:
    """A tmux session running one command, read back with capture-pane."""

    def __init__(self, socket: str, command: list[str], width: int = 100, height: int = 30) -> None:
        self.socket = socket
        subprocess.run(
            ["tmux", "-L", socket, "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), shlex.join(command)],
            check=True,
        )

    def screen(self) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True)
        return result.stdout

    def keys(self, *keys: str) -> None:
        """Sends each key separately, as a person types them."""
        for key in keys:
            subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", key], check=True)
            time.sleep(0.05)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", "-l", text], check=True)

    def wait_for(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "t"], capture_output=True).returncode == 0

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _wait(predicate, timeout: float = 20, screen=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached" + (f"; screen:\n{screen()}" if screen else ""))


@pytest.fixture
def terminal(panel):
    alice = panel.users["alice"]
    command = [*SSH_BASE[:-2], "-tt", "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}", command)
    yield term
    term.close()


def _status(docker_client, name: str) -> str | None:
    found = docker_client.containers.list(all=True, filters={"name": f"^{name}$"})
    return found[0].status if found else None


def test_create_and_drive_a_container_from_the_dashboard(panel, docker_client, terminal):
    name = f"{panel.namespace}.alice.tuiweb"
    # Only the test image is offered: the form chooses the first image, and
    # other tests' builds on the same engine would sort before it.
    admin = panel.add_user("tuiadmin", admin=True)
    assert panel.run(admin, "image", "allow", "sshpanel-test/*").returncode == 0
    terminal.wait_for("alice (user)")
    terminal.wait_for("No containers yet")
    terminal.keys("c")
    terminal.wait_for("New container")
    terminal.wait_for("sshpanel-test/busybox")  # the image list has loaded
    terminal.type("tuiweb")
    terminal.wait_for("tuiweb")
    terminal.keys("Tab")
    time.sleep(0.3)
    terminal.keys("Tab")
    time.sleep(0.3)
    terminal.type("sleep 600")
    terminal.wait_for("sleep 600")
    terminal.keys("C-s")
    _wait(lambda: _status(docker_client, name) == "running", screen=terminal.screen)
    screen = terminal.wait_for("running")
    assert "tuiweb" in screen

    terminal.keys("x")
    _wait(lambda: _status(docker_client, name) == "exited")
    terminal.wait_for("exited")

    terminal.keys("s")
    _wait(lambda: _status(docker_client, name) == "running")

    # Stopped behind the panel's back: the table follows without a key press.
    docker_client.containers.get(name).stop(timeout=1)
    terminal.wait_for("exited")

    terminal.keys("d")
    terminal.wait_for("Cancel")
    terminal.keys("Escape")
    time.sleep(0.3)
    assert _status(docker_client, name) == "exited"
    terminal.keys("d")
    terminal.wait_for("Cancel")
    terminal.keys("y")
    _wait(lambda: _status(docker_client, name) is None)
    terminal.wait_for("No containers yet")

    terminal.keys("q")
    _wait(lambda: not terminal.alive())


def test_dashboard_fits_80x24_and_follows_resize(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "small", "sshpanel-test/busybox", "sleep", "600").returncode == 0
    command = [*SSH_BASE[:-2], "-tt", "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}-small", command, width=80, height=24)
    try:
        term.wait_for("small")
        _wait(lambda: "Quit" in term.screen().rstrip("\n").splitlines()[-1])
        subprocess.run(["tmux", "-L", term.socket, "resize-window", "-t", "t", "-x", "120", "-y", "35"], check=True)
        _wait(lambda: len(term.screen().rstrip("\n").splitlines()) > 24 and "Quit" in term.screen().splitlines()[34])
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "small")
