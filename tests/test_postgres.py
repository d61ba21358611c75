"""PostgreSQL at run time (issue 19): a server restart while the panel runs
(commands on open connections say `database unavailable, try again later`,
refused logins are logged at WARNING with the reason, events are not lost,
and within 10 s of the server's return the same panel process serves
logins again), and the bound on the connections one process opens."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import asyncssh
import pytest

from sshpanel.backend.engine.recorder import GRACE
from tests.conftest import TEST_IMAGE
from tests.databases import admin_query, postgres_ctl

pytestmark = pytest.mark.parametrize("database", ["postgres"], indirect=True)

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]


def _connect(panel, user):
    return asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[str(user.key)],
                            known_hosts=None, agent_path=None)


def _history(panel, user, name: str) -> list[tuple[str, str]]:
    result = panel.run(user, "history", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [(event["Kind"], event["Detail"]) for event in map(json.loads, result.stdout.splitlines())]


def test_a_database_restart_is_survived_without_restarting_the_panel(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "web", TEST_IMAGE, *STOPPABLE).returncode == 0
    container = docker_client.containers.get(f"{panel.namespace}.alice.web")

    async def during_outage() -> asyncssh.SSHCompletedProcess:
        async with _connect(panel, alice) as conn:
            assert (await conn.run("ps")).exit_status == 0
            await asyncio.to_thread(postgres_ctl, "stop")
            return await conn.run("ps")

    try:
        down = asyncio.run(during_outage())
        assert down.exit_status == 1
        assert "database unavailable, try again later" in down.stderr
        refused = panel.run(alice, "ps")
        assert refused.returncode == 255
        assert re.search(r"WARNING sshpanel\.ssh: login failed user='alice' source=\S+: "
                         r"database unavailable: connection refused \(127\.0\.0\.1:\d+\)", panel.log())
        container.stop(timeout=10)  # behind the panel's back, while nothing can be written
        container.start()
        due = time.monotonic() + GRACE + 1  # every event's write is then due while the database is down
        while "events recorder: database unavailable" not in panel.log():
            assert time.monotonic() < due + 20, "the recorder never tried to write during the outage"
            time.sleep(0.2)
        time.sleep(max(0.0, due - time.monotonic()))
    finally:
        postgres_ctl("start")
    back = time.monotonic()
    while True:
        result = panel.run(alice, "ps", "-a")
        if result.returncode == 0:
            break
        assert time.monotonic() - back < 10, result.stderr
        time.sleep(0.5)
    assert panel.process.poll() is None
    assert panel.run(alice, "whoami").stdout.startswith("alice")
    deadline = time.monotonic() + 30
    while ("start", "outside the panel") not in _history(panel, alice, "web"):
        assert time.monotonic() < deadline, _history(panel, alice, "web")
        time.sleep(0.5)
    during = _history(panel, alice, "web")[:4]  # newest first; one second may order them either way
    assert sorted(during) == [("die", "exited after signal 15"), ("kill", "signal 15"),
                              ("start", "outside the panel"), ("stop", "outside the panel")], during


def test_connections_stay_within_the_maximum(limited_panel, database):
    """200 simultaneous commands on one panel process allowed 2 connections:
    all succeed, and PostgreSQL never sees more than 2 from the panel's
    pool, and the one connection that holds its locks."""
    panel = limited_panel(SSHPANEL_DATABASE_MAX_CONNECTIONS="2", SSHPANEL_MAX_SESSIONS_PER_CONNECTION="200",
                          SSHPANEL_MAX_SESSIONS_PER_USER="200")
    alice = panel.users["alice"]
    name = panel.database_url.rsplit("/", 1)[1]
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(admin_query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,))[0][0])
            time.sleep(0.02)

    async def burst() -> list[asyncssh.SSHCompletedProcess]:
        async with _connect(panel, alice) as conn:
            return await asyncio.gather(*(conn.run("quota") for _ in range(200)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = asyncio.run(burst())
    finally:
        done.set()
        watcher.join()
    assert [r.exit_status for r in results] == [0] * 200, {r.stderr for r in results}
    assert len(seen) > 10 and 1 <= max(seen) <= 2 + 1, seen
