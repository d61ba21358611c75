"""Logs: tail, timestamps, stdout/stderr kept apart, follow until the client
leaves, and a client that leaves frees the Docker stream and its thread."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess

import pytest

from sshpanel.backend.user.logs import LogLine, find_matches
from tests.conftest import TEST_IMAGE, wait_for

CHATTY = "i=0; while :; do i=$((i+1)); echo out $i; echo err $i >&2; sleep 0.1; done"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")




@pytest.fixture(scope="module")
def chatty(panel):
    """alice's `chatty` container: `out N` on stdout and `err N` on stderr, 10 a second."""
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "chatty", TEST_IMAGE, "sh", "-c", CHATTY).returncode == 0
    wait_for(lambda: len(panel.run(alice, "logs", "chatty").stdout.splitlines()) >= 5, what="some output")
    yield "chatty"
    panel.run(alice, "rm", "-f", "chatty")


def server_threads(panel) -> int:
    return len(os.listdir(f"/proc/{panel.process.pid}/task"))


def server_sockets(panel) -> int:
    fds = f"/proc/{panel.process.pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        try:
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


def test_logs_tail_keeps_stdout_and_stderr_apart(panel, chatty):
    alice = panel.users["alice"]
    result = panel.run(alice, "logs", "--tail", "6", chatty)
    assert result.returncode == 0, result.stderr
    out, err = result.stdout.splitlines(), result.stderr.splitlines()
    assert len(out) + len(err) == 6
    assert out and all(re.fullmatch(r"out \d+", line) for line in out)
    assert err and all(re.fullmatch(r"err \d+", line) for line in err)


def test_logs_timestamps_and_since(panel, chatty):
    alice = panel.users["alice"]
    stamped = panel.run(alice, "logs", "-t", "--tail", "2", chatty)
    assert stamped.returncode == 0
    lines = stamped.stdout.splitlines() + stamped.stderr.splitlines()
    assert len(lines) == 2 and all(STAMP.match(line) for line in lines)
    everything = panel.run(alice, "logs", "-t", chatty).stdout.splitlines()
    middle = everything[len(everything) // 2]
    stamp, _, text = middle.partition(" ")
    recent = panel.run(alice, "logs", "--since", stamp, chatty).stdout.splitlines()
    assert recent[0] == text
    assert recent[: len(everything) - len(everything) // 2] == [line.partition(" ")[2] for line in everything[len(everything) // 2 :]]
    assert panel.run(alice, "logs", "--since", "10m", chatty).stdout.splitlines()[0] == "out 1"
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert panel.run(alice, "logs", "--since", future, chatty).stdout == ""


def test_logs_bad_input_and_isolation(panel, chatty):
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "logs", "--tail", "-3", chatty).returncode == 2
    bad_since = panel.run(alice, "logs", "--since", "yesterday-ish", chatty)
    assert bad_since.returncode == 1 and "invalid --since" in bad_since.stderr
    for user in (bob, alice):
        missing = panel.run(user, "logs", "-f", "nope")
        assert missing.returncode == 1 and "no such container: nope" in missing.stderr
    denied = panel.run(bob, "logs", chatty)
    assert denied.returncode == 1 and denied.stdout == "" and "no such container" in denied.stderr


def test_logs_follow_ends_when_the_container_stops(panel):
    alice = panel.users["alice"]
    script = "for i in 1 2 3; do echo line $i; sleep 0.3; done"
    assert panel.run(alice, "run", "--name", "brief", TEST_IMAGE, "sh", "-c", script).returncode == 0
    try:
        result = panel.run(alice, "logs", "-f", "brief", timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["line 1", "line 2", "line 3"]
    finally:
        panel.run(alice, "rm", "-f", "brief")


def follow_once(panel, user, name: str) -> None:
    """Starts `logs -f`, reads one line, then drops the connection."""
    process = subprocess.Popen(
        [*panel.ssh_args(user), "--", "logs", "-f", "--tail", "1", name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout.readline().startswith(b"out ")
    finally:
        process.kill()
        process.wait()


def test_logs_follow_disconnect_frees_the_stream_regression(panel, chatty):
    alice = panel.users["alice"]
    follow_once(panel, alice, chatty)
    follow_once(panel, alice, chatty)
    # Warmed up (executor threads exist now); wait for the server to settle.
    wait_for(lambda: server_threads(panel) == server_threads(panel), what="a steady thread count")
    threads, sockets = server_threads(panel), server_sockets(panel)
    for _ in range(20):
        follow_once(panel, alice, chatty)
    wait_for(
        lambda: server_threads(panel) <= threads and server_sockets(panel) <= sockets,
        timeout=30,
        what=f"threads back to {threads} and sockets back to {sockets}",
    )


def test_leaving_the_log_of_a_quiet_container_frees_the_server_regression(panel):
    """Closing a follower whose reading thread waits for a container that
    writes nothing more must not wait with it: a plain `Response.close()`
    did, on the event loop, and froze every session until the next line."""
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "-d", "--name", "quiet", TEST_IMAGE, "sh", "-c",
                     "echo out 1; exec sleep 600").returncode == 0
    try:
        wait_for(lambda: "out 1" in panel.run(alice, "logs", "quiet").stdout, what="the one line")
        follow_once(panel, alice, "quiet")
        follow_once(panel, alice, "quiet")
        assert panel.run(alice, "ps", timeout=30).returncode == 0
    finally:
        panel.run(alice, "rm", "-f", "quiet")


def test_logs_follow_without_stdin_keeps_following(panel, chatty):
    alice = panel.users["alice"]
    process = subprocess.Popen(
        [*panel.ssh_args(alice), "--", "logs", "-f", "--tail", "0", chatty],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        numbers = [int(process.stdout.readline().split()[1]) for _ in range(15)]
        assert numbers == list(range(numbers[0], numbers[0] + 15))
    finally:
        process.kill()
        process.wait()


def test_log_line_time_and_search_spans():
    line = LogLine("stderr", "Error: disk full; error again", "2024-05-01T12:00:00.123456789Z")
    assert line.time == dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
    assert find_matches(line.text, "error") == [(0, 5), (18, 23)]
    assert find_matches(line.text, "error", ignore_case=False) == [(18, 23)]
    assert find_matches(line.text, "") == []
    assert find_matches("a.b", ".") == [(1, 2)]
