"""History, on SQLite and PostgreSQL: the events listener records lifecycle
events once, attributed to the owner; failures land on the right day;
reconciliation; and, when enabled, events recorded through a `dockerd`
restart."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil

import pytest

from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.recorder import EventRecorder
from sshpanel.config import Settings
from sshpanel.store import open_store
from sshpanel.store.models import Container
from tests.conftest import TEST_IMAGE
from tests.engine_restart import RESTART_DOCKERD, restart_dockerd, wait_for

pytestmark = pytest.mark.databases

EVENT_KEYS = {"Time", "Container", "Kind", "OK", "ExitCode", "Detail"}


def events(panel, user, *args: str) -> list[dict]:
    result = panel.run(user, "history", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def kinds(panel, user, name: str) -> list[tuple[str, bool, str]]:
    """(kind, ok, detail) of a container's events, oldest first."""
    return [(e["Kind"], e["OK"], e["Detail"]) for e in reversed(events(panel, user, name))]


def test_exit_code_3_is_a_failure_on_todays_date(panel):
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "crash", TEST_IMAGE, "sh", "-c", "sleep 0.5; exit 3")
    assert result.returncode == 0, result.stderr
    die = wait_for(
        lambda: next((e for e in events(panel, alice, "crash") if e["Kind"] == "die"), None), what="the die event"
    )
    assert set(die) == EVENT_KEYS
    assert die["OK"] is False and die["ExitCode"] == 3 and die["Container"] == "crash"
    today = dt.datetime.now(dt.timezone.utc).date()
    assert die["Time"].startswith(today.isoformat())
    daily = events(panel, alice, "--daily", "--days", "7")
    assert [d["Date"] for d in daily] == [(today - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    assert all(set(d) == {"Date", "Deployments", "Failures"} for d in daily)
    assert daily[-1]["Failures"] >= 1 and daily[-1]["Deployments"] >= 1
    mine = events(panel, alice, "crash", "--daily", "--days", "1")
    assert mine == [{"Date": today.isoformat(), "Deployments": 1, "Failures": 1}]
    assert panel.run(alice, "rm", "crash").returncode == 0
    # Removed containers keep their history, under their name.
    assert [e["Kind"] for e in events(panel, alice, "crash")][0] == "remove"
    assert panel.run(panel.users["bob"], "history", "crash").returncode == 1
    assert all(e["Container"] != "crash" for e in events(panel, panel.users["bob"]))


def barrier(panel, docker_client) -> None:
    """Returns once the recorder handled every event so far: it handles them
    in order, so an event caused now (a stop behind the panel's back) being
    recorded means every earlier one was, duplicates included."""
    bob = panel.users["bob"]
    name = f"marker{secrets.token_hex(2)}"
    assert panel.run(bob, "run", "--name", name, TEST_IMAGE, "sleep", "600").returncode == 0
    docker_client.containers.get(f"{panel.namespace}.bob.{name}").stop(timeout=0)
    wait_for(lambda: ("stop", True, "outside the panel") in kinds(panel, bob, name), what="the barrier event")
    panel.run(bob, "rm", name)


def test_panel_actions_are_recorded_once_and_a_stop_is_no_failure(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "steady", TEST_IMAGE, "sleep", "600").returncode == 0
    assert panel.run(alice, "stop", "steady").returncode == 0
    assert panel.run(alice, "start", "steady").returncode == 0
    assert panel.run(alice, "restart", "steady").returncode == 0
    assert panel.run(alice, "rm", "-f", "steady").returncode == 0
    barrier(panel, docker_client)
    history = kinds(panel, alice, "steady")
    names = [k for k, _, _ in history]
    assert names.count("create") == 1 and names.count("start") == 2
    assert names.count("stop") == 1 and names.count("restart") == 1 and names.count("remove") == 1
    assert not [h for h in history if h[2] == "outside the panel"]
    dies = [h for h in history if h[0] == "die"]
    assert len(dies) == 3 and all(ok for _, ok, _ in dies) and all("signal" in d for _, _, d in dies)
    assert names.count("kill") >= 3


def test_actions_outside_the_panel_are_recorded_and_reconciled(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "elsewhere", TEST_IMAGE, "sleep", "600").returncode == 0
    container = docker_client.containers.get(f"{panel.namespace}.alice.elsewhere")
    container.stop(timeout=0)
    wait_for(lambda: ("stop", True, "outside the panel") in kinds(panel, alice, "elsewhere"), what="the stop")
    container.remove(force=True)
    wait_for(
        lambda: ("remove", True, "removed outside the panel") in kinds(panel, alice, "elsewhere"), what="the remove"
    )
    assert "elsewhere" not in panel.run(alice, "ps", "-a").stdout
    assert [k for k, _, _ in kinds(panel, alice, "elsewhere")].count("remove") == 1


def test_oom_kill_is_one_failure(panel, docker_client):
    alice = panel.users["alice"]
    hog = "dd if=/dev/zero of=/dev/shm/hog bs=1M count=60"
    assert panel.run(alice, "run", "--name", "hog", "-m", "16m", TEST_IMAGE, "sh", "-c", hog).returncode == 0
    try:
        ended = wait_for(
            lambda: next((e for e in events(panel, alice, "hog") if e["Kind"] in ("oom", "die")), None),
            what="the end of the container",
        )
        state = docker_client.api.inspect_container(f"{panel.namespace}.alice.hog")["State"]
        assert state["ExitCode"] == 137
        # Recorded as `oom` whenever Docker knows it was one (event or state).
        assert ended["Kind"] == ("oom" if state["OOMKilled"] else "die")
        assert ended["OK"] is False and ended["ExitCode"] == 137
        assert [e["Kind"] for e in events(panel, alice, "hog")].count(ended["Kind"]) == 1
        assert {"oom", "die"} - {e["Kind"] for e in events(panel, alice, "hog")}
        assert events(panel, alice, "hog", "--daily", "--days", "1")[0]["Failures"] == 1
    finally:
        panel.run(alice, "rm", "-f", "hog")


def test_history_usage_errors(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "history", "--days", "0").returncode == 2
    assert panel.run(alice, "history", "--days", "many").returncode == 2
    missing = panel.run(alice, "history", "never-existed")
    assert missing.returncode == 1 and "no such container" in missing.stderr
    table = panel.run(alice, "history", "--daily", "--days", "3")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split() == ["DATE", "DEPLOYMENTS", "FAILURES"]


def test_reconcile_marks_vanished_records_and_reports_unclaimed(tmp_path, docker_client, database):
    namespace = f"sprec{secrets.token_hex(3)}"
    settings = Settings(namespace=namespace, data_dir=tmp_path, database_url=database.new_url())
    store = open_store(settings)
    user = store.create_user("carol", "user", 10, 2**30, 2.0)
    with store.user_transaction(user.id) as tx:
        gone = tx.reserve_container("gone", TEST_IMAGE, "{}", 2**26, 0.5)
    store.attach_docker_id(gone.id, "f" * 64)
    stray = docker_client.containers.create(TEST_IMAGE, ["true"], labels={f"io.{namespace}.owner": "carol"})
    engine = Engine(settings)
    try:
        recorder = EventRecorder(store, engine, settings, unclaimed_age=0)
        report = recorder.reconcile()
        assert report.removed == ("carol/gone",)
        assert [c.id for c in report.unclaimed] == [stray.id]
        assert report.unclaimed[0].owner == "carol"
        assert Container.get_by_id(gone.id).removed is not None
        assert [(e.kind, e.detail) for e in store.events_of(user.id)] == [("remove", "removed outside the panel")]
        again = recorder.reconcile()
        assert again.removed == () and len(store.events_of(user.id)) == 1
        stray.reload()
        assert stray.status == "created"
    finally:
        stray.remove(force=True)
        engine.close()
        store.close()


@pytest.mark.skipif(not RESTART_DOCKERD, reason="restarts dockerd: set SSHPANEL_TEST_DOCKERD_RESTART=1")
@pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep")
def test_events_recorded_through_a_dockerd_restart(panel, docker_client):
    alice = panel.users["alice"]
    run = ["run", "--restart", "always", "--name", "phoenix", TEST_IMAGE, "sleep", "600"]
    assert panel.run(alice, *run).returncode == 0
    assert panel.run(alice, "run", "--name", "doomed", TEST_IMAGE, "sleep", "600").returncode == 0
    before = len(events(panel, alice, "phoenix"))
    restart_dockerd()
    # The new daemon restarts `phoenix` (restart policy) before the panel is
    # back on the stream; catching up with `since` must record that start once.
    wait_for(lambda: ("start", True, "outside the panel") in kinds(panel, alice, "phoenix"), timeout=60,
             what="the restart-policy start")
    docker_client.containers.get(f"{panel.namespace}.alice.doomed").remove(force=True)
    wait_for(lambda: ("remove", True, "removed outside the panel") in kinds(panel, alice, "doomed"),
             what="the removal after the restart")
    assert panel.run(alice, "run", "--name", "after", TEST_IMAGE, "sh", "-c", "exit 3").returncode == 0
    wait_for(lambda: any(k == "die" and not ok for k, ok, _ in kinds(panel, alice, "after")), what="the die")
    starts = [k for k, _, d in kinds(panel, alice, "phoenix") if k == "start" and d == "outside the panel"]
    assert len(starts) == 1 and len(events(panel, alice, "phoenix")) > before
    for name in ("phoenix", "after"):
        panel.run(alice, "rm", "-f", name)
