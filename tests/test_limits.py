"""Connection and login limits (OpenSSH MaxStartups, PerSourcePenalties,
NIST 800-63B account throttling), as pure counters and through the server."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import time

import asyncssh
import pytest
from asyncssh.channel import SSHClientChannel

from tests.conftest import remove_namespace, start_panel, stop_panel

from sshpanel.config import load_settings
from sshpanel.errors import ConfigError
from sshpanel.ssh.limits import LimitSettings, Limits
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store


def retry_until_admitted(login, expected: str, why: str, seconds: float = 20, pause: float = 0.05,
                         errors: tuple[type[BaseException], ...] = (asyncssh.DisconnectError,)) -> None:
    """Runs the coroutine function `login` until its output starts with
    `expected`, retrying on `errors` for at most `seconds` (failing with `why`)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            assert asyncio.run(login()).startswith(expected)
            return
        except errors:
            assert time.monotonic() < deadline, why
            time.sleep(pause)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_max_startups_refuses_with_rising_probability():
    limits = Limits(LimitSettings(startups=(2, 50, 4), per_source_unauthenticated=100), chance=lambda: 0.6)
    assert limits.admit("a") is None
    assert limits.admit("b") is None
    # 2 unauthenticated: 50 % chance of refusal; 0.6 passes.
    assert limits.admit("c") is None
    # 3 unauthenticated: 75 %; 0.6 is refused.
    assert limits.admit("d") is not None
    limits.authenticated("a", "alice")
    assert limits.unauthenticated == 2
    limits.released("b")
    limits.released("b")
    assert limits.unauthenticated == 1


def test_all_refused_past_full_and_per_source_cap():
    limits = Limits(LimitSettings(startups=(100, 30, 3), per_source_unauthenticated=2), chance=lambda: 0.99)
    assert limits.admit("x") is None
    assert limits.admit("x") is None
    assert "your address" in limits.admit("x")
    assert limits.admit("y") is None
    assert limits.admit("z") == "too many unauthenticated connections"


def test_source_penalty_grows_and_expires():
    clock = Clock()
    limits = Limits(LimitSettings(penalty_after=3, penalty_seconds=5), clock=clock)
    for _ in range(3):
        limits.failed("1.2.3.4", "alice")
    assert "try again later" in limits.admit("1.2.3.4")
    assert limits.admit("5.6.7.8") is None
    clock.now += 5.1
    assert limits.admit("1.2.3.4") is None
    limits.failed("1.2.3.4", "alice")
    clock.now += 5.1
    assert limits.admit("1.2.3.4") is not None  # the window doubled to 10 s
    clock.now += 5.0
    assert limits.admit("1.2.3.4") is None


def test_account_throttled_after_max_consecutive_failures():
    clock = Clock()
    limits = Limits(LimitSettings(account_max_failures=100, account_lock_seconds=60, penalty_after=10**6), clock=clock)
    for i in range(99):
        limits.failed(f"10.0.0.{i % 200}", "alice")
    assert not limits.account_locked("alice")
    limits.failed("10.0.0.1", "alice")
    assert limits.account_locked("alice")
    assert not limits.account_locked("bob")
    clock.now += 61
    assert not limits.account_locked("alice")


def test_sessions_per_user():
    limits = Limits(LimitSettings(sessions_per_user=2))
    assert limits.open_session("alice") and limits.open_session("alice")
    assert not limits.open_session("alice")
    limits.close_session("alice")
    assert limits.open_session("alice")


def test_forwards_per_user():
    """Forwarded connections have their own count, apart from sessions."""
    limits = Limits(LimitSettings(forwards_per_user=2, sessions_per_user=1))
    assert limits.open_forward("alice") and limits.open_forward("alice")
    assert not limits.open_forward("alice") and limits.open_forward("bob")
    assert limits.open_session("alice")
    limits.close_forward("alice")
    assert limits.open_forward("alice")


def test_max_auth_tries_disconnects(panel, tmp_path):
    """Seven wrong keys on one connection: the server hangs up at the sixth."""
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(7)]

    async def attempt() -> Exception:
        try:
            async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=keys,
                                        known_hosts=None, agent_path=None):
                pass
        except Exception as exc:  # the kind of failure is what we check
            return exc
        raise AssertionError("logged in with wrong keys")

    error = asyncio.run(attempt())
    assert isinstance(error, (asyncssh.DisconnectError, asyncssh.PermissionDenied, ConnectionError))
    assert "too many authentication failures" in panel.log()
    # A good login from the same address still works afterwards (fewer than
    # the penalty threshold of failures).
    assert panel.run(panel.users["alice"], "whoami").returncode == 0


def test_unauthenticated_connection_closed_after_login_grace_time(tmp_path, docker_client):
    """OpenSSH `LoginGraceTime`: a connection that never authenticates is
    closed by the server (here after 1 s; default 30 s)."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, extra_env={"SSHPANEL_LOGIN_GRACE_TIME": "1"})
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            assert raw.recv(256).startswith(b"SSH-2.0-")
            raw.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            received = b""
            while True:  # the server's key exchange, then nothing: it hangs up
                chunk = raw.recv(65536)
                if not chunk:
                    break
                received += chunk
        assert received  # the key exchange offer came, then the close
    finally:
        stop_panel(server)
        remove_namespace(docker_client, namespace)


async def _bare_session(conn: asyncssh.SSHClientConnection) -> SSHClientChannel:
    """Opens a session channel and sends nothing on it (no shell, exec or
    subsystem). asyncssh's client API always sends one, so this uses its
    channel class directly.

    Raises:
        asyncssh.ChannelOpenError: The server refused the channel.
    """
    chan = SSHClientChannel(conn, asyncio.get_running_loop(), "strict", None, "strict", 2**21, 32768)
    await chan._open(b"session")
    chan._session = asyncssh.SSHClientSession()
    chan._session.connection_made(chan)
    return chan


def test_session_limits_are_settings_and_count_unstarted_channels(tmp_path, docker_client):
    """`SSHPANEL_MAX_SESSIONS_PER_CONNECTION=2`, `..._PER_USER=3`, across
    real connections; channels that never start a shell, exec or subsystem
    hold their place like any other; another user is not affected."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, extra_env={"SSHPANEL_MAX_SESSIONS_PER_CONNECTION": "2",
                                                         "SSHPANEL_MAX_SESSIONS_PER_USER": "3"})
    try:
        alice, bob = server.add_user("alice"), server.add_user("bob")

        def connect(user):
            return asyncssh.connect("127.0.0.1", server.port, username=user.name, client_keys=[str(user.key)],
                                    known_hosts=None, agent_path=None)

        async def refused(opening) -> str:
            with pytest.raises(asyncssh.ChannelOpenError) as caught:
                await opening
            assert caught.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
            return caught.value.reason

        async def scenario() -> None:
            async with connect(alice) as first, connect(alice) as second:
                held = [await _bare_session(first), await _bare_session(first)]
                assert "too many open sessions" in await refused(_bare_session(first))  # per connection
                held.append(await _bare_session(second))
                assert "too many open sessions" in await refused(second.run("whoami"))  # per user
                loud = [{"LogLevel=ERROR": "LogLevel=INFO"}.get(arg, arg)  # show the channel failure
                        for arg in server.ssh_args(alice) if arg != "-q"]
                openssh = await asyncio.to_thread(subprocess.run, [*loud, "whoami"], capture_output=True,
                                                  text=True, timeout=30, stdin=subprocess.DEVNULL)
                assert openssh.returncode == 255
                assert "too many open sessions" in openssh.stderr
                async with connect(bob) as other:
                    assert (await other.run("whoami")).stdout.startswith("bob")
                held.pop(0).close()
                deadline = asyncio.get_running_loop().time() + 20
                while True:  # the server sees the close soon after
                    try:
                        result = await second.run("whoami")
                        break
                    except asyncssh.ChannelOpenError:
                        assert asyncio.get_running_loop().time() < deadline
                        await asyncio.sleep(0.05)
                assert result.stdout.startswith("alice")

        asyncio.run(scenario())
    finally:
        stop_panel(server)
        remove_namespace(docker_client, namespace)


def test_bad_session_limit_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="SSHPANEL_MAX_SESSIONS_PER_USER=0"):
        settings = load_settings({"max_sessions_per_user": 0, "data_dir": tmp_path})
        PanelServer(settings, open_store(settings))
    with pytest.raises(ConfigError, match="SSHPANEL_MAX_SESSIONS_PER_CONNECTION='abc'"):
        load_settings(environ={"SSHPANEL_MAX_SESSIONS_PER_CONNECTION": "abc"})


def test_default_max_startups_curve():
    """OpenSSH's `MaxStartups 10:30:100` with the real defaults: none refused
    below 10 pending, 30 % at 10, rising linearly, all from 100."""
    limits = Limits()
    assert limits.settings.startups == (10, 30, 100)
    assert [limits.refusal_probability(n) for n in (0, 9)] == [0.0, 0.0]
    assert limits.refusal_probability(10) == pytest.approx(0.30)
    assert limits.refusal_probability(55) == pytest.approx(0.65)
    assert limits.refusal_probability(99) == pytest.approx(0.30 + 0.70 * 89 / 90)
    assert limits.refusal_probability(100) == limits.refusal_probability(500) == 1.0
    draws = iter([0.29, 0.31])
    limits.chance = lambda: next(draws)
    for n in range(10):
        assert limits.admit(f"10.0.0.{n}") is None
    assert limits.admit("10.0.1.1") == "too many unauthenticated connections"  # 0.29 < 30 %
    assert limits.admit("10.0.1.2") is None  # 0.31 >= 30 %
    assert limits.unauthenticated == 11
    limits.chance = lambda: 0.999
    while limits.unauthenticated < 100:
        assert limits.refusal_probability(limits.unauthenticated) < 0.999
        assert limits.admit(f"10.1.{limits.unauthenticated}.1") is None
    assert limits.admit("10.2.0.1") == "too many unauthenticated connections"


def test_failure_tables_are_bounded_and_forget_quiet_entries():
    """Addresses and login names are the attacker's choice: the tables stay
    at `max_tracked` entries, keep a live penalty through a flood of new
    names, and forget entries whose penalty ended and that went quiet."""
    clock = Clock()
    limits = Limits(LimitSettings(max_tracked=50, penalty_after=3, penalty_seconds=5, account_max_failures=5,
                                  account_lock_seconds=60), clock=clock)
    for _ in range(5):
        limits.failed("6.6.6.6", "alice")
    for n in range(5000):
        limits.failed(f"10.{n // 250}.{n % 250}.1", f"user{n}")
        assert len(limits.sources) <= 50 and len(limits.accounts) <= 50
    assert limits.admit("6.6.6.6") is not None  # its penalty survived the flood
    assert limits.account_locked("alice")
    clock.now += 601  # every penalty ended, every entry quiet for longer than its window
    limits.failed("1.1.1.1", "bob")
    assert len(limits.sources) == 1 and len(limits.accounts) == 1
    assert limits.admit("6.6.6.6") is None and not limits.account_locked("alice")


def test_unauthenticated_flood_is_refused_then_admitted_again(panel):
    """Through the real server: raw TCP connections that never finish the
    handshake fill the per-source cap (10); the next connection is refused
    with the reason, and admitted again once they close."""
    alice = panel.users["alice"]
    holders = [socket.create_connection(("127.0.0.1", panel.port), timeout=10) for _ in range(10)]

    async def login() -> str:
        async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)],
                                    known_hosts=None, agent_path=None) as conn:
            return (await conn.run("whoami")).stdout

    try:
        for holder in holders:  # each is accepted: the server's banner comes
            assert holder.recv(64).startswith(b"SSH-2.0-")
        with pytest.raises(asyncssh.DisconnectError) as refused:
            asyncio.run(login())
        assert refused.value.code == asyncssh.DISC_TOO_MANY_CONNECTIONS
        assert refused.value.reason.startswith("too many unauthenticated connections from your address")
    finally:
        for holder in holders:
            holder.close()
    retry_until_admitted(login, "alice", "still refused after the holders closed")
