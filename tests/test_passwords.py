"""Optional password login over real SSH: off by default, `passwd` sets a
bcrypt hash (cost 12), over-long passwords are refused with a clear message,
unknown and disabled users are refused, the server survives odd input."""

from __future__ import annotations

import asyncio
import secrets

import asyncssh
import pytest

from sshpanel.backend.admin.passwords import Passwords
from sshpanel.config import load_settings
from sshpanel.store import open_store
from tests.conftest import remove_namespace, start_panel, stop_panel

GOOD = "correct horse battery staple"


@pytest.fixture(scope="module")
def pw_panel(tmp_path_factory, docker_client):
    """A panel with `SSHPANEL_PASSWORD_AUTH=1`, users alice (user) and ada (admin)."""
    namespace = f"sptestpw{secrets.token_hex(2)}"
    server = start_panel(tmp_path_factory.mktemp("pwpanel"), namespace, {"SSHPANEL_PASSWORD_AUTH": "1"})
    server.add_user("alice")
    server.add_user("ada", admin=True)
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def _password_login(panel, user: str, password: str, command: str = "whoami") -> str:
    async def go() -> str:
        async with asyncssh.connect(
            "127.0.0.1", panel.port, username=user, password=password, client_keys=None,
            known_hosts=None, agent_path=None, preferred_auth="password",
        ) as conn:
            return (await conn.run(command, check=True)).stdout

    return asyncio.run(asyncio.wait_for(go(), 60))


def test_passwd_then_password_login(pw_panel):
    alice = pw_panel.users["alice"]
    with pytest.raises(asyncssh.PermissionDenied):
        _password_login(pw_panel, "alice", GOOD)
    result = pw_panel.run(alice, "passwd", input=GOOD + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "password set"
    out = _password_login(pw_panel, "alice", GOOD)
    assert out.startswith("alice (user)")
    assert "key    password" in out
    with pytest.raises(asyncssh.PermissionDenied):
        _password_login(pw_panel, "alice", GOOD + "!")
    with pytest.raises(asyncssh.PermissionDenied):
        _password_login(pw_panel, "nobody", GOOD)

    store = open_store(load_settings({"data_dir": pw_panel.data_dir}))
    assert store.user_by_name("alice").password_hash.startswith("$2b$12$")
    store.close()


def test_password_rules_are_clear(pw_panel):
    alice = pw_panel.users["alice"]
    long = pw_panel.run(alice, "passwd", input="é" * 40 + "\n")
    assert long.returncode == 1
    assert "password too long: bcrypt uses at most 72 bytes and this one has 80" in long.stderr
    short = pw_panel.run(alice, "passwd", input="abc\n")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    empty = pw_panel.run(alice, "passwd", input="")
    assert empty.returncode == 1 and "on stdin" in empty.stderr


def test_over_long_password_at_login_is_refused_and_server_survives(pw_panel):
    with pytest.raises(asyncssh.PermissionDenied):
        _password_login(pw_panel, "alice", "x" * 200)
    assert pw_panel.run(pw_panel.users["alice"], "whoami").returncode == 0


def test_disabled_user_cannot_log_in_with_password(pw_panel):
    ada = pw_panel.users["ada"]
    pw_panel.run(pw_panel.users["alice"], "passwd", input=GOOD + "\n")
    assert pw_panel.run(ada, "user", "disable", "alice").returncode == 0
    with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
        _password_login(pw_panel, "alice", GOOD)
    assert pw_panel.run(ada, "user", "enable", "alice").returncode == 0
    assert _password_login(pw_panel, "alice", GOOD).startswith("alice (user)")


def test_passwd_delete_removes_the_password(pw_panel):
    alice = pw_panel.users["alice"]
    pw_panel.run(alice, "passwd", input=GOOD + "\n")
    assert pw_panel.run(alice, "passwd", "-d").stdout.strip() == "password removed"
    with pytest.raises(asyncssh.PermissionDenied):
        _password_login(pw_panel, "alice", GOOD)


def test_password_login_is_off_by_default(panel):
    alice = panel.users["alice"]
    result = panel.run(alice, "passwd", input=GOOD + "\n")
    assert result.returncode == 0
    assert "password logins are off on this server" in result.stdout
    with pytest.raises((asyncssh.PermissionDenied, asyncssh.DisconnectError)):
        _password_login(panel, "alice", GOOD)


def test_unknown_user_is_checked_against_a_dummy_hash(tmp_path):
    """Unknown names cost a bcrypt check too (no timing oracle): the dummy
    hash exists after the first unknown-user attempt, at the same cost."""
    store = open_store(load_settings({"data_dir": tmp_path}))
    passwords = Passwords(store, cost=4)
    assert passwords.authenticate("nobody", GOOD, "test") is None
    assert passwords._dummy is not None and passwords._dummy.startswith(b"$2b$04$")
    store.close()
