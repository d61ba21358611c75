"""Bad input fuzzing of the exec command handlers (issue 7), not only of the
parser: hypothesis-made command lines run as a real user through one real
panel server, its database and the real engine (one SSH connection, one
session per example). Every answer is exit 0, 1 or 2 with the reason on
stderr, never an internal error; the server logs no traceback; a refused
command changes nothing (no container, volume, image, network, and no
database row besides the audit log and history that record the refusal)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sqlite3
import time

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sshpanel.ssh.commands import build_parser
from tests.conftest import TEST_IMAGE, ssh_available

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

RECORDS = ("audit_entry", "event")
"""Tables that record a refused command too
(docs/ARCHITECTURE.md invariant 6)."""
STEP = 20.0
"""Longest wait for one command; a streaming one (`logs -f`, `stats`) is
ended by closing its channel after this."""


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb's parser (`run`, `script`, `user`, ...)."""
    parser, _ = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no verbs")


VERBS = _parsers()
HOSTILE = ["-", "--", "../x", "/etc", "..", "~", "$(id)", "`id`", "\x00", "\n", "%s", "\u202e", "x" * 300, "-1",
           "0", "1e309", "nan", "web", "data:/data", "/:/host", "80:80", "a=b", "=", "json", "table", TEST_IMAGE,
           "sha256:" + "0" * 64, "io.sshpanel.owner=bob", "--privileged", "--format", "json", "1h", "10s"]
"""Values a user might type, friendly and hostile; the image lets `run` and
`create` get past the image check now and then."""
VALUES = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20))


@st.composite
def _arguments(draw, parser: argparse.ArgumentParser) -> list[str]:
    """Arguments the parser mostly accepts: some of its options with
    values, one value per positional, a sub-verb where it has them."""
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            name = draw(st.sampled_from(sorted(action.choices)))
            words += [name, *draw(_arguments(action.choices[name]))]
        elif action.option_strings:
            if draw(st.booleans()):
                words.append(draw(st.sampled_from(action.option_strings)))
                if action.nargs != 0:
                    words.append(draw(st.sampled_from(action.choices)) if action.choices else draw(VALUES))
        elif action.nargs in ("*", "...", argparse.REMAINDER):
            words += draw(st.lists(VALUES, max_size=3))
        else:
            words += [draw(st.sampled_from(action.choices)) if action.choices and draw(st.booleans()) else draw(VALUES)
                      for _ in range(action.nargs if isinstance(action.nargs, int) else 1)]
    return words


@st.composite
def command_lines(draw) -> list[str]:
    """A verb and arguments: mostly parseable (the handler runs), now and
    then shuffled words (the parser refuses)."""
    verb = draw(st.sampled_from(sorted(VERBS)))
    words = draw(_arguments(VERBS[verb]))
    if draw(st.integers(0, 4)) == 0:
        words = draw(st.permutations(words + draw(st.lists(VALUES, max_size=3))))
    return [verb, *words]


def _database(panel) -> str:
    found = sorted(panel.data_dir.glob("*.db"))
    assert found, list(panel.data_dir.iterdir())
    return str(found[0])


def _state(panel, docker_client) -> tuple:
    """Everything a command could add, apart from the records of it."""
    label = f"io.{panel.namespace}.owner"
    with sqlite3.connect(f"file:{_database(panel)}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {table: db.execute(f'SELECT * FROM "{table}"').fetchall() for table in tables if table not in RECORDS}
    images = sorted(tag for image in docker_client.images.list() for tag in image.tags if tag.startswith(panel.namespace))
    return (
        rows,
        sorted(c.id for c in docker_client.containers.list(all=True, filters={"label": label})),
        sorted(v.name for v in docker_client.volumes.list(filters={"label": label})),
        sorted(n.name for n in docker_client.networks.list(filters={"label": label})),
        images,
    )


def _wait_for_login_stamp(panel, timeout: float = 30.0) -> None:
    """Waits until alice's login is stamped in the database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(f"file:{_database(panel)}?mode=ro", uri=True) as db:
            if db.execute("SELECT last_login FROM user WHERE name = 'alice'").fetchone()[0] is not None:
                return
        time.sleep(0.05)
    raise AssertionError("alice's login was never stamped")


@pytest.fixture(scope="module")
def session(panel, docker_client):
    """An event loop and one SSH connection of alice's to the real server;
    afterwards, the images the examples built are removed."""
    loop = asyncio.new_event_loop()
    alice = panel.users["alice"]
    conn = loop.run_until_complete(asyncssh.connect(
        "127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)], known_hosts=None, agent_path=None))
    _wait_for_login_stamp(panel)  # written after the login: it must not land inside an example
    yield loop, conn
    conn.close()
    loop.run_until_complete(conn.wait_closed())
    loop.close()
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{panel.namespace}/"):
                docker_client.images.remove(tag, force=True)


async def _run(conn: asyncssh.SSHClientConnection, argv: list[str]) -> tuple[int | None, str]:
    """Runs one command with stdin closed; returns (exit status, stderr), or
    (None, stderr) for a command still streaming after `STEP` seconds."""
    process = await conn.create_process(shlex.join(argv))
    process.stdin.write_eof()
    try:
        done = await asyncio.wait_for(process.wait(), STEP)
    except asyncio.TimeoutError:
        process.close()
        await process.wait_closed()
        return None, ""
    return done.exit_status, str(done.stderr)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_command_handlers_never_crash_and_refusals_change_nothing(panel, docker_client, session, argv):
    loop, conn = session
    before = _state(panel, docker_client)
    status, stderr = loop.run_until_complete(_run(conn, argv))
    assert "internal error" not in stderr and "Traceback" not in stderr, (argv, stderr)
    assert status in (None, 0, 1, 2), (argv, status, stderr)
    if status in (1, 2):
        assert stderr.strip(), (argv, status)
        assert _state(panel, docker_client) == before, (argv, status, stderr)
    log = panel.log()
    assert "Traceback" not in log and "session failed" not in log, (argv, log[-2000:])
