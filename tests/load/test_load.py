"""Bounded load test (issue 7), on loopback only, stopping by itself: many
concurrent sessions, a mix of dashboards and commands with create, stop and
remove churn, against a real `sshpanel serve` process and the real engine.

Zero unexpected errors; the server's memory stays bounded while loaded;
after every session closed, nothing is left (no connection, no container of
the churn, as many `session end` as `session start`), and a second wave
leaves the server's threads, file descriptors and memory where the first
left them (growth that does not stop is a leak).

The default suite runs a small version (30 sessions, two waves of 15 s);
`SSHPANEL_LOAD_FULL=1` runs 200 sessions in two waves of two minutes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import time
from dataclasses import dataclass, field

import asyncssh
import psutil
import pytest

from tests.conftest import TEST_IMAGE, Panel, User, remove_namespace, start_panel, stop_panel

FULL = os.environ.get("SSHPANEL_LOAD_FULL") == "1"
"""Read at import: the suite's autouse fixture clears `SSHPANEL_*` variables."""
SESSIONS = 200 if FULL else 30
WAVE_SECONDS = 120.0 if FULL else 15.0
SLOTS_PER_USER = 10
"""Concurrent sessions of one user (the server allows 20 per user). The
churn slots come first, so that few users create a network: the engine's
default address pools hold about 30 networks, shared with everything else."""
HANDSHAKES = 8
"""Logins in progress at once: under the server's per-source admission cap
(10 unauthenticated connections from one address, like OpenSSH MaxStartups)."""
STEP_TIMEOUT = 180.0 if FULL else 60.0
"""Longest wait for any one step (a login, a first frame, a command)."""
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]


@dataclass
class Tally:
    """What the clients did and what went wrong."""

    errors: list[str] = field(default_factory=list)
    commands: int = 0
    dashboards: int = 0
    churned: int = 0


@dataclass(frozen=True)
class Usage:
    """The server process at one moment."""

    rss: int
    threads: int
    fds: int
    connections: int


def _usage(process: psutil.Process, port: int) -> Usage:
    established = [c for c in process.net_connections(kind="tcp") if c.laddr and c.laddr.port == port and c.raddr]
    return Usage(process.memory_info().rss, process.num_threads(), process.num_fds(), len(established))


async def _connect(panel: Panel, user: User, limiter: asyncio.Semaphore) -> asyncssh.SSHClientConnection:
    async with limiter:
        return await asyncio.wait_for(
            asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[str(user.key)],
                             known_hosts=None, agent_path=None),
            STEP_TIMEOUT,
        )


async def _command(conn: asyncssh.SSHClientConnection, tally: Tally, *argv: str) -> str:
    result = await asyncio.wait_for(conn.run(shlex.join(argv)), STEP_TIMEOUT)
    tally.commands += 1
    if result.exit_status != 0:
        tally.errors.append(f"{argv[0]} exited {result.exit_status}: {str(result.stderr).strip()[:200]}")
    return str(result.stdout)


async def _dashboard(conn: asyncssh.SSHClientConnection, user: User, tally: Tally, hold: float, quit_key: bool) -> None:
    process = await conn.create_process(term_type="xterm-256color", term_size=(100, 30))
    seen = ""

    async def first_frame() -> None:
        nonlocal seen
        while user.name not in seen:
            chunk = await process.stdout.read(65536)
            if not chunk:
                raise ConnectionError(f"dashboard closed before its first frame: {seen[-200:]!r}")
            seen += chunk

    async def drain() -> None:
        while await process.stdout.read(65536):
            pass

    await asyncio.wait_for(first_frame(), STEP_TIMEOUT)
    draining = asyncio.create_task(drain())
    process.stdin.write("jk")
    await asyncio.sleep(hold)  # a user looking at the screen: load shaping, not synchronisation
    if quit_key:
        process.stdin.write("q")
        status = (await asyncio.wait_for(process.wait(), STEP_TIMEOUT)).exit_status
        if status != 0:
            tally.errors.append(f"dashboard of {user.name} ended with status {status}")
    else:
        conn.abort()
    draining.cancel()
    tally.dashboards += 1


async def _slot(panel: Panel, user: User, index: int, deadline: float, limiter, tally: Tally) -> None:
    """One concurrent session, repeated until the deadline: a dashboard, a
    churn of create/stop/remove, or read-only commands."""
    rng = random.Random(index)
    kind = ("churn", "dashboard", "reads")[min(2, 3 * index // SESSIONS)]
    round_ = 0
    while time.monotonic() < deadline:
        round_ += 1
        try:
            conn = await _connect(panel, user, limiter)
            try:
                if kind == "dashboard":
                    await _dashboard(conn, user, tally, rng.uniform(1.0, 4.0), quit_key=round_ % 2 == 0)
                elif kind == "churn":
                    name = f"s{index}r{round_}"
                    await _command(conn, tally, "run", "--name", name, "-m", "8m", "--cpus", "0.05", TEST_IMAGE,
                                   *STOPPABLE)
                    await _command(conn, tally, "ps", "--format", "json")
                    await _command(conn, tally, "stop", name)
                    await _command(conn, tally, "rm", name)
                    tally.churned += 1
                else:
                    for argv in (["ps", "-a"], ["quota"], ["images"], ["history", "--days", "1"],
                                 ["stats", "--no-stream"]):
                        await _command(conn, tally, *argv)
            finally:
                conn.close()
                await conn.wait_closed()
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            tally.errors.append(f"{kind} slot {index} of {user.name}: {type(exc).__name__}: {exc}")


async def _wave(panel: Panel, users: list[User], seconds: float, tally: Tally, sample) -> None:
    limiter = asyncio.Semaphore(HANDSHAKES)
    deadline = time.monotonic() + seconds
    slots = [
        asyncio.create_task(_slot(panel, users[i // SLOTS_PER_USER], i, deadline, limiter, tally))
        for i in range(SESSIONS)
    ]
    while not all(task.done() for task in slots):
        sample()
        await asyncio.wait(slots, timeout=1.0)
    for task in slots:
        task.result()


def _settled(process: psutil.Process, panel: Panel) -> Usage:
    """Waits until the server holds no client connection, then measures."""
    deadline = time.monotonic() + 60
    while True:
        usage = _usage(process, panel.port)
        log = panel.log()
        if usage.connections == 0 and log.count("session start") == log.count("session end"):
            return usage
        assert time.monotonic() < deadline, f"sessions did not close: {usage}"
        time.sleep(0.1)


@pytest.mark.timeout(1200 if FULL else 300)
def test_concurrent_sessions_with_churn(tmp_path, docker_client):
    panel = start_panel(tmp_path, f"sptest{os.getpid()}{random.randrange(1 << 16):x}")
    try:
        users = [panel.add_user(f"load{n:02d}") for n in range(-(-SESSIONS // SLOTS_PER_USER))]
        server = psutil.Process(panel.process.pid)
        idle = _settled(server, panel)
        peak = [idle.rss]

        def sample() -> None:
            peak[0] = max(peak[0], server.memory_info().rss)

        tally = Tally()
        after: list[Usage] = []
        for _ in range(2):
            asyncio.run(_wave(panel, users, WAVE_SECONDS, tally, sample))
            after.append(_settled(server, panel))

        assert tally.errors == [], "\n".join(tally.errors[:20])
        assert tally.dashboards >= SESSIONS // 3 and tally.churned >= SESSIONS // 3, tally
        log = panel.log()
        for bad in ("Traceback", "session failed", " ERROR "):
            assert bad not in log, bad
        assert peak[0] <= idle.rss + SESSIONS * 3 * 2**20 + 200 * 2**20, (idle, peak)
        first, second = after
        assert second.threads <= first.threads + 2, after
        assert second.fds <= first.fds + 5, after
        assert second.rss <= first.rss + max(24 * 2**20, first.rss // 10), after
        left = docker_client.api.containers(all=True, filters={"label": f"io.{panel.namespace}.owner"})
        assert left == []
    finally:
        stop_panel(panel)
        remove_namespace(docker_client, panel.namespace)
