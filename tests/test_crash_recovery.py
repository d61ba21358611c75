"""Crash recovery (issue 7): the panel killed with SIGKILL in the middle of
creates, on SQLite and PostgreSQL. After a restart the database passes
its integrity check, no
half-written record is left (a reservation without a Docker ID would hold a
name and quota forever), and every container carrying the panel's owner
label is either recorded or reported in the log."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time

import pytest

from sshpanel.config import load_settings
from sshpanel.store import deployments, open_store
from tests.conftest import TEST_IMAGE, Panel, remove_namespace, start_panel, stop_panel

pytestmark = pytest.mark.databases

BURST = 12
"""Concurrent `run` commands when the server is killed."""


def _restart(old: Panel, tmp) -> Panel:
    """Starts a new server on the same data folder, database and host key."""
    panel = start_panel(tmp, old.namespace, database_url=old.database_url)
    panel.users.update(old.users)
    return panel


def _settings(panel: Panel):
    return load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace,
                          "database_url": panel.database_url}, environ={})


def _rows(panel: Panel, sql: str) -> list[tuple]:
    store = open_store(_settings(panel))
    try:
        return store.database.execute_sql(sql).fetchall()
    finally:
        store.close()


def _half_written(panel: Panel) -> list[tuple]:
    return _rows(panel, "SELECT id, name FROM container WHERE docker_id IS NULL AND removed IS NULL")


def _recorded_ids(panel: Panel) -> set[str]:
    return {row[0] for row in _rows(panel, "SELECT docker_id FROM container WHERE docker_id IS NOT NULL")}


def _labelled(docker_client, panel: Panel) -> set[str]:
    """IDs of the containers carrying the panel's owner label."""
    listed = docker_client.api.containers(all=True, filters={"label": f"io.{panel.namespace}.owner"})
    return {item["Id"] for item in listed}


def _reported(panel: Panel, container_id: str) -> bool:
    return re.search(rf"\({container_id[:12]}\) carries owner label .* no record claims it", panel.log()) is not None


def _db_check(panel: Panel) -> str:
    result = subprocess.run([sys.executable, "-m", "sshpanel", "db", "check"], env=panel.env(), capture_output=True,
                            text=True, timeout=60)
    return result.stdout.strip()


def _wait_for(condition, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _setup(tmp, database) -> Panel:
    panel = start_panel(tmp, f"sptest{secrets.token_hex(3)}", database_url=database.new_url())
    ada = panel.add_user("ada", admin=True)
    panel.add_user("alice")
    quota = panel.run(ada, "user", "set-quota", "alice", "--containers", "100", "--memory", "8g", "--cpus", "50")
    assert quota.returncode == 0, quota.stderr
    return panel


def test_sigkill_during_a_burst_of_creates(tmp_path, docker_client, database):
    panel = _setup(tmp_path, database)
    try:
        alice = panel.users["alice"]
        runs = [
            subprocess.Popen(
                [*panel.ssh_args(alice), "--", f"run --name burst{i} -m 8m --cpus 0.05 {TEST_IMAGE} sleep 600"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            )
            for i in range(BURST)
        ]
        _wait_for(lambda: len(_labelled(docker_client, panel)) >= 2, what="the first creates")
        panel.process.kill()
        panel.process.wait(timeout=10)
        for run in runs:
            run.wait(timeout=60)

        panel = _restart(panel, tmp_path)
        assert _db_check(panel) == "ok"
        assert _half_written(panel) == []
        recorded = _recorded_ids(panel)
        labelled = _labelled(docker_client, panel)
        for container_id in labelled - recorded:
            assert _reported(panel, container_id), container_id
        listing = panel.run(alice, "ps", "-a", "-q")
        assert listing.returncode == 0, listing.stderr
        assert {line for line in listing.stdout.split()} == {cid[:12] for cid in labelled & recorded}
        again = panel.run(alice, "run", "--name", "after", "-m", "8m", "--cpus", "0.05", TEST_IMAGE, "sleep", "600")
        assert again.returncode == 0, again.stderr
    finally:
        if panel.process.poll() is None:
            stop_panel(panel)
        remove_namespace(docker_client, panel.namespace)


def test_interrupted_creates_are_completed_or_dropped_at_start(tmp_path, docker_client, database):
    """Each window of a killed create, made exactly: a reservation whose
    container was never made, one whose container was made, one whose
    same-named container is not what the panel made, and a labelled
    container with no record at all."""
    panel = _setup(tmp_path, database)
    try:
        alice = panel.users["alice"]
        assert panel.run(alice, "create", "--name", "keep", TEST_IMAGE).returncode == 0
        panel.process.kill()
        panel.process.wait(timeout=10)

        settings = _settings(panel)
        store = open_store(settings)
        user_id = store.user_by_name("alice").id
        with store.user_transaction(user_id) as tx:
            for name in ("ghost", "half", "fake"):
                tx.reserve_container(name, TEST_IMAGE, "{}", 8 * 2**20, 0.05)
        store.close()
        label = settings.label_prefix

        def labelled(name: str, owner: str):
            return docker_client.containers.create(
                TEST_IMAGE, ["sleep", "600"], name=f"{panel.namespace}.alice.{name}",
                labels={f"{label}owner": owner, f"{label}name": name},
            )

        half = labelled("half", "alice")
        fake = labelled("fake", "bob")
        stray = labelled("stray", "alice")

        panel = _restart(panel, tmp_path)
        log = panel.log()
        assert "completed the interrupted create of alice/half" in log
        assert "dropped the reservation of alice/ghost" in log
        assert "dropped the reservation of alice/fake" in log
        assert _reported(panel, fake.id) and _reported(panel, stray.id)
        assert not _reported(panel, half.id)
        assert _half_written(panel) == []
        assert _db_check(panel) == "ok"

        listing = panel.run(alice, "ps", "-a", "--format", "json")
        assert sorted(re.findall(r'"Names": "([^"]+)"', listing.stdout)) == ["half", "keep"]
        history = panel.run(alice, "history", "half")
        assert history.returncode == 0 and "create" in history.stdout
        assert panel.run(alice, "create", "--name", "ghost", TEST_IMAGE).returncode == 0
        quota = panel.run(alice, "quota", "--format", "json")
        assert '"Containers": 3' in quota.stdout, quota.stdout
        assert panel.run(alice, "rm", "half").returncode == 0
        assert _labelled(docker_client, panel) >= {fake.id, stray.id}
    finally:
        if panel.process.poll() is None:
            stop_panel(panel)
        remove_namespace(docker_client, panel.namespace)


def _set_aside(docker_client, store, namespace: str, row) -> None:
    """Does what a deploy does to the container it replaces: stopped, renamed
    `.replaced-<id>`, its record set aside."""
    docker_client.api.stop(row.docker_id, timeout=1)
    docker_client.api.rename(row.docker_id, f"{namespace}.alice.{row.name}.replaced-{row.docker_id[:12]}")
    deployments.set_aside(store, row.id)


def _replacement(docker_client, store, settings, user_id: int, name: str):
    """The new container of a deploy, created and recorded (not started);
    returns it and its record."""
    label = settings.label_prefix
    new = docker_client.containers.create(
        TEST_IMAGE, ["sleep", "600"], name=f"{settings.namespace}.alice.{name}",
        labels={f"{label}owner": "alice", f"{label}name": name},
    )
    with store.user_transaction(user_id) as tx:
        reserved = tx.reserve_container(name, TEST_IMAGE, "{}", 8 * 2**20, 0.05)
    store.attach_docker_id(reserved.id, new.id)
    return new, reserved


def test_interrupted_deploy_replacement_is_put_back_at_start(tmp_path, docker_client, database):
    """The two windows of a deploy killed while replacing a container: the
    old one set aside with no new one yet (`one`), and set aside with the
    new one created but not settled (`two`). After a restart each old
    container has its name and record back (stopped), the new one is gone,
    no `.replaced-` container is left, and the history says so."""
    panel = _setup(tmp_path, database)
    try:
        alice = panel.users["alice"]
        for name in ("one", "two"):
            assert panel.run(alice, "run", "--name", name, "-m", "8m", TEST_IMAGE, "sleep", "600").returncode == 0
        panel.process.kill()
        panel.process.wait(timeout=10)

        settings = _settings(panel)
        store = open_store(settings)
        user_id = store.user_by_name("alice").id
        old = {row.name: row for row in store.containers_of(user_id)}
        for row in old.values():
            _set_aside(docker_client, store, panel.namespace, row)
        _replacement(docker_client, store, settings, user_id, "two")
        store.close()

        panel = _restart(panel, tmp_path)
        log = panel.log()
        assert "put back alice/one" in log and "put back alice/two" in log
        listing = panel.run(alice, "ps", "-a", "--format", "json")
        assert sorted(re.findall(r'"Names": "([^"]+)"', listing.stdout)) == ["one", "two"]
        assert {line for line in panel.run(alice, "ps", "-a", "-q").stdout.split()} == {
            row.docker_id[:12] for row in old.values()}
        names = {c.name for c in docker_client.containers.list(
            all=True, filters={"label": f"io.{panel.namespace}.owner=alice"})}
        assert names == {f"{panel.namespace}.alice.one", f"{panel.namespace}.alice.two"}
        history = panel.run(alice, "history", "--format", "json").stdout
        assert history.count("the deploy replacing it was interrupted") == 2
        assert "its deploy was interrupted" in history
        assert _db_check(panel) == "ok"
        assert panel.run(alice, "start", "one").returncode == 0
    finally:
        if panel.process.poll() is None:
            stop_panel(panel)
        remove_namespace(docker_client, panel.namespace)


def test_deploy_interrupted_after_it_succeeded_keeps_the_new_container(tmp_path, docker_client, database):
    """The third window: the new container settled and its deployment was
    recorded, then the panel died before the old one was removed. After a
    restart the new container stays, the old one is removed."""
    panel = _setup(tmp_path, database)
    try:
        alice = panel.users["alice"]
        assert panel.run(alice, "run", "--name", "three", "-m", "8m", TEST_IMAGE, "sleep", "600").returncode == 0
        panel.process.kill()
        panel.process.wait(timeout=10)

        settings = _settings(panel)
        store = open_store(settings)
        user_id = store.user_by_name("alice").id
        (old,) = store.containers_of(user_id)
        _set_aside(docker_client, store, panel.namespace, old)
        new, reserved = _replacement(docker_client, store, settings, user_id, "three")
        store.add_event(user_id, reserved.id, "deploy", detail=f"{TEST_IMAGE} settled")
        store.close()

        panel = _restart(panel, tmp_path)
        assert "replaced by a deployment" in panel.log()
        assert panel.run(alice, "ps", "-a", "-q").stdout.split() == [new.id[:12]]
        names = {c.name for c in docker_client.containers.list(
            all=True, filters={"label": f"io.{panel.namespace}.owner=alice"})}
        assert names == {f"{panel.namespace}.alice.three"}
        assert _db_check(panel) == "ok"
    finally:
        if panel.process.poll() is None:
            stop_panel(panel)
        remove_namespace(docker_client, panel.namespace)
