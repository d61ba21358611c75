"""The docker-like command line over real SSH against the real engine."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_IMAGE


def _docker_names(docker_client, panel) -> set[str]:
    label = f"io.{panel.namespace}.owner"
    return {c.name for c in docker_client.containers.list(all=True, filters={"label": label})}


def test_lifecycle_run_stop_start_restart_rm(panel, docker_client):
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "web", "-m", "64m", "--cpus", "0.25", "-e", "GREETING=hi there", TEST_IMAGE, "sleep", "600")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "web"
    container = docker_client.containers.get(f"{panel.namespace}.alice.web")
    assert container.status == "running"
    host = container.attrs["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 250_000_000
    assert host["PidsLimit"] > 0
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert not host["Privileged"]
    assert "GREETING=hi there" in container.attrs["Config"]["Env"]
    assert container.labels[f"io.{panel.namespace}.owner"] == "alice"

    ps = panel.run(alice, "ps", "--format", "json")
    rows = [json.loads(line) for line in ps.stdout.splitlines()]
    assert [row["Names"] for row in rows] == ["web"]
    assert set(rows[0]) == {"ID", "Names", "Image", "State", "Status", "Ports", "CreatedAt"}
    assert rows[0]["State"] == "running"
    assert container.id.startswith(rows[0]["ID"])

    assert panel.run(alice, "stop", "web").stdout.strip() == "web"
    container.reload()
    assert container.status == "exited"
    assert panel.run(alice, "ps", "--format", "json").stdout.strip() == ""
    assert "web" in panel.run(alice, "ps", "-a").stdout

    assert panel.run(alice, "start", "web").returncode == 0
    assert panel.run(alice, "restart", "web").returncode == 0
    container.reload()
    assert container.status == "running"

    refused = panel.run(alice, "rm", "web")
    assert refused.returncode == 1
    assert "running" in refused.stderr
    assert panel.run(alice, "rm", "-f", "web").returncode == 0
    assert f"{panel.namespace}.alice.web" not in _docker_names(docker_client, panel)


def test_create_does_not_start_and_name_is_generated(panel, docker_client):
    alice = panel.users["alice"]
    created = panel.run(alice, "create", TEST_IMAGE)
    assert created.returncode == 0, created.stderr
    name = created.stdout.strip()
    assert name.startswith("busybox-")
    container = docker_client.containers.get(f"{panel.namespace}.alice.{name}")
    assert container.status == "created"
    assert panel.run(alice, "rm", name).returncode == 0


def test_one_commands_flags_never_reach_the_next(panel, docker_client):
    """The parser is built once per process (issue 8): the environment of one
    `create` must not turn up in the next one, of the same or another user."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    first = panel.run(alice, "create", "--name", "first", "-e", "SECRET=alice", TEST_IMAGE)
    assert first.returncode == 0, first.stderr
    second = panel.run(bob, "create", "--name", "second", TEST_IMAGE)
    assert second.returncode == 0, second.stderr
    env = docker_client.containers.get(f"{panel.namespace}.bob.second").attrs["Config"]["Env"] or []
    assert not [line for line in env if "SECRET" in line]
    for user, name in ((alice, "first"), (bob, "second")):
        assert panel.run(user, "rm", name).returncode == 0


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "--name", "../x", TEST_IMAGE], 1, "invalid container name"),
        (["run", "--name", "a" * 300, TEST_IMAGE], 1, "invalid container name"),
        (["run", "--name", "a b", TEST_IMAGE], 1, "invalid container name"),
        (["run", "--name", "ok", "-m=-5m", TEST_IMAGE], 1, "invalid size"),
        (["run", "--name", "ok", "-m", "0", TEST_IMAGE], 1, "invalid size"),
        (["run", "--name", "ok", "--cpus", "-1", TEST_IMAGE], 1, "invalid CPU"),
        (["run", "--name", "ok", "-e", "1BAD=x", TEST_IMAGE], 1, "invalid environment"),
        (["run", "--name", "ok", "--restart", "sometimes", TEST_IMAGE], 1, "invalid restart policy"),
        (["run", "--name", "ok", "no-such-image:1"], 1, "unknown image"),
        (["run", "--name", "ok", "--privileged", TEST_IMAGE], 2, "unrecognized arguments"),
        (["run", "--name", "ok", "-v", "/:/host", TEST_IMAGE], 1, "host paths are not allowed"),
        (["frobnicate"], 2, "invalid choice"),
        (["run"], 2, "required"),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(panel, docker_client, args, code, message):
    alice = panel.users["alice"]
    before = _docker_names(docker_client, panel)
    before_ps = panel.run(alice, "ps", "-a", "-q").stdout
    result = panel.run(alice, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
    assert _docker_names(docker_client, panel) == before
    assert panel.run(alice, "ps", "-a", "-q").stdout == before_ps


def test_duplicate_name_is_refused(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "create", "--name", "dup", TEST_IMAGE).returncode == 0
    second = panel.run(alice, "create", "--name", "dup", TEST_IMAGE)
    assert second.returncode == 1
    assert "already have a container named 'dup'" in second.stderr
    listed = [json.loads(line)["Names"] for line in panel.run(alice, "ps", "-a", "--format", "json").stdout.splitlines()]
    assert listed.count("dup") == 1
    assert panel.run(alice, "rm", "dup").returncode == 0


def test_shell_metacharacters_are_plain_arguments(panel, docker_client):
    alice = panel.users["alice"]
    result = panel.run(alice, "create", "--name", "meta", TEST_IMAGE, "echo", "$(id)", "`reboot`", "a;b")
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.meta")
    assert container.attrs["Config"]["Cmd"] == ["echo", "$(id)", "`reboot`", "a;b"]
    panel.run(alice, "rm", "meta")


def test_help_and_whoami(panel):
    alice = panel.users["alice"]
    helped = panel.run(alice, "help")
    assert helped.returncode == 0
    for verb in ("ps", "run", "create", "start", "stop", "restart", "rm", "whoami"):
        assert verb in helped.stdout
    who = panel.run(alice, "whoami")
    assert who.stdout.startswith("alice (user)")
    fingerprint = __import__("subprocess").run(["ssh-keygen", "-lf", str(alice.pub)], capture_output=True, text=True).stdout.split()[1]
    assert fingerprint in who.stdout
    assert panel.run(alice, "run", "--help").returncode == 0


def test_actions_are_audited(panel):
    from sshpanel.config import load_settings
    from sshpanel.store import open_store

    alice = panel.users["alice"]
    panel.run(alice, "stop", "does-not-exist")
    store = open_store(load_settings({"data_dir": panel.data_dir}))
    entries = store.audit_entries(limit=5)
    entry = next(e for e in entries if e.target == "does-not-exist")
    assert entry.actor == "alice"
    assert entry.action == "stop"
    assert entry.outcome.startswith("failed")
    assert entry.fingerprint.startswith("SHA256:")
    assert entry.source.startswith("127.0.0.1:")
    store.close()
