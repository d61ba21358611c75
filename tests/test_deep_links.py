"""Deep links (issue 24 item 5): `ssh -t panel.host dashboard NAME` opens the
dashboard on that container, `ssh -t panel.host logs --tui NAME` its log
view; without a terminal both say how to ask for one; another user's
container reads like one that does not exist; `y` in the log view copies
the lines on screen through OSC 52, escaped. The real OpenSSH client in
tmux, the real server and engine."""

from __future__ import annotations

import asyncio
import base64
import re

import pytest

from tests.conftest import SSH_BASE, TEST_IMAGE
from tests.test_clients import copy_with_y
from tests.test_tui_e2e import Terminal


def _ssh_tt(panel, user, *command: str) -> list[str]:
    return [*SSH_BASE[:-2], "-tt", "-i", str(user.key), "-p", str(panel.port), f"{user.name}@127.0.0.1", *command]


@pytest.fixture(scope="module")
def boxes(panel):
    """alice's `first` and `second`, printing a marker line; bob's `secret`."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    for name in ("first", "second"):
        done = panel.run(alice, "run", "--name", name, TEST_IMAGE, "sh", "-c", f"echo hello-from-{name}; sleep 600")
        assert done.returncode == 0, done.stderr
    assert panel.run(bob, "run", "--name", "secret", TEST_IMAGE, "sleep", "600").returncode == 0
    yield
    panel.run(alice, "rm", "-f", "first", "second")
    panel.run(bob, "rm", "-f", "secret")


def test_dashboard_opens_on_the_named_container(panel, boxes):
    alice = panel.users["alice"]
    # The table lists the newest first: `first` is on the second row.
    term = Terminal(f"sshpanel-dl1-{panel.namespace}", _ssh_tt(panel, alice, "dashboard", "first"), 120, 35)
    try:
        term.wait_for("second")
        term.keys("l")  # the log view of the selected container: the one named in the link
        term.wait_for("hello-from-first")
        assert "hello-from-second" not in term.screen()
        term.keys("Escape")
        term.keys("q")
    finally:
        term.close()


def test_logs_tui_opens_the_log_view(panel, boxes):
    alice = panel.users["alice"]
    term = Terminal(f"sshpanel-dl2-{panel.namespace}", _ssh_tt(panel, alice, "logs", "--tui", "-f", "first"), 120, 35)
    try:
        screen = term.wait_for("hello-from-first")
        assert "hello-from-second" not in screen
        term.keys("Escape")
        term.wait_for("second")  # back on the dashboard
        term.keys("q")
    finally:
        term.close()


@pytest.mark.parametrize("name", ["secret", "nosuch"])
def test_a_link_to_a_container_that_is_not_yours_reads_as_unknown(panel, boxes, name):
    alice = panel.users["alice"]
    term = Terminal(f"sshpanel-dl3-{name}-{panel.namespace}", _ssh_tt(panel, alice, "dashboard", name), 120, 35)
    try:
        term.wait_for(f"no such container: {name}")
        term.keys("q")
    finally:
        term.close()


@pytest.mark.parametrize("command", [["dashboard"], ["dashboard", "first"], ["logs", "--tui", "first"]])
def test_without_a_terminal_the_link_says_how(panel, boxes, command):
    done = panel.run(panel.users["alice"], *command)
    assert done.returncode == 2
    assert "needs a terminal: ssh -t panel.host" in done.stderr


def test_help_lists_the_links(panel):
    text = panel.run(panel.users["alice"], "help").stdout
    assert "dashboard" in text
    assert "--tui" in panel.run(panel.users["alice"], "logs", "--help").stdout


def test_y_in_the_log_view_copies_the_lines_on_screen_escaped(panel):
    alice = panel.users["alice"]
    script = r"echo copy-one; printf 'copy-two \033]0;owned\007\n'; sleep 600"
    assert panel.run(alice, "run", "--name", "copylog", TEST_IMAGE, "sh", "-c", script).returncode == 0
    try:
        data = asyncio.run(copy_with_y(panel, alice, b"copy-two", "logs --tui copylog"))
        match = re.search(rb"\x1b\]52;c;([A-Za-z0-9+/=]*)\x07", data)
        assert match, data[-500:]
        copied = base64.b64decode(match.group(1)).decode()
        assert copied == "copy-one\ncopy-two \\x1b]0;owned\\x07", copied
    finally:
        panel.run(alice, "rm", "-f", "copylog")
