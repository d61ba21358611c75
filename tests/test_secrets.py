"""Environment secrets: encrypted at rest, injected at create, never shown
back — not by `inspect`, the audit log, the database file or the server
log (issue 6)."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from tests.conftest import TEST_IMAGE, ssh_available

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

VALUE = "s3cr3t-Value-7f1d2c"


def wait_for_output(panel, user, *command: str, needle: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        result = panel.run(user, *command)
        if needle in result.stdout or time.monotonic() > deadline:
            return result.stdout
        time.sleep(0.3)


def test_secret_is_injected_and_never_shown(panel):
    alice = panel.users["alice"]
    result = panel.run(alice, "secret", "set", "vault", "API_TOKEN", "-", input=VALUE + "\n")
    assert result.returncode == 0, result.stderr
    assert "added secret API_TOKEN of vault" in result.stdout
    listed = panel.run(alice, "secret", "ls", "vault")
    assert "API_TOKEN" in listed.stdout and VALUE not in listed.stdout
    run = panel.run(alice, "run", "--name", "vault", "-e", "PLAIN=visible", TEST_IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    # The container has the value in its environment...
    env = wait_for_output(panel, alice, "exec", "vault", "env", needle="API_TOKEN=")
    assert f"API_TOKEN={VALUE}" in env
    # ...but nothing the panel shows or stores has it in clear.
    inspect = panel.run(alice, "inspect", "vault").stdout
    assert VALUE not in inspect
    data = json.loads(inspect)
    data = data[0] if isinstance(data, list) else data
    assert "API_TOKEN=********" in data["Config"]["Env"] and "PLAIN=visible" in data["Config"]["Env"]
    admin = panel.add_user("secadmin", admin=True)
    audit = panel.run(admin, "audit").stdout
    assert "secret.set" in audit and "vault/API_TOKEN" in audit and VALUE not in audit
    for path in panel.data_dir.rglob("*"):
        if path.is_file():
            assert VALUE.encode() not in path.read_bytes(), path
    assert VALUE not in panel.log()
    key_file = panel.data_dir / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    panel.run(alice, "rm", "-f", "vault")


def test_secret_replace_remove_and_refusals(panel):
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "secret", "set", "app", "DB_PASSWORD", "-", input="one").returncode == 0
    again = panel.run(alice, "secret", "set", "app", "DB_PASSWORD", "-", input="two")
    assert "replaced secret" in again.stdout
    # Bob has his own namespace of secrets: alice's keys are invisible to him.
    assert "DB_PASSWORD" not in panel.run(bob, "secret", "ls", "app").stdout
    assert panel.run(bob, "secret", "rm", "app", "DB_PASSWORD").returncode == 1
    assert "DB_PASSWORD" in panel.run(alice, "secret", "ls", "app").stdout
    # The value never comes from the command line, keys and names are checked.
    assert panel.run(alice, "secret", "set", "app", "K", "value").returncode == 2
    assert panel.run(alice, "secret", "set", "app", "BAD-KEY", "-", input="x").returncode == 1
    assert panel.run(alice, "secret", "set", "../x", "K", "-", input="x").returncode == 1
    assert panel.run(alice, "secret", "set", "app", "K", "-", input="a\x00b").returncode == 1
    assert panel.run(alice, "secret", "set", "app", "K", "-", input="x" * (33 * 1024)).returncode == 1
    assert panel.run(alice, "secret", "rm", "app", "DB_PASSWORD").returncode == 0
    assert panel.run(alice, "secret", "ls", "app", "--format", "json").stdout.strip() == ""


def test_removed_secret_stays_masked_in_a_running_container_regression(panel):
    """`secret rm` does not take the value out of a container created with
    it: `inspect` keeps masking every key injected at its create."""
    alice = panel.users["alice"]
    value = "gone-but-held-" + os.urandom(6).hex()
    assert panel.run(alice, "secret", "set", "holder", "OLD_TOKEN", "-", input=value).returncode == 0
    run = panel.run(alice, "run", "--name", "holder", TEST_IMAGE, "sleep", "600")
    assert run.returncode == 0, run.stderr
    assert panel.run(alice, "secret", "rm", "holder", "OLD_TOKEN").returncode == 0
    assert f"OLD_TOKEN={value}" in wait_for_output(panel, alice, "exec", "holder", "env", needle="OLD_TOKEN=")
    inspect = panel.run(alice, "inspect", "holder").stdout
    assert value not in inspect
    data = json.loads(inspect)
    data = data[0] if isinstance(data, list) else data
    assert "OLD_TOKEN=********" in data["Config"]["Env"]
    assert data["Config"]["Labels"][f"io.{panel.namespace}.secret-keys"] == "OLD_TOKEN"
    panel.run(alice, "rm", "-f", "holder")
