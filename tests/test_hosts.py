"""Several panel hosts on one PostgreSQL database (issue 19 item 4): two
`sshpanel serve` processes with their own data folders, one database, one
engine and one namespace. Every limit counts across both, Docker events are
recorded once and taken over when the recorder dies, `user disable` reaches
both, and secrets need the same key on both."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import asyncssh
from cryptography.fernet import Fernet

from sshpanel.config import load_settings
from sshpanel.store import open_store
from tests.conftest import (TEST_IMAGE, Panel, remove_images, remove_namespace, ssh_available, start_panel,
                            stop_panel, wait_for)
from tests.databases import POSTGRES_URL, Databases
from tests.test_build import put_folder
from tests.test_build_limits import build_held
from tests.test_workers import _connect, _fail_logins, check_places_are_shared

pytestmark = [
    pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH"),
    pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL: run scripts/test.sh"),
]

RECORDING = "recording Docker events"


@dataclass
class Hosts:
    """Two panels on one database, and what they share."""

    one: Panel
    two: Panel
    url: str
    namespace: str
    tmp: Path


def _key_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(Fernet.generate_key())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, docker_client):
    """Panels `one` (started first: it records) and `two`, users alice
    (admin), bob, carol and dave, 2 sessions per user."""
    databases = Databases("postgres")
    url = databases.new_url()
    namespace = f"sptest{secrets.token_hex(3)}"
    tmp = tmp_path_factory.mktemp("hosts")
    env = {"SSHPANEL_SECRET_KEY_FILE": str(_key_file(tmp / "shared" / "secret.key")),
           "SSHPANEL_MAX_SESSIONS_PER_USER": "2"}
    one = start_panel(tmp / "one", namespace, env, database_url=url)
    two = None
    try:
        two = start_panel(tmp / "two", namespace, env, database_url=url)
        one.add_user("alice", admin=True)
        one.add_user("bob")
        one.add_user("carol")
        one.add_user("dave")
        two.users = one.users
        yield Hosts(one, two, url, namespace, tmp)
    finally:
        for panel in (one, two):
            if panel is not None:
                stop_panel(panel)
        remove_namespace(docker_client, namespace)
        remove_images(docker_client, namespace)
        databases.drop_all()


def _events(panel: Panel, user, name: str, kind: str) -> list[dict]:
    result = panel.run(user, "history", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [event for event in map(json.loads, result.stdout.splitlines()) if event["Kind"] == kind]


def test_one_panel_records_the_other_stands_by(hosts):
    assert RECORDING in hosts.one.log()
    assert RECORDING not in hosts.two.log()


def test_one_build_per_user_across_hosts(hosts, docker_client):
    """A build of alice's on one host: her build on the other is refused
    while it runs, and runs once it ended."""
    alice = hosts.one.users["alice"]
    put_folder(hosts.two, "alice", "quick", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN true\n"})
    with build_held(hosts.one, docker_client, alice):
        second = hosts.two.run(alice, "build", "quick", timeout=300)
        assert second.returncode == 1
        assert "a build is already running" in second.stderr
    assert hosts.two.run(alice, "build", "quick", timeout=300).returncode == 0


def test_concurrent_creates_on_both_hosts_make_one_network(hosts, docker_client):
    """A new user's first create on both hosts at once: one network of the
    user's name, not two (the names lock holds across hosts)."""
    for round_ in range(4):
        name = f"net{round_}{secrets.token_hex(2)}"
        user = hosts.one.add_user(name)
        results = {}

        def create(panel: Panel, container: str) -> None:
            results[container] = panel.run(user, "create", "--name", container, TEST_IMAGE, "sleep", "60")

        threads = [threading.Thread(target=create, args=(panel, f"c{index}"))
                   for index, panel in enumerate((hosts.one, hosts.two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(result.returncode == 0 for result in results.values()), results
        network = f"{hosts.namespace}.{name}"
        assert [n.name for n in docker_client.networks.list(names=[network]) if n.name == network] == [network]


def test_sessions_per_user_count_across_hosts(hosts):
    """2 sessions per user: one held on each host, a third is refused on
    either; one closing frees a place."""
    carol = hosts.one.users["carol"]

    async def scenario() -> None:
        async with _connect(hosts.one, carol) as one, _connect(hosts.two, carol) as two:
            await check_places_are_shared([one, two], "carol")

    asyncio.run(scenario())


def test_failed_logins_on_both_hosts_add_up_to_the_account_throttle(hosts):
    """100 failures lock an account (NIST SP 800-63B): 54 through one host
    and 48 through the other, each below it, lock dave on both, even with
    his right key; alice is not affected."""
    dave = hosts.one.users["dave"]
    addresses = (f"127.0.5.{index}" for index in itertools.count(1))

    async def fail_everywhere() -> None:
        for index in range(17):  # at most 6 per connection and address
            await _fail_logins(hosts.one if index < 9 else hosts.two, "dave", next(addresses))

    async def refused(panel: Panel) -> bool:
        try:
            async with _connect(panel, dave, local=next(addresses)) as conn:
                await conn.run("whoami")
                return False
        except asyncssh.PermissionDenied:
            return True

    asyncio.run(fail_everywhere())
    for panel in (hosts.one, hosts.two):  # each learns the other's share within seconds
        wait_for(lambda: asyncio.run(refused(panel)), 20, "dave's logins refused")

    async def alice_logs_in() -> str:
        async with _connect(hosts.two, hosts.one.users["alice"], local=next(addresses)) as conn:
            return (await conn.run("whoami")).stdout

    assert asyncio.run(alice_logs_in()).startswith("alice")


def test_events_behind_the_panels_back_are_recorded_once(hosts, docker_client):
    bob = hosts.one.users["bob"]
    assert hosts.two.run(bob, "run", "--name", "web", TEST_IMAGE, "sleep", "600").returncode == 0
    docker_client.containers.get(f"{hosts.namespace}.bob.web").stop(timeout=1)
    wait_for(lambda: _events(hosts.two, bob, "web", "stop"), 30, "the stop in the history")
    wait_for(lambda: _events(hosts.one, bob, "web", "die"), 30, "the exit in the history")
    time.sleep(4)  # a second recorder would have written by now (it waits 3 s per event)
    stops = _events(hosts.one, bob, "web", "stop")
    assert len(stops) == 1 and stops[0]["Detail"] == "outside the panel"
    assert len(_events(hosts.two, bob, "web", "die")) == 1


def test_a_secret_set_through_one_host_is_read_through_the_other(hosts, docker_client):
    alice = hosts.one.users["alice"]
    value = f"s3cret-{secrets.token_hex(8)}"
    assert hosts.one.run(alice, "secret", "set", "vault", "API_TOKEN", "-", input=value).returncode == 0
    result = hosts.two.run(alice, "run", "--name", "vault", TEST_IMAGE, "sleep", "600")
    assert result.returncode == 0, result.stderr
    env = docker_client.containers.get(f"{hosts.namespace}.alice.vault").attrs["Config"]["Env"]
    assert f"API_TOKEN={value}" in env


def test_a_panel_with_another_secret_key_refuses_to_start(hosts):
    other = _key_file(hosts.tmp / "other" / "secret.key")
    with pytest.raises(RuntimeError) as refused:
        start_panel(hosts.tmp / "three", hosts.namespace, {"SSHPANEL_SECRET_KEY_FILE": str(other)},
                    database_url=hosts.url)
    assert f"the secret key {other} does not decrypt the secrets this database holds" in str(refused.value)
    assert "Traceback" not in str(refused.value)


def test_user_disable_on_one_host_ends_the_sessions_on_the_other(hosts):
    alice, bob = hosts.one.users["alice"], hosts.one.users["bob"]

    async def scenario() -> None:
        async with _connect(hosts.two, bob) as conn:
            assert (await conn.run("whoami")).stdout.startswith("bob")
            result = await asyncio.to_thread(hosts.one.run, alice, "user", "disable", "bob")
            assert result.returncode == 0, result.stderr
            await asyncio.wait_for(conn.wait_closed(), 20)

    try:
        asyncio.run(scenario())
    finally:
        assert hosts.one.run(alice, "user", "enable", "bob").returncode == 0


def test_advisory_locks_exclude_other_processes_and_die_with_them(hosts):
    settings = load_settings({"database_url": hosts.url, "data_dir": hosts.tmp / "locks"})
    store = open_store(settings)
    code = ("import sys, time; from sshpanel.config import load_settings; from sshpanel.store import open_store; "
            f"store = open_store(load_settings({{'database_url': {hosts.url!r}, 'data_dir': {str(hosts.tmp)!r}}})); "
            "held = store.locks.try_lock('build-dora'); print('held' if held else 'busy', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert store.locks.try_lock("build-dora") is None
        mine = store.locks.try_lock("names")
        assert mine is not None and mine.still_held()
        assert store.locks.try_lock("names") is None  # not twice in one process either
        mine.release()
        with store.locks.mutex("names"):
            assert store.locks.try_lock("names") is None
        again = store.locks.try_lock("names")
        assert again is not None
        store.locks.close()  # the connection goes: so do its locks
        assert not again.still_held()
    finally:
        holder.kill()
        holder.wait()
    held = wait_for(lambda: store.locks.try_lock("build-dora"), 10, "the dead holder's lock")
    held.release()
    held.release()  # idempotent
    store.locks.close()


def test_the_other_host_takes_the_recording_over_when_the_recorder_dies(hosts, docker_client):
    """kill -9 of the recording panel: the other takes over within seconds and
    records what happens behind the panels' backs afterwards, once."""
    bob = hosts.one.users["bob"]
    if not _events(hosts.two, bob, "web", "create"):
        assert hosts.two.run(bob, "run", "--name", "web", TEST_IMAGE, "sleep", "600").returncode == 0
    starts = len(_events(hosts.two, bob, "web", "start"))
    os.kill(hosts.one.process.pid, signal.SIGKILL)
    hosts.one.process.wait()
    # The lock is free once PostgreSQL sees the connection end; the other
    # host tries every 2 s (`events.ELECTION_INTERVAL`).
    wait_for(lambda: RECORDING in hosts.two.log(), 15, "the other host to take the recording over")
    container = docker_client.containers.get(f"{hosts.namespace}.bob.web")
    container.reload()
    if container.status == "running":
        container.stop(timeout=1)
    container.start()
    wait_for(lambda: len(_events(hosts.two, bob, "web", "start")) > starts, 30, "the start in the history")
    time.sleep(4)
    assert len(_events(hosts.two, bob, "web", "start")) == starts + 1
