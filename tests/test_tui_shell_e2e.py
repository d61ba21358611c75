"""End to end: a shell opened from the dashboard through the real OpenSSH
client in a tmux terminal, into a real container, and the dashboard back
(and still live) after the shell exits."""

from __future__ import annotations

import subprocess

from tests.conftest import SSH_BASE
from tests.test_tui_e2e import Terminal, _status, _wait


def _lines(screen: str) -> list[str]:
    return [line.rstrip() for line in screen.splitlines()]


def test_shell_from_the_dashboard_and_back(panel, docker_client):
    alice = panel.users["alice"]
    for name in ("bystander", "shellbox"):  # the newest is the first row
        assert panel.run(alice, "run", "--name", name, "sshpanel-test/busybox", "sleep", "600").returncode == 0
    command = [*SSH_BASE[:-2], "-tt", "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}-shell", command, width=80, height=24)
    try:
        term.wait_for("bystander")
        _wait(lambda: "Quit" in term.screen())
        term.keys("o")
        term.wait_for("/ #")  # busybox has no bash: /bin/sh
        assert "Quit" not in term.screen()  # the dashboard made way for the shell
        term.type("echo $((6*7))")
        term.keys("Enter")
        _wait(lambda: "42" in _lines(term.screen()))

        # Ctrl+C reaches the shell's foreground process, not the panel.
        term.type("sleep 300")
        term.keys("Enter", "C-c")
        term.type("echo still-$((1+1))")
        term.keys("Enter")
        _wait(lambda: "still-2" in _lines(term.screen()))
        subprocess.run(["tmux", "-L", term.socket, "resize-window", "-t", "t", "-x", "90", "-y", "26"], check=True)
        term.type("stty size")
        term.keys("Enter")
        _wait(lambda: "26 90" in _lines(term.screen()))

        term.type("exit")
        term.keys("Enter")
        _wait(lambda: "Quit" in term.screen() and "shellbox" in term.screen())
        assert len(term.screen().splitlines()[-1]) <= 90

        # Still live: a change made behind the panel's back shows up.
        bystander = f"{panel.namespace}.alice.bystander"
        docker_client.containers.get(bystander).stop(timeout=1)
        assert _status(docker_client, bystander) == "exited"
        term.wait_for("exited")
        term.keys("q")
        _wait(lambda: not term.alive())
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "shellbox", "bystander")
