"""Authentication: key login, identity bound to the signing key (soft-serve
GHSA-pchf-49fh-w34r regression), host key persistence."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess

import asyncssh
import pytest

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.config import load_settings
from sshpanel.ssh.limits import LimitSettings, Limits
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store
from tests.conftest import SSH_BASE, remove_namespace, start_panel, stop_panel


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


def test_locked_account_takes_the_same_lookup_path(tmp_path, docker_client):
    """A throttled account is refused only after the same key lookup (and,
    with passwords on, the same bcrypt check) as any other refusal, so its
    answer does not tell that it exists and is locked. The path is checked
    (the store and password calls made), never the wall clock."""
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings({"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data", "password_auth": True,
                              "host_keys_dir": tmp_path / "hk", "namespace": namespace})
    good, stranger = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    clock = [1000.0]
    calls: list[tuple[str, str]] = []

    async def attempt(server, login: str, **auth) -> str:
        calls.clear()
        try:
            async with asyncssh.connect("127.0.0.1", server.port, username=login, known_hosts=None, agent_path=None,
                                        **auth) as conn:
                return (await conn.run("whoami")).stdout
        except asyncssh.PermissionDenied:
            return "refused"

    async def scenario() -> dict[str, tuple[str, list]]:
        server = PanelServer(settings, open_store(settings))
        server.limits = Limits(LimitSettings(account_max_failures=3, account_lock_seconds=60), clock=lambda: clock[0])
        await server.start()
        store, passwords = server.store, server.passwords
        lookup, check = store.key_of_user, passwords.authenticate

        def spy_lookup(user, fingerprint):
            calls.append(("key_of_user", user))
            return lookup(user, fingerprint)

        def spy_check(user, password, source):
            calls.append(("password", user))
            return check(user, password, source)

        store.key_of_user, passwords.authenticate = spy_lookup, spy_check
        try:
            accounts = Accounts(store, settings)
            await asyncio.to_thread(accounts.add_user, "dave", [good.export_public_key().decode()])
            keys = {"client_keys": [good], "preferred_auth": "publickey"}
            results = {"open": (await attempt(server, "dave", **keys), list(calls))}
            for _ in range(3):
                await attempt(server, "dave", client_keys=[stranger], preferred_auth="publickey")
            assert server.limits.account_locked("dave")
            results["locked"] = (await attempt(server, "dave", **keys), list(calls))
            results["unknown"] = (await attempt(server, "nobody", **keys), list(calls))
            password = {"password": "wrong", "client_keys": None, "preferred_auth": "password"}
            results["locked password"] = (await attempt(server, "dave", **password), list(calls))
            results["unknown password"] = (await attempt(server, "nobody", **password), list(calls))
            clock[0] += 61
            results["unlocked"] = (await attempt(server, "dave", **keys), list(calls))
            return results
        finally:
            await server.stop()

    try:
        results = asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert results["open"][0].startswith("dave") and results["unlocked"][0].startswith("dave")
    assert results["locked"][0] == results["unknown"][0] == "refused"
    # The locked account looks its key up exactly like an unknown name
    # (and like the open account did before it signed).
    assert results["locked"][1] == [("key_of_user", "dave")] * len(results["unknown"][1])
    assert results["unknown"][1] == [("key_of_user", "nobody")] * len(results["unknown"][1])
    assert results["locked"][1] and len(results["locked"][1]) <= len(results["open"][1])
    assert results["locked password"] == ("refused", [("password", "dave")])
    assert results["unknown password"] == ("refused", [("password", "nobody")])
