"""Quotas hold under concurrency (issue 19): simultaneous creates through
the real server never end over a count or a memory quota, on SQLite and on
PostgreSQL, in one process and with `--workers 2`; and the lock itself, at
the store, under threads."""

from __future__ import annotations

import secrets
import subprocess
import threading

import pytest

from sshpanel.access.quota import Usage, check_quota
from sshpanel.config import load_settings
from sshpanel.errors import QuotaExceeded
from sshpanel.store import open_store
from tests.conftest import TEST_IMAGE, remove_namespace, start_panel, stop_panel

pytestmark = pytest.mark.databases

ROUNDS = 5
"""Rounds per quota, database and process model. The issue asks for 20:
one round of 10 creates takes 4-6 s on the 2-core machines, so 20 rounds of
both quotas on 2 databases x 2 process models would add about half an hour
to the suite; the store test below runs 20 rounds of the same race on the
lock alone in a few seconds."""
RACERS = 10
MIB = 2**20


@pytest.fixture(scope="module", params=["1", "2"], ids=["one-process", "workers-2"])
def race_panel(request, tmp_path_factory, docker_client, database):
    """A panel (one process or `--workers 2`) with the admin ada; no
    admission limit gets in the way of 10 simultaneous logins."""
    namespace = f"sptest{secrets.token_hex(3)}"
    env = {"SSHPANEL_WORKERS": request.param, "SSHPANEL_MAX_STARTUPS": "40:30:100"}
    server = start_panel(tmp_path_factory.mktemp("race"), namespace, env, database_url=database.new_url())
    server.add_user("ada", admin=True)
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def _race(panel, user, memory: str) -> list[subprocess.CompletedProcess]:
    """`RACERS` simultaneous `run -m MEMORY`; returns every result."""
    results: list[subprocess.CompletedProcess] = []
    lock = threading.Lock()
    start = threading.Barrier(RACERS)

    def one(index: int) -> None:
        start.wait()
        for _ in range(20):  # exit 255: the connection itself was refused
            result = panel.run(user, "run", "--name", f"r{index}", "-m", memory, "--cpus", "0.01",
                               TEST_IMAGE, "sleep", "600")
            if result.returncode != 255:
                break
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


@pytest.mark.parametrize(
    ("flags", "memory", "allowed", "refusal"),
    [
        (("--containers", "3"), "16m", 3, "container quota exceeded: 3 of 3 in use"),
        (("--containers", "20", "--memory", "64m"), "32m", 2, "memory quota exceeded by 32MiB"),
    ],
    ids=["count-3", "memory-64m"],
)
def test_concurrent_runs_end_exactly_at_the_quota(race_panel, docker_client, flags, memory, allowed, refusal):
    """10 simultaneous `run` against a quota of 3 containers, or of 64 MiB
    with 32 MiB each: every round ends with exactly the quota's worth."""
    name = f"r{secrets.token_hex(3)}"
    racer = race_panel.add_user(name)
    ada = race_panel.users["ada"]
    assert race_panel.run(ada, "user", "set-quota", name, *flags, "--cpus", "2").returncode == 0
    label = f"io.{race_panel.namespace}.owner={name}"
    for round_ in range(ROUNDS):
        results = _race(race_panel, racer, memory)
        ok = [r for r in results if r.returncode == 0]
        report = f"round {round_}: " + "\n".join(f"{r.returncode} {r.stdout!r} {r.stderr!r}" for r in results)
        assert len(results) == RACERS and len(ok) == allowed, report
        assert all(r.returncode == 1 and refusal in r.stderr for r in results if r.returncode != 0), report
        assert len(docker_client.containers.list(all=True, filters={"label": label})) == allowed
        assert len(race_panel.run(racer, "ps", "-a", "--format", "json").stdout.splitlines()) == allowed
        removed = race_panel.run(racer, "rm", "-f", *(r.stdout.strip() for r in ok))
        assert removed.returncode == 0, removed.stderr


def test_reservations_serialize_per_user_in_the_store(database, tmp_path):
    """The lock alone, without SSH or Docker: 10 threads at once check the
    usage and reserve in `user_transaction`, 20 rounds; a second user's
    reservations go on meanwhile and never count for the first."""
    settings = load_settings({"data_dir": tmp_path, "database_url": database.new_url()}, environ={})
    store = open_store(settings)
    first = store.create_user("first", "user", 3, 64 * MIB, 100.0)
    other = store.create_user("other", "user", 1000, 2**40, 1000.0)
    for round_ in range(20):
        start = threading.Barrier(RACERS + 1)
        made: list[int] = []

        def reserve(user, index: int) -> None:
            start.wait()
            try:
                with store.user_transaction(user.id) as tx:
                    check_quota(Usage(3, 64 * MIB, 100.0), Usage(*tx.usage()), Usage(1, 16 * MIB, 0.1))
                    made.append(tx.reserve_container(f"c{round_}-{index}", "img", "{}", 16 * MIB, 0.1).id)
            except QuotaExceeded:
                pass
            finally:
                store.close()

        threads = [threading.Thread(target=reserve, args=(first, i)) for i in range(RACERS)]
        threads.append(threading.Thread(target=reserve, args=(other, RACERS)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert store.usage(first.id)[0] == 3, f"round {round_}"
        for container_id in made:
            store.mark_removed(container_id)
    store.close()
