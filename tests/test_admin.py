"""Admin flows end to end over real SSH, on SQLite and PostgreSQL: users,
roles, quotas, keys of any user, disabling (live sessions closed),
deletion, the audit log and the host overview; every admin command refused
and audited for a non-admin."""

from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from sshpanel.access.principal import Principal
from sshpanel.backend.admin.admin import Admin
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import load_settings
from sshpanel.errors import PermissionDenied
from sshpanel.store import open_store
from tests.conftest import SSH_BASE, TEST_IMAGE

pytestmark = pytest.mark.databases


@pytest.fixture(scope="module")
def ada(panel):
    """An admin of the module's panel."""
    return panel.add_user("ada", admin=True)


def _store(panel):
    return open_store(load_settings({"data_dir": panel.data_dir, "database_url": panel.database_url}))


def _users(panel, admin) -> dict[str, dict]:
    result = panel.run(admin, "user", "ls", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {row["Name"]: row for row in map(json.loads, result.stdout.splitlines())}


def _settings_of(panel, admin) -> dict[str, dict]:
    """The users as `user ls` shows them, without the login times."""
    return {name: {k: v for k, v in row.items() if k != "LastLogin"} for name, row in _users(panel, admin).items()}


def _new_key(panel, name: str):
    key = panel.keys_dir / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(key)], check=True)
    return key


def _login(panel, name: str, key, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SSH_BASE, "-i", str(key), "-p", str(panel.port), f"{name}@127.0.0.1", "--", shlex.join(command)],
        capture_output=True, text=True, timeout=60,
    )


def _wait_for(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_user_add_with_key_on_stdin_then_login(panel, ada):
    key = _new_key(panel, "carol")
    added = panel.run(ada, "user", "add", "carol", "--key", "-", input=key.with_suffix(".pub").read_text())
    assert added.returncode == 0, added.stderr
    assert "added user carol with 1 key(s)" in added.stdout
    who = _login(panel, "carol", key, "whoami")
    assert who.returncode == 0, who.stderr
    assert who.stdout.startswith("carol (user)")

    users = _users(panel, ada)
    assert users["carol"]["Role"] == "user" and users["carol"]["Keys"] == 1
    assert users["carol"]["LastLogin"] is not None
    assert users["ada"]["Role"] == "admin"
    assert set(users["carol"]) >= {"Running", "Containers", "Memory", "MaxMemory", "Cpus", "MaxCpus", "Pids", "Ports"}

    again = panel.run(ada, "user", "add", "carol")
    assert again.returncode == 1 and "already exists" in again.stderr
    table = panel.run(ada, "user", "ls")
    assert table.stdout.splitlines()[0].split()[:5] == ["NAME", "ROLE", "STATUS", "KEYS", "CONTAINERS"]


def test_user_add_without_key_and_bad_input(panel, ada):
    assert panel.run(ada, "user", "add", "nokey").returncode == 0
    assert _users(panel, ada)["nokey"]["Keys"] == 0
    bad = panel.run(ada, "user", "add", "Bad.Name")
    assert bad.returncode == 1 and "invalid user name" in bad.stderr
    weak = panel.run(ada, "user", "add", "weak", "--key", "ssh-dss AAAAB3NzaC1kc3MAAACBAP== x")
    assert weak.returncode == 1 and "ssh-dss" in weak.stderr
    assert "weak" not in _users(panel, ada)
    usage = panel.run(ada, "user", "set-role", "nokey", "root")
    assert usage.returncode == 2


def test_set_role_and_quota(panel, ada):
    key = _new_key(panel, "dan")
    assert panel.run(ada, "user", "add", "dan", "--key", key.with_suffix(".pub").read_text().strip()).returncode == 0
    promoted = panel.run(ada, "user", "set-role", "dan", "admin")
    assert promoted.returncode == 0 and "dan is now admin" in promoted.stdout
    assert _login(panel, "dan", key, "user", "ls").returncode == 0
    assert panel.run(ada, "user", "set-role", "dan", "user").returncode == 0
    denied = _login(panel, "dan", key, "user", "ls")
    assert denied.returncode == 1 and "permission denied" in denied.stderr

    quota = panel.run(ada, "user", "set-quota", "dan", "--containers", "4", "--memory", "512m", "--cpus", "1.5",
                      "--pids", "100", "--ports", "21000-21009")
    assert quota.returncode == 0, quota.stderr
    dan = _users(panel, ada)["dan"]
    assert (dan["MaxContainers"], dan["MaxMemory"], dan["MaxCpus"], dan["Pids"], dan["Ports"]) == (
        4, 512 * 2**20, 1.5, 100, "21000-21009")
    mine = json.loads(_login(panel, "dan", key, "quota", "--format", "json").stdout)
    assert mine["MaxMemory"] == 512 * 2**20 and mine["Ports"] == "21000-21009"
    for bad in (["--ports", "9-3"], ["--memory", "lots"], ["--cpus", "-1"], ["--pids", "0"]):
        refused = panel.run(ada, "user", "set-quota", "dan", *bad)
        assert refused.returncode == 1, (bad, refused.stderr)
    assert panel.run(ada, "user", "set-quota", "dan", "--ports", "none").returncode == 0
    assert _users(panel, ada)["dan"]["Ports"] == "none"


def test_admin_cannot_lock_themselves_out(panel, ada):
    for args in (["disable", "ada"], ["rm", "ada"], ["set-role", "ada", "user"]):
        result = panel.run(ada, "user", *args)
        assert result.returncode == 1 and "yourself" in result.stderr
    missing = panel.run(ada, "user", "disable", "nobody")
    assert missing.returncode == 1 and "no such user: nobody" in missing.stderr


def test_disabled_user_session_is_closed_and_login_refused(panel, ada, docker_client):
    key = _new_key(panel, "erin")
    assert panel.run(ada, "user", "add", "erin", "--key", key.with_suffix(".pub").read_text()).returncode == 0
    assert _login(panel, "erin", key, "run", "--name", "app", TEST_IMAGE, "sleep", "600").returncode == 0
    live = subprocess.Popen(
        [*SSH_BASE, "-i", str(key), "-p", str(panel.port), "-N", "erin@127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(lambda: panel.log().count("auth ok user=erin") >= 2, what="erin's session to log in")
        disabled = panel.run(ada, "user", "disable", "erin")
        assert disabled.returncode == 0, disabled.stderr
        live.wait(timeout=30)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert "closed 1 connection(s) of user=erin" in panel.log()
    assert _login(panel, "erin", key, "whoami").returncode == 255
    assert _users(panel, ada)["erin"]["Disabled"] is True
    container = docker_client.containers.get(f"{panel.namespace}.erin.app")
    assert container.status == "running"

    assert panel.run(ada, "user", "enable", "erin").returncode == 0
    assert _login(panel, "erin", key, "whoami").returncode == 0
    assert _login(panel, "erin", key, "rm", "-f", "app").returncode == 0


def test_remove_user_with_containers_needs_force(panel, ada, docker_client):
    key = _new_key(panel, "fred")
    assert panel.run(ada, "user", "add", "fred", "--key", key.with_suffix(".pub").read_text()).returncode == 0
    assert _login(panel, "fred", key, "run", "--name", "db", TEST_IMAGE, "sleep", "600").returncode == 0
    assert _login(panel, "fred", key, "create", "--name", "idle", TEST_IMAGE).returncode == 0
    ps_before = _login(panel, "fred", key, "ps", "-a", "--format", "json").stdout
    before = _settings_of(panel, ada)["fred"]

    refused = panel.run(ada, "user", "rm", "fred")
    assert refused.returncode == 1
    assert "fred owns 2 container(s)" in refused.stderr and "--force" in refused.stderr
    assert _settings_of(panel, ada)["fred"] == before
    assert _login(panel, "fred", key, "ps", "-a", "--format", "json").stdout == ps_before
    assert docker_client.containers.get(f"{panel.namespace}.fred.db").status == "running"

    forced = panel.run(ada, "user", "rm", "fred", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "2 container(s)" in forced.stdout
    assert "fred" not in _users(panel, ada)
    label = f"io.{panel.namespace}.owner=fred"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(names=[f"{panel.namespace}.fred"]) == []
    assert _login(panel, "fred", key, "whoami").returncode == 255
    store = _store(panel)
    removed = [e for e in store.audit_entries(limit=50) if e.action == "rm" and e.target.startswith("fred/")]
    assert {e.target for e in removed} == {"fred/db", "fred/idle"}
    assert all(e.actor == "ada" and e.outcome == "ok" for e in removed)
    store.close()


def test_keys_of_any_user(panel, ada):
    bob = panel.users["bob"]
    extra = _new_key(panel, "bob2")
    pub = extra.with_suffix(".pub").read_text()
    expected = subprocess.run(["ssh-keygen", "-lf", str(extra.with_suffix(".pub"))], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    added = panel.run(ada, "user", "key", "add", "bob", "-", input=pub)
    assert added.returncode == 0, added.stderr
    assert expected in added.stdout
    listed = [json.loads(line) for line in panel.run(ada, "user", "key", "ls", "bob", "--format", "json").stdout.splitlines()]
    assert expected in [k["Fingerprint"] for k in listed]
    assert _login(panel, "bob", extra, "whoami").stdout.startswith("bob (user)")

    taken = panel.run(ada, "user", "key", "add", "alice", "-", input=pub)
    assert taken.returncode == 1 and "already registered" in taken.stderr

    removed = panel.run(ada, "user", "key", "rm", "bob", expected)
    assert removed.returncode == 0, removed.stderr
    assert _login(panel, "bob", extra, "whoami").returncode == 255
    assert panel.run(bob, "whoami").returncode == 0
    unknown = panel.run(ada, "user", "key", "rm", "bob", expected)
    assert unknown.returncode == 1 and "no such key" in unknown.stderr


ADMIN_COMMANDS = [
    ("user.ls", ["user", "ls"]),
    ("user.ls", ["user", "ls", "--format", "json"]),
    ("user.add", ["user", "add", "mallory", "--admin"]),
    ("user.rm", ["user", "rm", "alice", "--force"]),
    ("user.disable", ["user", "disable", "alice"]),
    ("user.enable", ["user", "enable", "alice"]),
    ("user.set-role", ["user", "set-role", "bob", "admin"]),
    ("user.set-quota", ["user", "set-quota", "bob", "--containers", "1000"]),
    ("user.key.add", ["user", "key", "add", "alice", "-"]),
    ("user.key.rm", ["user", "key", "rm", "alice", "SHA256:x"]),
    ("user.key.ls", ["user", "key", "ls", "alice"]),
    ("audit", ["audit"]),
    ("audit", ["audit", "--since", "1h", "--format", "json"]),
    ("host", ["host"]),
    ("host", ["host", "--format", "json"]),
]


def test_non_admin_is_denied_every_admin_command_and_audited(panel, ada):
    bob = panel.users["bob"]
    stranger = _new_key(panel, "stranger")
    users_before = _settings_of(panel, ada)
    for action, command in ADMIN_COMMANDS:
        result = panel.run(bob, *command, input=stranger.with_suffix(".pub").read_text())
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "permission denied" in result.stderr, command
        assert result.stdout == "", command
    assert _settings_of(panel, ada) == users_before
    store = _store(panel)
    denied = [e for e in store.audit_entries(limit=200) if e.actor == "bob" and "permission denied" in e.outcome]
    store.close()
    assert sorted(e.action for e in denied) == sorted(action for action, _ in ADMIN_COMMANDS)
    assert all(e.fingerprint.startswith("SHA256:") and e.source.startswith("127.0.0.1:") for e in denied)
    via_cli = panel.run(ada, "audit", "--user", "bob", "--outcome", "failed", "--format", "json")
    assert {json.loads(line)["Action"] for line in via_cli.stdout.splitlines()} >= {"user.rm", "host", "audit"}


def test_audit_command_filters_newest_first(panel, ada):
    alice = panel.users["alice"]
    panel.run(alice, "stop", "no-such-thing")
    result = panel.run(ada, "audit", "--user", "alice", "--since", "1h", "--action", "stop", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["User"] == "alice" and r["Action"] == "stop" for r in rows)
    assert rows[0]["Target"] == "no-such-thing" and rows[0]["Outcome"].startswith("failed")
    assert set(rows[0]) == {"Time", "User", "Fingerprint", "Source", "Action", "Target", "Outcome"}
    everyone = [json.loads(line)["Time"] for line in panel.run(ada, "audit", "--format", "json").stdout.splitlines()]
    assert everyone == sorted(everyone, reverse=True)
    future = panel.run(ada, "audit", "--since", "2999-01-01", "--format", "json")
    assert future.returncode == 0 and future.stdout == ""
    bad = panel.run(ada, "audit", "--since", "yesterday")
    assert bad.returncode == 1 and "invalid --since" in bad.stderr
    limited = panel.run(ada, "audit", "-n", "2", "--format", "json")
    assert len(limited.stdout.splitlines()) == 2


def test_host_overview(panel, ada, docker_client):
    result = panel.run(ada, "host", "--format", "json")
    assert result.returncode == 0, result.stderr
    host = json.loads(result.stdout)
    assert host["EngineVersion"] == docker_client.version()["Version"]
    assert len(host["CpuPerCore"]) >= 1 and 0 <= host["CpuPercent"] <= 100
    assert 0 < host["MemoryUsed"] <= host["MemoryTotal"]
    assert 0 < host["DiskUsed"] <= host["DiskTotal"]
    assert host["Containers"] == host["ContainersRunning"] + host["ContainersPaused"] + host["ContainersStopped"]
    assert host["Images"] >= 1 and host["Uptime"] > 0 and len(host["Load"]) == 3
    table = panel.run(ada, "host")
    assert isinstance(host["Unprivileged"], bool)
    for label in ("engine", "unprivileged", "cpu", "memory", "swap", "disk", "load", "uptime", "containers", "images"):
        assert f"\n{label} " in "\n" + table.stdout


def test_demoted_admin_loses_rights_in_an_open_session(panel):
    """The backend re-checks the role on every call: an Admin service built
    while the principal was an admin stops working once they are demoted."""
    panel.add_user("gina", admin=True)
    settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace,
                              "database_url": panel.database_url})
    store = open_store(settings)
    engine = Engine(settings)
    try:
        user = store.user_by_name("gina")
        admin = Admin(Workspace(Principal(user.id, "gina", "admin", "SHA256:test", "local"), store, engine, settings))
        assert any(view.name == "gina" for view in admin.users())
        with store.write():
            user.role = "user"
            user.save()
        with pytest.raises(PermissionDenied):
            admin.users()
        with pytest.raises(PermissionDenied):
            admin.set_disabled("alice", True)
        with pytest.raises(PermissionDenied):
            Admin(Workspace(Principal(user.id, "gina", "user"), store, engine, settings))
        assert store.user_by_name("alice").disabled is False
    finally:
        engine.close()
        store.close()


def test_admin_sees_every_container_and_acts_as_the_owner(panel, docker_client):
    """The backend API behind the admin's all-containers screen: every
    user's containers with their owner, and the owner's actions, audited
    with the admin as the actor."""
    alice = panel.users["alice"]
    assert panel.run(alice, "create", "--name", "shared", TEST_IMAGE).returncode == 0
    settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace,
                              "database_url": panel.database_url})
    store = open_store(settings)
    engine = Engine(settings)
    try:
        user = store.user_by_name("ada")
        admin = Admin(Workspace(Principal(user.id, "ada", "admin", "SHA256:adminkey", "10.0.0.1:22"), store, engine, settings))
        owners = {(view.owner, view.name) for view in admin.containers()}
        assert ("alice", "shared") in owners
        assert admin.workspace_of("alice").remove("shared") == "shared"
        assert not [c for c in docker_client.containers.list(all=True) if c.name == f"{panel.namespace}.alice.shared"]
        entry = next(e for e in store.audit_entries(limit=20) if e.target == "alice/shared")
        assert (entry.actor, entry.action, entry.fingerprint, entry.outcome) == ("ada", "rm", "SHA256:adminkey", "ok")
    finally:
        engine.close()
        store.close()
