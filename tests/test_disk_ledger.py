"""The disk quota is one ledger per user (issue 26 items 2 and 3): SFTP
writes of every session, in one process or several (`--workers 2`), on
SQLite and on PostgreSQL, reserve against it before writing and can never
take the home past the quota; removals give back; the background
measurement corrects it; and an SFTP open never walks the home."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import threading
import time

import asyncssh
import pytest

from sshpanel.backend.user.disk import DiskWatch
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.files import bounded_disk_usage, home_dir
from sshpanel.backend.user.ledger import HomeLedger, expiry
from sshpanel.config import load_settings
from sshpanel.errors import QuotaExceeded
from sshpanel.store import open_store
from tests.conftest import remove_namespace, start_panel, stop_panel

pytestmark = pytest.mark.databases

MIB = 2**20
QUOTA = 8 * MIB
SESSIONS = 20
"""Simultaneous SFTP sessions (the per-user session limit)."""
CONNECTIONS = 4
FILE_SIZE = 2 * MIB
"""What each session tries to write: 20 of them want 5 x the quota."""
CHUNK = 32 * 1024
"""Bytes per SFTP write request (OpenSSH's sftp uses 32 KiB)."""


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "workers-2"])
def ledger_panel(request, tmp_path_factory, docker_client, database):
    """A panel (one process or `--workers 2`) with an 8 MiB disk quota and
    the user erin; admission limits let 4 connections in at once; the home
    is measured once, at start (the test checks the ledger's own figures)."""
    namespace = f"sptest{secrets.token_hex(3)}"
    env = {"SSHPANEL_WORKERS": request.param, "SSHPANEL_MAX_STARTUPS": "40:30:100",
           "SSHPANEL_QUOTA_DISK": str(QUOTA), "SSHPANEL_DISK_INTERVAL": "3600"}
    server = start_panel(tmp_path_factory.mktemp("ledger"), namespace, env, database_url=database.new_url())
    server.add_user("erin")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


async def _fill(panel, user, prefix: str) -> list[str]:
    """`SESSIONS` SFTP sessions over `CONNECTIONS` connections, all started
    before any writes; each writes `FILE_SIZE` bytes in `CHUNK` requests
    until done or refused. Returns the errors the refused ones saw."""
    connections = [await asyncssh.connect("127.0.0.1", panel.port, username=user.name,
                                          client_keys=[str(user.key)], known_hosts=None, agent_path=None)
                   for _ in range(CONNECTIONS)]
    clients = [await conn.start_sftp_client() for conn in connections for _ in range(SESSIONS // CONNECTIONS)]
    refusals: list[str] = []
    start = asyncio.Event()

    async def one(client, index: int) -> None:
        await start.wait()
        async with client.open(f"{prefix}{index}", "wb") as file:
            try:
                for offset in range(0, FILE_SIZE, CHUNK):
                    await file.write(b"x" * CHUNK, offset)
            except asyncssh.SFTPFailure as exc:
                refusals.append(exc.reason)

    tasks = [asyncio.create_task(one(client, index)) for index, client in enumerate(clients)]
    start.set()
    await asyncio.gather(*tasks)
    for client in clients:
        client.exit()
    for conn in connections:
        conn.close()
        await conn.wait_closed()
    return refusals


def _files(panel, name: str) -> int:
    root = panel.data_dir / "homes" / name
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _ledger(panel, user, expected: int) -> int:
    """The home's figure `quota` shows, once it is `expected` (sessions
    settle as they end, after the client has gone) or after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        result = panel.run(user, "quota", "--format", "json")
        assert result.returncode == 0, result.stderr
        figure = int(json.loads(result.stdout)["DiskFiles"])
        if figure == expected or time.monotonic() > deadline:
            return figure
        time.sleep(0.2)


def test_twenty_sessions_never_take_the_home_past_the_quota(ledger_panel):
    """20 SFTP sessions of one user, in one process or two, write 5 x the
    quota at once: the home never holds more than the quota, the refused
    writes say why, and the ledger counts what is there; removing the files
    gives their bytes back, so the next round fits again."""
    panel = ledger_panel
    erin = panel.users["erin"]
    for round_ in ("a", "b"):
        refusals = asyncio.run(_fill(panel, erin, f"{round_}-"))
        held = _files(panel, "erin")
        assert held <= QUOTA, f"round {round_}: {held} bytes against a quota of {QUOTA}"
        assert held >= QUOTA // 2, f"round {round_}: only {held} bytes written"
        assert refusals and all("disk quota exceeded" in reason for reason in refusals), refusals
        assert _ledger(panel, erin, held) == held
        removed = asyncio.run(_remove_all(panel, erin))
        assert removed == SESSIONS and _files(panel, "erin") == 0
        assert _ledger(panel, erin, 0) == 0


def test_truncating_and_replacing_give_back(ledger_panel):
    """A file opened with truncation, truncated by `setstat`, or replaced
    by a rename gives its bytes back; growing by `setstat` reserves."""
    panel = ledger_panel
    erin = panel.users["erin"]

    async def scenario() -> list[int]:
        figures = []
        async with asyncssh.connect("127.0.0.1", panel.port, username="erin", client_keys=[str(erin.key)],
                                    known_hosts=None, agent_path=None) as conn:
            async with conn.start_sftp_client() as client:
                for name, size in (("t-a", 3000), ("t-b", 1000)):
                    async with client.open(name, "wb") as file:
                        await file.write(b"z" * size)
                figures.append(await asyncio.to_thread(_ledger, panel, erin, 4000))
                await client.posix_rename("t-b", "t-a")  # 3000 bytes replaced
                figures.append(await asyncio.to_thread(_ledger, panel, erin, 1000))
                await client.truncate("t-a", 5000)  # grows by 4000
                figures.append(await asyncio.to_thread(_ledger, panel, erin, 5000))
                async with client.open("t-a", "wb") as file:  # truncated at open
                    await file.write(b"y" * 10)
                figures.append(await asyncio.to_thread(_ledger, panel, erin, 10))
                await client.remove("t-a")
        figures.append(await asyncio.to_thread(_ledger, panel, erin, 0))
        return figures

    assert asyncio.run(scenario()) == [4000, 1000, 5000, 10, 0]


async def _remove_all(panel, user) -> int:
    async with asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[str(user.key)],
                                known_hosts=None, agent_path=None) as conn:
        async with conn.start_sftp_client() as client:
            names = await client.listdir(".")
            for name in names:
                if name not in (".", ".."):
                    await client.remove(name)
            return len(names) - 2


def test_reservations_in_threads_never_pass_the_quota(database, tmp_path):
    """The ledger alone, without SSH: 10 threads, each its own session and
    database connection, reserve 100 KiB at a time until refused; what
    they reserved together never passes the quota, and what they settle is
    the home's figure."""
    settings = load_settings({"data_dir": tmp_path, "database_url": database.new_url(),
                              "quota_disk": 4 * MIB}, environ={})
    store = open_store(settings)
    user = store.create_user("frank", "user", 3, 64 * MIB, 1.0)
    start = threading.Barrier(10)
    taken: list[int] = []
    lock = threading.Lock()

    def session() -> None:
        ledger = HomeLedger(store, settings, user.id)
        start.wait()
        total = 0
        try:
            while True:
                if not ledger.take(100 * 1024):
                    ledger.reserve(100 * 1024)
                total += 100 * 1024
        except QuotaExceeded:
            pass
        finally:
            ledger.settle()
            store.close()
        with lock:
            taken.append(total)

    threads = [threading.Thread(target=session) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(taken) == 10
    assert sum(taken) <= 4 * MIB
    assert sum(taken) >= 4 * MIB - 10 * 100 * 1024
    assert store.user_by_id(user.id).disk_home == sum(taken)
    assert store.disk_held(user.id) == 0
    store.close()


def test_measurement_corrects_the_ledger_and_expires_dead_holds(database, tmp_path):
    """`DiskWatch` replaces the ledger's figure by a (bounded) walk of the
    home, adds what was settled since the walk began, leaves the figure
    alone while a session holds bytes, deletes holds whose process died,
    and a walk past its bound only ever raises the figure."""
    settings = load_settings({"data_dir": tmp_path, "database_url": database.new_url(),
                              "quota_disk": 4 * MIB}, environ={})
    store = open_store(settings)
    user = store.create_user("gina", "user", 3, 64 * MIB, 1.0)
    home = home_dir(settings, "gina")
    (home / "outside-sftp").write_bytes(b"z" * 1000)
    dead = HomeLedger(store, settings, user.id)
    dead.reserve(5000)
    watch = DiskWatch(store, Engine(settings), settings)
    before = store.user_by_id(user.id)
    live = HomeLedger(store, settings, user.id)
    live.reserve(300)
    live.settle()  # settled after the walk's starting point: added on top
    assert store.disk_held(user.id) == dead.held >= 5000
    watch.measure_home(before)  # a session holds bytes: no walk, the figure stays
    assert store.user_by_id(user.id).disk_home == 300
    assert store.expire_disk_holds(expiry(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))) == 1
    assert store.disk_held(user.id) == 0
    assert watch.measure_home(before) == 1000 + 300
    for index in range(30):
        (home / f"f{index}").write_bytes(b"y")
    assert bounded_disk_usage(home, 10)[1] is False
    with store.user_transaction(user.id) as tx:
        assert tx.measured_home(5, int(tx.user.disk_home_grown), complete=False) == 1300
        assert tx.measured_home(1030, int(tx.user.disk_home_grown), complete=True) == 1030
    assert bounded_disk_usage(home, 1000) == (1030, True)
    store.close()


FOLDERS = 30_000
OPENERS = 8


def test_an_sftp_open_never_walks_the_home_regression(tmp_path, docker_client, monkeypatch):
    """With 30,000 folders in one home, 8 sessions opening files (to read,
    to write, to truncate) and writing make no directory walk at all
    outside the disk watch's own thread: the cost of a home is no longer
    paid by everyone's thread pool at every open (issue 26 item 3; the
    timing of another user's `ps` meanwhile is in benchmarks/)."""
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings({"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data",
                              "host_keys_dir": tmp_path / "hk", "namespace": namespace})
    key = asyncssh.generate_private_key("ssh-ed25519")
    root = home_dir(settings, "hana")
    for index in range(FOLDERS):
        os.mkdir(root / f"d{index:05}")
    walks: list[str] = []
    for name in ("fwalk", "walk", "scandir", "listdir"):
        original = getattr(os, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            target = args[0] if args else kwargs.get("top", kwargs.get("path", "."))
            beneath = isinstance(target, int) or str(os.fsdecode(target)).startswith(str(root))
            if beneath and threading.current_thread().name != "sshpanel-disk":
                walks.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(os, name, counted)

    from sshpanel.backend.admin.accounts import Accounts
    from sshpanel.ssh.server import PanelServer

    async def scenario() -> None:
        server = PanelServer(settings, open_store(settings))
        await server.start()
        try:
            await asyncio.to_thread(Accounts(server.store, settings).add_user, "hana",
                                    [key.export_public_key().decode()])
            walks.clear()
            async with asyncssh.connect("127.0.0.1", server.port, username="hana", client_keys=[key],
                                        known_hosts=None, agent_path=None) as conn:
                clients = [await conn.start_sftp_client() for _ in range(OPENERS)]

                async def opens(client, index: int) -> None:
                    for round_ in range(5):
                        async with client.open(f"f{index}", "wb") as file:
                            await file.write(b"w" * 1000)
                        async with client.open(f"f{index}", "rb") as file:
                            assert await file.read() == b"w" * 1000
                        async with client.open(f"d{round_:05}/g{index}", "ab") as file:
                            await file.write(b"a")

                await asyncio.gather(*(opens(client, index) for index, client in enumerate(clients)))
                for client in clients:
                    client.exit()
        finally:
            await server.stop()

    try:
        asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert walks == []
