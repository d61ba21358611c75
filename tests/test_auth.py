"""Authentication: key login, identity bound to the signing key (soft-serve
GHSA-pchf-49fh-w34r regression), host key persistence."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import asyncssh
import pytest

from tests.conftest import SSH_BASE, start_panel, stop_panel


def test_identity_binding_regression(panel, tmp_path):
    """Offer alice's public key first, then authenticate with bob's: the
    session must be bob's or nothing, never alice's."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    # An identity file with only alice's *public* key: ssh offers it (the
    # server may answer PK_OK), cannot sign with it, then moves on to bob's.
    offered = tmp_path / "alice_offered"
    shutil.copy(alice.pub, offered.with_suffix(".pub"))
    for login in ("bob", "alice"):
        result = subprocess.run(
            [*SSH_BASE, "-i", str(offered), "-i", str(bob.key), "-p", str(panel.port), f"{login}@127.0.0.1", "whoami"],
            capture_output=True, text=True, timeout=30,
        )
        if login == "bob":
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("bob (user)")
        else:
            assert result.returncode == 255
            assert "alice" not in result.stdout


def test_identity_binding_regression_asyncssh_client(panel):
    """Same scenario with the asyncssh client offering both private keys."""
    alice, bob = panel.users["alice"], panel.users["bob"]

    async def whoami(login: str, keys: list) -> str:
        async with asyncssh.connect(
            "127.0.0.1", panel.port, username=login, client_keys=keys, known_hosts=None, agent_path=None
        ) as conn:
            return (await conn.run("whoami", check=True)).stdout

    bob_fp = subprocess.run(["ssh-keygen", "-lf", str(bob.pub)], capture_output=True, text=True).stdout.split()[1]
    out = asyncio.run(whoami("bob", [str(alice.key), str(bob.key)]))
    assert out.startswith("bob (user)") and bob_fp in out
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(whoami("alice", [str(bob.key)]))


def test_unknown_user_and_unknown_key_are_refused(panel, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    for login in ("alice", "nobody", "root"):
        result = subprocess.run(
            [*SSH_BASE, "-i", str(stranger), "-p", str(panel.port), f"{login}@127.0.0.1", "whoami"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 255


def test_password_is_refused_when_off(panel):
    """Passwords are off by default: not even offered (forwarding refusals
    are in tests/test_ssh_refusals.py)."""
    pw = subprocess.run(
        [*SSH_BASE, "-v", "-o", "PreferredAuthentications=password,keyboard-interactive", "-p", str(panel.port),
         "alice@127.0.0.1", "whoami"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert pw.returncode == 255
    assert "Authentications that can continue: publickey\n" in pw.stderr


def test_session_without_terminal_or_command_gets_a_message(panel):
    alice = panel.users["alice"]
    result = subprocess.run(panel.ssh_args(alice, "-T"), capture_output=True, text=True, timeout=30, input="")
    assert result.returncode == 1
    assert "no terminal" in result.stderr


def test_host_key_persists_across_restarts(tmp_path, docker_client):
    first = start_panel(tmp_path, "sptesthk")
    key_file = tmp_path / "hostkeys" / "ssh_host_ed25519_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    scan1 = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(first.port), "127.0.0.1"], capture_output=True, text=True).stdout
    stop_panel(first)
    second = start_panel(tmp_path, "sptesthk")
    scan2 = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(second.port), "127.0.0.1"], capture_output=True, text=True).stdout
    stop_panel(second)
    assert scan1.split()[1:] == scan2.split()[1:]
    assert "created host key" in first.log()
    assert "loaded host key" in second.log()


def test_database_file_is_private(panel):
    assert (panel.data_dir / "sshpanel.db").stat().st_mode & 0o777 == 0o600
