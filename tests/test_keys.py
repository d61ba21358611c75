"""Self-service keys over real SSH (`keys ls|add|rm`): fingerprints equal
`ssh-keygen -lf` for ed25519, ECDSA and RSA keys, options and comments are
kept, weak keys are refused, a key has one owner, the last key stays."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.conftest import SSH_BASE


@pytest.fixture(scope="module")
def ada(panel):
    """An admin who creates the users these tests own."""
    return panel.add_user("ada", admin=True)


def _keygen(panel, name: str, kind: str, bits: int | None = None):
    key = panel.keys_dir / name
    command = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name} comment", "-f", str(key)]
    if bits:
        command += ["-b", str(bits)]
    subprocess.run(command, check=True)
    return key


def _fingerprint(pub) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def _login(panel, name: str, key, *command: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SSH_BASE, "-i", str(key), "-p", str(panel.port), f"{name}@127.0.0.1", "--", shlex.join(command)],
        capture_output=True, text=True, timeout=60, input=input,
    )


def _keys(panel, name: str, key) -> list[dict]:
    result = _login(panel, name, key, "keys", "ls", "--format", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _fingerprints(panel, name: str, key) -> list[str]:
    return [k["Fingerprint"] for k in _keys(panel, name, key)]


@pytest.fixture(scope="module")
def kim(panel, ada):
    """A user with one ed25519 key, created by the admin."""
    key = _keygen(panel, "kim", "ed25519")
    assert panel.run(ada, "user", "add", "kim", "--key", "-", input=key.with_suffix(".pub").read_text()).returncode == 0
    return key


@pytest.mark.parametrize(
    "kind, bits",
    [("ed25519", None), ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521), ("rsa", 2048), ("rsa", 3072)],
)
def test_fingerprints_equal_ssh_keygen(panel, kim, kind, bits):
    name = f"kim-{kind}-{bits or 0}"
    extra = _keygen(panel, name, kind, bits)
    pub = extra.with_suffix(".pub")
    added = _login(panel, "kim", kim, "keys", "add", "-", input=pub.read_text())
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip().startswith(f"added {_fingerprint(pub)} ")
    listed = {k["Fingerprint"]: k for k in _keys(panel, "kim", kim)}
    assert _fingerprint(pub) in listed
    assert listed[_fingerprint(pub)]["Comment"] == f"{name} comment"
    who = _login(panel, "kim", extra, "whoami")
    assert who.returncode == 0, who.stderr
    assert _fingerprint(pub) in who.stdout
    removed = _login(panel, "kim", kim, "keys", "rm", _fingerprint(pub))
    assert removed.returncode == 0, removed.stderr
    assert _login(panel, "kim", extra, "whoami").returncode == 255


def test_options_and_comment_are_preserved(panel, kim):
    extra = _keygen(panel, "kim-opts", "ed25519")
    body = extra.with_suffix(".pub").read_text().split()
    line = f'from="127.0.0.1",no-pty {body[0]} {body[1]} my laptop key'
    added = _login(panel, "kim", kim, "keys", "add", line)
    assert added.returncode == 0, added.stderr
    listed = {k["Fingerprint"]: k for k in _keys(panel, "kim", kim)}
    entry = listed[_fingerprint(extra.with_suffix(".pub"))]
    assert entry["Key"] == line
    assert entry["Comment"] == "my laptop key"
    assert entry["Type"] == "ssh-ed25519"
    table = _login(panel, "kim", kim, "keys", "ls").stdout
    assert table.splitlines()[0].split()[:3] == ["TYPE", "FINGERPRINT", "COMMENT"]
    assert _login(panel, "kim", kim, "keys", "rm", entry["Fingerprint"]).returncode == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP8= old", "ssh-dss"),
        ("ssh-ed25519 !!!notbase64 x", "not base64"),
        ("not a key at all", "invalid public key"),
        ("", "exactly one"),
    ],
)
def test_bad_keys_are_refused(panel, kim, text, message):
    before = _fingerprints(panel, "kim", kim)
    result = _login(panel, "kim", kim, "keys", "add", "-", input=text)
    assert result.returncode == 1
    assert message in result.stderr
    assert _fingerprints(panel, "kim", kim) == before


def test_short_rsa_key_is_refused(panel, kim):
    weak = _keygen(panel, "kim-rsa1024", "rsa", 1024)
    result = _login(panel, "kim", kim, "keys", "add", "-", input=weak.with_suffix(".pub").read_text())
    assert result.returncode == 1
    assert "RSA keys under 2048 bits are refused (1024 given)" in result.stderr


def test_a_key_belongs_to_one_user(panel, kim):
    bob = panel.users["bob"]
    stolen = _login(panel, "kim", kim, "keys", "add", "-", input=bob.pub.read_text())
    assert stolen.returncode == 1
    assert "already registered" in stolen.stderr
    assert _fingerprint(bob.pub) not in [k["Fingerprint"] for k in _keys(panel, "kim", kim)]
    # Someone else's fingerprint reads like one that does not exist.
    other = _login(panel, "kim", kim, "keys", "rm", _fingerprint(bob.pub))
    assert other.returncode == 1
    assert "no such key" in other.stderr
    assert panel.run(bob, "whoami").returncode == 0


def test_last_key_cannot_be_removed(panel, kim):
    only = _fingerprints(panel, "kim", kim)
    assert len(only) == 1
    refused = _login(panel, "kim", kim, "keys", "rm", only[0])
    assert refused.returncode == 1
    assert "last key" in refused.stderr
    assert _fingerprints(panel, "kim", kim) == only


def test_key_changes_are_audited(panel, ada, kim):
    result = panel.run(ada, "audit", "--user", "kim", "--format", "json")
    actions = {(row["Action"], row["Outcome"].split(":")[0]) for row in map(json.loads, result.stdout.splitlines())}
    assert {("keys.add", "ok"), ("keys.rm", "ok"), ("keys.add", "failed"), ("keys.rm", "failed")} <= actions
