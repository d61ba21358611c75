"""The engine seam (docs/ARCHITECTURE.md "The engine seam"): Docker's
multiplexed stream is decoded one way however it is cut; the one copy of
container states per engine follows the events stream, serves every session
without engine calls of its own, and words `STATUS` as `docker ps` does."""

from __future__ import annotations

import itertools
import re
import subprocess

import pytest

from sshpanel.access.principal import Principal
from sshpanel.backend.engine import STDERR, STDOUT, Engine, FrameDecoder
from sshpanel.backend.engine.frames import HEADER
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import load_settings
from sshpanel.store import open_store
from tests.conftest import TEST_IMAGE, wait_for

FRAMES = [(STDOUT, b"hello\n"), (STDERR, b"\x1b]0;title\x07oops\n"), (STDOUT, b""), (STDOUT, bytes(range(256)))]
"""Frames of both streams, an empty one (skipped) and every byte value."""


def _encoded(frames) -> bytes:
    return b"".join(HEADER.pack(stream, len(data)) + data for stream, data in frames)


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 8, 9, 64, 10_000])
def test_frames_decode_the_same_however_the_stream_is_cut(cut):
    data = _encoded(FRAMES)
    decoder = FrameDecoder(tty=False)
    found = []
    for start in range(0, len(data), cut):
        found += decoder.frames(data[start:start + cut])
    assert found == [(stream, payload) for stream, payload in FRAMES if payload]
    assert decoder.next() is None


def test_frames_split_at_every_two_points():
    data = _encoded(FRAMES[:2])
    for first, second in itertools.combinations(range(1, len(data)), 2):
        decoder = FrameDecoder(tty=False)
        found = decoder.frames(data[:first]) + decoder.frames(data[first:second]) + decoder.frames(data[second:])
        assert found == FRAMES[:2]


def test_a_terminal_stream_passes_as_it_came():
    decoder = FrameDecoder(tty=True)
    assert decoder.frames(b"\x01\x00\x00\x00raw") == [(STDOUT, b"\x01\x00\x00\x00raw")]


class Session:
    """An in-process session of alice's on the panel's engine and database,
    with its own events listener (as one panel process has)."""

    def __init__(self, panel) -> None:
        self.settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace,
                                       "database_url": panel.database_url})
        self.store = open_store(self.settings)
        self.engine = Engine(self.settings)
        self.events = EngineEvents(self.engine, self.settings)
        self.events.start()
        user = self.store.user_by_name("alice")
        self.principal = Principal(user.id, "alice", user.role, "SHA256:seam", "test")

    def workspace(self) -> Workspace:
        return Workspace(self.principal, self.store, self.engine, self.settings, self.events)

    def close(self) -> None:
        self.events.stop()
        self.engine.close()
        self.store.close()


@pytest.fixture(scope="module")
def session(panel):
    opened = Session(panel)
    wait_for(opened.events.connected.is_set, what="the events listener")
    yield opened
    opened.close()


def _words(status: str) -> str:
    """`STATUS` with its durations replaced (two readings a second apart
    may say `2 seconds` and `3 seconds`)."""
    return re.sub(r"Less than a second|About an? (minute|hour)|\d+ (second|minute|hour|day|week|month|year)s?",
                  "T", status)


def _docker_status(name: str) -> str:
    return subprocess.run(["docker", "ps", "-a", "--filter", f"name=^/{name}$", "--format", "{{.Status}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_sessions_read_one_copy_kept_from_events(panel, session, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "seam", TEST_IMAGE, "sleep", "600").returncode == 0
    workspaces = [session.workspace() for _ in range(5)]
    wait_for(lambda: any(v.name == "seam" and v.running for v in workspaces[0].containers()), what="seam running")
    calls = session.events.states.inspects
    for _ in range(4):
        for workspace in workspaces:
            assert any(v.name == "seam" and v.running for v in workspace.containers())
    assert session.events.states.inspects == calls, "sessions asked the engine instead of reading the copy"

    # A stop behind the panel's back reaches every session through the events.
    docker_client.containers.get(f"{panel.namespace}.alice.seam").stop(timeout=0)
    for workspace in workspaces:
        wait_for(lambda: any(v.name == "seam" and v.state == "exited" for v in workspace.containers()),
                 what="the stop seen by every session")
    assert panel.run(alice, "rm", "seam").returncode == 0
    wait_for(lambda: all(v.name != "seam" for v in workspaces[0].containers()), what="the removal")


@pytest.mark.parametrize("command, then", [
    (["sleep", "600"], None),
    (["sh", "-c", "exit 3"], None),
    (["sleep", "600"], "stop"),
])
def test_status_words_are_dockers(panel, session, command, then):
    alice = panel.users["alice"]
    name = f"words{abs(hash((tuple(command), then))) % 10_000}"
    assert panel.run(alice, "run", "--name", name, TEST_IMAGE, *command).returncode == 0
    if then:
        assert panel.run(alice, then, name).returncode == 0
    workspace = session.workspace()
    docker_name = f"{panel.namespace}.alice.{name}"
    wait_for(lambda: (ours := [v.status for v in workspace.containers() if v.name == name])
             and _words(ours[0]) == _words(_docker_status(docker_name)), what=f"docker's STATUS for {command}")
    assert panel.run(alice, "rm", "-f", name).returncode == 0


def test_created_reads_created(panel, session):
    alice = panel.users["alice"]
    assert panel.run(alice, "create", "--name", "fresh", TEST_IMAGE).returncode == 0
    workspace = session.workspace()
    wait_for(lambda: [v.status for v in workspace.containers() if v.name == "fresh"] == ["Created"],
             what="Created")
    assert _docker_status(f"{panel.namespace}.alice.fresh") == "Created"
    assert panel.run(alice, "rm", "fresh").returncode == 0
