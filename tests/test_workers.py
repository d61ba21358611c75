"""`sshpanel serve --workers N` (issue 8): a supervisor accepts and admits,
worker processes serve. Every limit of issue 7 must hold over all
the processes together, not per process: these tests put the pieces of
one attack on different workers and check that the whole is still refused."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time

import asyncssh
import psutil
import pytest

from sshpanel.store.locks import FileLock, lock_path, try_lock
from tests.conftest import TEST_IMAGE, remove_namespace, start_panel, stop_panel
from tests.test_limits import _bare_session, retry_until_admitted
from tests.test_sessions import _read_until

pytestmark = pytest.mark.databases

WORKERS_ENV = {"SSHPANEL_WORKERS": "2", "SSHPANEL_MAX_SESSIONS_PER_USER": "3"}


@pytest.fixture(scope="module")
def workers_panel(tmp_path_factory, docker_client, database):
    """A panel of two workers, users alice (admin), bob and carol; a user
    may hold 3 sessions."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path_factory.mktemp("workers"), namespace, extra_env=WORKERS_ENV,
                         database_url=database.new_url())
    server.add_user("alice", admin=True)
    server.add_user("bob")
    server.add_user("carol")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def _connect(panel, user, local: str = "127.0.0.1", keys=None):
    return asyncssh.connect("127.0.0.1", panel.port, username=user if isinstance(user, str) else user.name,
                            client_keys=keys if keys is not None else [str(user.key)], known_hosts=None,
                            agent_path=None, local_addr=(local, 0))


def _worker_of(panel, port: int) -> str:
    """The worker (`w0`, `w1`) that logged the connection from local port `port`."""
    match = re.search(rf"\[(w\d+)\]: connection from 127\.0\.0\.\d+:{port}\b", panel.log())
    assert match, f"no worker logged port {port}"
    return match.group(1)


def _worker_pids(panel) -> list[int]:
    return [child.pid for child in psutil.Process(panel.process.pid).children()]


def test_logins_are_spread_over_the_workers(workers_panel):
    """Connections held at once go to different workers; each serves the
    dashboard and the command line."""
    alice = workers_panel.users["alice"]
    assert "with 2 workers" in workers_panel.log()

    async def scenario() -> set[str]:
        async with _connect(workers_panel, alice) as one, _connect(workers_panel, alice) as two:
            for conn in (one, two):
                assert (await conn.run("whoami")).stdout.startswith("alice")
            screen = await two.create_process(term_type="xterm", term_size=(100, 30))
            await _read_until(screen.stdout, "alice")
            screen.stdin.write("q")
            return {_worker_of(workers_panel, conn.get_extra_info("sockname")[1]) for conn in (one, two)}

    assert asyncio.run(scenario()) == {"w0", "w1"}


async def check_places_are_shared(conns: list, name: str) -> None:
    """User `name` holds one session on each connection of `conns`, as many
    as the limit allows: a further one is refused on every connection;
    once one closes, the first connection gets a place again (20 s at most)."""
    held = [await _bare_session(conn) for conn in conns]
    for conn in conns:
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.run("whoami")
        assert "too many open sessions" in refused.value.reason
    held.pop().close()
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            assert (await conns[0].run("whoami")).stdout.startswith(name)
            return
        except asyncssh.ChannelOpenError:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)


def test_session_limit_per_user_holds_across_workers(workers_panel):
    """3 sessions per user: held on connections served by both workers, the
    fourth is refused wherever it lands; one closing frees a place."""
    bob = workers_panel.users["bob"]

    async def scenario() -> None:
        async with _connect(workers_panel, bob) as one, _connect(workers_panel, bob) as two, \
                _connect(workers_panel, bob) as three:
            served = {_worker_of(workers_panel, c.get_extra_info("sockname")[1]) for c in (one, two, three)}
            assert served == {"w0", "w1"}
            await check_places_are_shared([one, two, three], "bob")

    asyncio.run(scenario())


async def _fail_logins(panel, name: str, local: str) -> None:
    """One connection offering 6 wrong keys (`MaxAuthTries`)."""
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(6)]
    with pytest.raises((asyncssh.DisconnectError, asyncssh.PermissionDenied, ConnectionError)):
        async with _connect(panel, name, local=local, keys=keys):
            pass


def test_source_penalty_counts_failures_on_every_worker(workers_panel):
    """`PerSourcePenalties` (10 failures): 6 failures on one worker and 6 on
    the other from one address, and that address is refused; others not."""
    attacker = "127.0.0.9"

    async def scenario() -> None:
        await _fail_logins(workers_panel, "alice", attacker)
        await _fail_logins(workers_panel, "alice", attacker)
        with pytest.raises(asyncssh.DisconnectError) as refused:
            async with _connect(workers_panel, workers_panel.users["alice"], local=attacker):
                pass
        assert refused.value.reason.startswith("too many authentication failures from your address; try again later")
        async with _connect(workers_panel, workers_panel.users["alice"]) as conn:
            assert (await conn.run("whoami")).stdout.startswith("alice")

    asyncio.run(scenario())
    failed_on = set(re.findall(r"\[(w\d+)\]: too many authentication failures user='alice' source=127\.0\.0\.9:",
                               workers_panel.log()))
    assert failed_on == {"w0", "w1"}


def test_account_throttling_counts_failures_on_every_worker(workers_panel):
    """NIST SP 800-63B throttling (100 failures on an account): failures
    from 17 addresses spread over both workers lock carol everywhere, even
    with her right key; alice is not affected."""
    carol = workers_panel.users["carol"]

    async def scenario() -> None:
        for index in range(17):  # 102 failures, at most 6 per address
            await _fail_logins(workers_panel, "carol", f"127.0.1.{index + 1}")
        for attempt in range(2):  # sequential logins alternate between the workers
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(workers_panel, carol, local=f"127.0.2.{attempt + 1}"):
                    pass
        async with _connect(workers_panel, workers_panel.users["alice"], local="127.0.2.9") as conn:
            assert (await conn.run("whoami")).stdout.startswith("alice")

    asyncio.run(scenario())


def test_disabling_a_user_closes_their_sessions_on_every_worker(workers_panel):
    """An admin's `user disable` on one worker ends the user's connections on
    all workers."""
    alice, bob = workers_panel.users["alice"], workers_panel.users["bob"]

    async def scenario() -> None:
        async with _connect(workers_panel, bob) as one, _connect(workers_panel, bob) as two:
            served = {_worker_of(workers_panel, c.get_extra_info("sockname")[1]) for c in (one, two)}
            assert served == {"w0", "w1"}
            result = await asyncio.to_thread(workers_panel.run, alice, "user", "disable", "bob")
            assert result.returncode == 0, result.stderr
            await asyncio.wait_for(asyncio.gather(one.wait_closed(), two.wait_closed()), 20)

    try:
        asyncio.run(scenario())
    finally:
        assert workers_panel.run(alice, "user", "enable", "bob").returncode == 0


def test_history_is_recorded_once_with_several_workers(workers_panel, docker_client):
    """Only the supervisor records Docker events: a failing container has one
    `die` record, not one per process."""
    bob = workers_panel.users["bob"]
    assert workers_panel.run(bob, "run", "--name", "crash", TEST_IMAGE, "sh", "-c", "exit 3").returncode == 0
    deadline = time.monotonic() + 30
    while True:
        result = workers_panel.run(bob, "history", "crash", "--format", "json")
        dies = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["Kind"] == "die"]
        if dies or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(3)  # a second recorder would have written by now
    result = workers_panel.run(bob, "history", "crash", "--format", "json")
    dies = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["Kind"] == "die"]
    assert len(dies) == 1 and dies[0]["ExitCode"] == 3 and not dies[0]["OK"]


def test_a_killed_worker_gives_back_its_places_and_is_started_again(workers_panel):
    """Unauthenticated connections fill the per-source cap (10) on both
    workers; killing one worker gives its places back at once, the others
    still count, and the supervisor starts a new worker."""
    before = _worker_pids(workers_panel)
    assert len(before) == 2
    holders = [socket.create_connection(("127.0.0.1", workers_panel.port), timeout=10) for _ in range(10)]
    alice = workers_panel.users["alice"]

    async def login() -> str:
        async with _connect(workers_panel, alice) as conn:
            return (await conn.run("whoami")).stdout

    try:
        for holder in holders:
            assert holder.recv(64).startswith(b"SSH-2.0-")
        with pytest.raises(asyncssh.DisconnectError) as refused:
            asyncio.run(login())
        assert refused.value.reason.startswith("too many unauthenticated connections from your address")
        os.kill(before[0], signal.SIGKILL)
        retry_until_admitted(login, "alice", "still refused after a worker died", seconds=30, pause=0.1,
                             errors=(asyncssh.DisconnectError, OSError))
        alive = [holder for holder in holders if _open(holder)]
        assert 3 <= len(alive) <= 7  # the other worker's holders still count
    finally:
        for holder in holders:
            holder.close()
    deadline = time.monotonic() + 30
    while len(_worker_pids(workers_panel)) < 2 or workers_panel.log().count("ready (pid") < 3:
        assert time.monotonic() < deadline, "the worker was not started again"
        time.sleep(0.1)
    assert "exited with status -9; starting it again" in workers_panel.log()

    async def carol_refused_everywhere() -> None:  # the new worker learnt carol's lock (throttling test)
        for attempt in range(2):
            with pytest.raises(asyncssh.PermissionDenied):
                async with _connect(workers_panel, workers_panel.users["carol"], local=f"127.0.3.{attempt + 1}"):
                    pass

    asyncio.run(carol_refused_everywhere())


def test_connections_reset_at_once_give_their_places_back(workers_panel):
    """Connections that reset while waiting to be accepted (the supervisor
    stopped) or just after must not keep their place in the per-source cap
    (10) or `MaxStartups`: 30 of them, and the address still logs in."""
    resetter = "127.0.0.4"
    for stopped in (True, False):  # reset while waiting to be accepted, then as it comes
        if stopped:
            workers_panel.process.send_signal(signal.SIGSTOP)
        try:
            for _ in range(15):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((resetter, 0))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.connect(("127.0.0.1", workers_panel.port))
                sock.close()  # RST, not FIN
        finally:
            workers_panel.process.send_signal(signal.SIGCONT)
    alice = workers_panel.users["alice"]

    async def login() -> str:
        async with _connect(workers_panel, alice, local=resetter) as conn:
            return (await conn.run("whoami")).stdout

    retry_until_admitted(login, "alice", "the resets kept their places", pause=0.2)


def _open(sock: socket.socket) -> bool:
    """True while the server has not closed `sock`."""
    sock.setblocking(False)
    try:
        return sock.recv(65536, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_max_startups_is_a_setting_applied_by_the_supervisor(tmp_path, docker_client):
    """`SSHPANEL_MAX_STARTUPS=2` (refuse all past 2): two unauthenticated
    connections held, on different workers, and a third from another
    address is refused with OpenSSH's reason."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, extra_env={"SSHPANEL_WORKERS": "2", "SSHPANEL_MAX_STARTUPS": "2"})
    holders = []
    try:
        alice = server.add_user("alice")
        holders = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
        for holder in holders:
            assert holder.recv(64).startswith(b"SSH-2.0-")
        with pytest.raises(asyncssh.DisconnectError) as refused:
            asyncio.run(_connect(server, alice, local="127.0.0.5").__aenter__())
        assert refused.value.reason.startswith("too many unauthenticated connections (")
    finally:
        for holder in holders:
            holder.close()
        stop_panel(server)
        remove_namespace(docker_client, namespace)


def test_sigterm_ends_sessions_on_every_worker_and_stops(tmp_path, docker_client):
    """SIGTERM to the supervisor: every worker tells its sessions why they
    end, then all processes exit with status 0."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, extra_env={"SSHPANEL_WORKERS": "2"})
    try:
        alice = server.add_user("alice")
        pids = _worker_pids(server)

        async def scenario() -> list[str]:
            async with _connect(server, alice) as one, _connect(server, alice) as two:
                screens = [await conn.create_process(term_type="xterm", term_size=(100, 30)) for conn in (one, two)]
                for screen in screens:
                    await _read_until(screen.stdout, "alice")
                server.process.send_signal(signal.SIGTERM)
                return [await asyncio.wait_for(screen.stderr.read(), 20) for screen in screens]

        messages = asyncio.run(scenario())
        assert all("the panel is shutting down" in text for text in messages)
        assert server.process.wait(timeout=30) == 0
        assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    finally:
        stop_panel(server)
        remove_namespace(docker_client, namespace)


@pytest.mark.parametrize("count", ["0", "65", "two"])
def test_bad_worker_counts_are_refused(tmp_path, count):
    result = subprocess.run([sys.executable, "-m", "sshpanel", "serve", "--port", "0", "--workers", count,
                             "--data-dir", str(tmp_path / "d"), "--host-keys", str(tmp_path / "hk")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "workers" in result.stderr and "Traceback" not in result.stderr


def test_locks_exclude_other_processes_and_die_with_them(tmp_path):
    """The build slot and the names lock hold across processes; a holder
    that dies frees them."""
    path = lock_path(tmp_path, "build-alice")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from sshpanel.store.locks import try_lock; "
        f"held = try_lock(Path({str(path)!r})); print('held' if held else 'busy', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_lock(path) is None
        names = FileLock(lock_path(tmp_path, "names"))
        with names:
            assert try_lock(lock_path(tmp_path, "names")) is None
        again = try_lock(lock_path(tmp_path, "names"))
        assert again is not None
        again.release()
    finally:
        holder.kill()
        holder.wait()
    held = try_lock(path)
    assert held is not None
    held.release()
    held.release()  # idempotent


def test_a_connection_a_worker_cannot_serve_is_reported_released(tmp_path):
    """Every admitted connection comes back to the supervisor once, even when
    the worker cannot serve it: its descriptor did not come, or the worker is
    stopping; a connection without a decision is refused."""
    from sshpanel.config import load_settings
    from sshpanel.ssh.link import Link, link_pair
    from sshpanel.ssh.worker import NOT_HANDED, WorkerServer
    from sshpanel.store import open_store

    async def scenario() -> tuple[list[dict], str | None]:
        ours, theirs = link_pair()
        received: list[dict] = []
        supervisor = Link(ours, lambda message, fds: received.append(message), lambda: None)
        supervisor.start()
        settings = load_settings({"data_dir": tmp_path})
        worker = WorkerServer(settings, open_store(settings), theirs, 0)
        worker.link.start()
        supervisor.send({"op": "conn", "ticket": 7, "refusal": None})  # no descriptor
        left, right = socket.socketpair()
        worker.handoff.close()
        supervisor.send({"op": "conn", "ticket": 8, "refusal": None}, [left.fileno()])
        supervisor.send({"op": "conn", "ticket": None, "refusal": "no"}, [right.fileno()])
        left.close()
        right.close()
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.01)

        class Stranger:
            conn = object()
            ticket = None

        refusal = worker.admit(Stranger())
        worker.link.close()
        supervisor.close()
        return received, refusal

    received, refusal = asyncio.run(scenario())
    assert received == [{"op": "released", "ticket": 7}, {"op": "released", "ticket": 8}]
    assert refusal == NOT_HANDED
