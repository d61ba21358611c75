"""Provides the asyncssh server: hardened options, public-key authentication
bound to the key that actually signed, and `PanelServer`, which serves one
store and owns the engine and the events listener for the life of the
process."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable
import asyncssh

from sshpanel.access.principal import Principal
from sshpanel.backend.admin.accounts import Accounts
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.forwarding import Forwards
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.backend.admin.passwords import BCRYPT_SLOTS, Passwords
from sshpanel.backend.user.disk import DiskWatch
from sshpanel.backend.engine.stats import StatsCollector
from sshpanel.config import Settings
from sshpanel.errors import DatabaseUnavailable
from sshpanel.ssh import session
from sshpanel.ssh.algorithms import server_algorithms
from sshpanel.ssh.certificates import UserCertificates, check_offers
from sshpanel.ssh.channel_codec import prepare_channel
from sshpanel.ssh.forwarding import REFUSED, ForwardSession, open_forward
from sshpanel.ssh.limits import Limits, SessionSlots
from sshpanel.ssh.services import SessionServices
from sshpanel.ssh.session_channel import ENCODING, ERRORS, LINE_EDITOR, AllowListChannel, SlotProcess
from sshpanel.ssh.sftp import open_home_sftp
from sshpanel.ssh.startup import prepare_panel, session_limits
from sshpanel.ssh.tcp import acknowledge_at_once
from sshpanel.ssh.throttle import SharedThrottle
from sshpanel.store import Store

log = logging.getLogger("sshpanel.ssh")

KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_COUNT_MAX = 4
NO_FORWARDING = "port forwarding is disabled on this server"
SHUTTING_DOWN = "the panel is shutting down"
SHUTDOWN_GRACE = 2.0
"""Seconds clients get, at shutdown, to hang up after their sessions ended."""
TOO_MANY_SESSIONS = "sshpanel: too many open sessions; close one and try again"
TOO_MANY_FORWARDS = "too many open forwarded connections; close one and try again"
ACCOUNTS_INTERVAL = 2.0
"""Seconds between two reads of which connected users are still enabled,
on a database several hosts share (`PanelServer.watch_accounts`)."""
DISABLED = "your account was disabled"


class PanelServer:
    """The running panel: one per process.

    Args:
        settings: Server settings.
        store: The open database (`sshpanel.store.open_store`); the caller
            closes it after `stop`.

    Attributes:
        port: The TCP port actually bound (useful with port 0), after `start`.
        services: What every session of this process is served with.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        """Raises:
            ConfigError: A session limit below 1, or an unusable CA keys or
                revocation file (`UserCertificates`).
        """
        self.settings = settings
        self.store = store
        self.certificates = UserCertificates(settings)
        """Trusted user CAs and revoked keys (issue 24)."""
        self.engine = Engine(settings, names_lock=store.locks.mutex("names"))
        self.events = EngineEvents(self.engine, settings)
        self.stats = StatsCollector(self.engine, settings, events=self.events)
        self.disk = DiskWatch(store, self.engine, settings, settings.disk_interval)
        """Disk measurements and their enforcement (started by the serving
        process only, in `prepare`)."""
        self.accounts = Accounts(store, settings)
        self.passwords = Passwords(store)
        self.port = 0
        self._server: asyncssh.SSHAcceptor | None = None
        self.connections: set[PanelSSHServer] = set()
        limits = session_limits(settings)
        self.throttle = SharedThrottle(store, limits) if store.shared else None
        """Account throttling over every host (a shared database only)."""
        self.limits = Limits(limits, slots=SessionSlots(store.locks, limits.sessions_per_user) if store.shared else None,
                             throttle=self.throttle)
        # Bounds the executor threads password checks hold, so a burst of
        # attempts cannot starve the Docker calls of every session.
        self.password_slots = asyncio.Semaphore(BCRYPT_SLOTS)
        self.services = SessionServices(
            settings, store, self.engine, self.events, self.stats, self.passwords, self.close_user_sessions
        )
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Checks the engine, binds the port.

        Raises:
            ConfigError: Host key unusable, or the engine does not remap
                user namespaces while `require_unprivileged` is set.
            EngineUnavailable: The Docker engine does not answer.
            OSError: The port cannot be bound (e.g. in use).
        """
        if self.settings.password_auth:
            await asyncio.to_thread(self.passwords.prepare)
        key = await self.prepare()
        # Session channels are opened by `PanelSSHServer.session_requested`
        # (environment allow-list, session limits); legacy scp (`scp -O`)
        # stays off there: OpenSSH 9 runs scp over SFTP, the one confined
        # path (issue 6).
        self._server = await asyncssh.create_server(
            lambda: PanelSSHServer(self),
            server_host_keys=[key],
            encoding=ENCODING,
            errors=ERRORS,
            line_editor=LINE_EDITOR,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            login_timeout=self.settings.login_grace_time,
            keepalive_interval=KEEPALIVE_INTERVAL,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
            server_version="sshpanel",
            **self.listen_target(),
            **server_algorithms(),
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        if self.store.shared:
            self._tasks.append(asyncio.ensure_future(self.watch_accounts()))
        if self.throttle is not None:
            self._tasks.append(asyncio.ensure_future(self.throttle.run()))
        self.listening()

    async def watch_accounts(self, interval: float = ACCOUNTS_INTERVAL) -> None:
        """Closes, every `interval` seconds, the connections here of users
        that are disabled or removed: on a database several hosts share, an
        admin's `user disable` on another host ends their sessions here
        too (issue 19). One query per round, for the users connected here."""
        warned = False
        while True:
            await asyncio.sleep(interval)
            names = {conn.principal.name for conn in self.connections if conn.principal is not None}
            if not names:
                continue
            try:
                enabled = await asyncio.to_thread(self.store.enabled_users, names)
            except DatabaseUnavailable as exc:
                if not warned:
                    log.warning("cannot read which users are disabled: %s", exc.reason)
                warned = True
                continue
            warned = False
            for name in sorted(names - enabled):
                PanelServer.close_user_sessions(self, name, DISABLED)

    async def prepare(self) -> asyncssh.SSHKey:
        """The start-up work of the one process serving (a worker process
        of `serve --workers` does less: `worker.WorkerServer`): `prepare_panel`,
        then the events listener with its recorder.

        Returns:
            The host key.
        """
        key = await prepare_panel(self.settings, self.store, self.accounts, self.engine)
        self.events.start(self.store)
        self.disk.start()
        return key

    def listen_target(self) -> dict[str, object]:
        """Where connections come from: `asyncssh.create_server`'s address
        arguments (a worker process receives them from its supervisor)."""
        return {"host": self.settings.listen, "port": self.settings.port}

    def listening(self) -> None:
        """Logs that the server accepts connections (tests and scripts wait
        for this line)."""
        log.info("listening on %s:%d", self.settings.listen, self.port)

    def admit(self, client: "PanelSSHServer") -> str | None:
        """Decides whether a new connection may proceed (`Limits.admit` of
        its address); the hooks below see it through its life.

        Returns:
            None to admit, else the reason of the refusal.
        """
        return self.limits.admit(client.address)

    def client_authenticated(self, client: "PanelSSHServer") -> None:
        """An admitted connection authenticated (`Limits.authenticated`)."""
        assert client.principal is not None
        self.limits.authenticated(client.address, client.principal.name)

    def connection_ended(self, client: "PanelSSHServer") -> None:
        """An admitted connection closed: one that never authenticated gives
        its place back (`Limits.released`)."""
        if client.principal is None:
            self.limits.released(client.address)

    def open_process(self, process: asyncssh.SSHServerProcess) -> Awaitable[None]:
        """The process factory of session channels: exec, shell and unknown
        subsystems (`session.handle_process`).

        asyncssh calls it before decoding the channel's first input (it
        resumes reading right after this returns), so the codec is set here.
        """
        prepare_channel(process)
        return session.handle_process(self.services, process)

    def open_sftp(self, chan: asyncssh.SSHServerChannel) -> Awaitable[object]:
        """The SFTP factory of session channels (`sftp.open_home_sftp`)."""
        return open_home_sftp(self.services, self.limits, chan)

    def close_user_sessions(self, name: str, reason: str) -> int:
        """Disconnects every live connection of user `name` (on the loop thread;
        from a worker use `loop.call_soon_threadsafe`).

        Returns:
            How many connections were closed.
        """
        closing = [conn for conn in self.connections if conn.principal is not None and conn.principal.name == name]
        for conn in closing:
            conn.close(reason)
        if closing:
            log.info("closed %d connection(s) of user=%s: %s", len(closing), name, reason)
        return len(closing)

    async def stop(self) -> None:
        """Stops accepting connections, tells every open session why it ends,
        closes every connection, then stops the engine services (issue 7,
        SIGTERM)."""
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            log.info("stopped accepting connections")
        # A client drops what it has not written out yet when the disconnect
        # arrives (OpenSSH does), so sessions are ended first and their
        # clients get a moment to print the message and hang up themselves.
        closing = []
        for conn in list(self.connections):
            if conn.end_sessions(f"\r\nsshpanel: {SHUTTING_DOWN}\r\n") and conn.conn is not None:
                closing.append(asyncio.ensure_future(conn.conn.wait_closed()))
            else:
                conn.close(SHUTTING_DOWN)
        if closing:
            await asyncio.wait(closing, timeout=SHUTDOWN_GRACE)
        for conn in list(self.connections):
            conn.close(SHUTTING_DOWN)
        if self._server is not None:
            await self._server.wait_closed()
        self.events.stop()
        await asyncio.to_thread(self.disk.stop)
        await asyncio.to_thread(self.stats.stop)
        await asyncio.to_thread(self.engine.close)


class PanelSSHServer(asyncssh.SSHServer):
    """Per-connection state: source address, failed attempts, and the
    principal bound to the key that authenticated."""

    def __init__(self, panel: PanelServer) -> None:
        self.panel = panel
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = ""
        self.principal: Principal | None = None
        self._candidate: Principal | None = None
        self._failures = 0
        self._admitted = False
        self.ticket: int | None = None
        """The supervisor's number for this connection (`serve --workers`)."""
        self.sessions = 0
        self.processes: set[SlotProcess] = set()
        """Session channels open on this connection."""

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        acknowledge_at_once(conn)
        check_offers(conn, self._check_offer)
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.address = str(peer[0])
        self.source = f"{peer[0]}:{peer[1]}"
        self.panel.connections.add(self)
        refusal = self.panel.admit(self)
        if refusal is not None:
            log.info("connection from %s refused: %s", self.source, refusal)
            asyncio.get_running_loop().call_soon(
                conn.disconnect, asyncssh.DISC_TOO_MANY_CONNECTIONS, refusal
            )
            return
        self._admitted = True
        log.info("connection from %s", self.source)

    def connection_lost(self, exc: Exception | None) -> None:
        self.panel.connections.discard(self)
        if self._admitted:
            self.panel.connection_ended(self)
        who = self.principal.name if self.principal else "-"
        log.info("connection closed user=%s source=%s", who, self.source)

    def end_sessions(self, text: str) -> bool:
        """Writes `text` to the standard error of every open session channel
        of this connection, then ends each with exit status 1.

        Returns:
            True when there was a session to end.
        """
        processes = list(self.processes)
        for process in processes:
            try:
                process.channel.write_stderr(text)
                process.exit(1)
            except Exception:  # the channel is already closing
                pass
        return bool(processes)

    def close(self, reason: str) -> None:
        """Disconnects the client with a reason."""
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)

    def session_requested(self) -> tuple[AllowListChannel, SlotProcess]:
        """Opens a session channel holding one place in the per-connection and
        per-user session limits until it closes, started or not.

        Raises:
            asyncssh.ChannelOpenError: Not authenticated, or over a limit
                (the client sees "administratively prohibited" and why).
        """
        principal, limits, conn = self.principal, self.panel.limits, self.conn
        if principal is None or conn is None:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "not authenticated")
        if self.sessions >= limits.settings.sessions_per_connection or not limits.open_session(principal.name):
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, TOO_MANY_SESSIONS)
        self.sessions += 1

        def release() -> None:
            self.sessions -= 1
            self.processes.discard(process)
            limits.close_session(principal.name)

        process = SlotProcess(self.panel.open_process, self.panel.open_sftp, release)
        self.processes.add(process)
        return AllowListChannel(conn), process

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> Awaitable[ForwardSession]:
        """Answers `direct-tcpip` (`ssh -L`, `ssh -D`, `ssh -W`): a forward to
        a port of one of the user's own running containers (`open_forward`),
        holding a place in the per-user forward limit until it ends; every
        other destination is refused (issue 25).

        Returns:
            The coroutine asyncssh awaits before it confirms the channel.

        Raises:
            asyncssh.ChannelOpenError: Not authenticated or forwarding off
                (`SSHPANEL_FORWARDING=0`): "administratively prohibited",
                `NO_FORWARDING`; over the limit: "resource shortage".
        """
        principal, panel = self.principal, self.panel
        if principal is None or self.conn is None or not panel.settings.forwarding:
            log.info("refused tcp forwarding to %r port %d source=%s", dest_host[:64], dest_port, self.source)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, NO_FORWARDING)
        if not panel.limits.open_forward(principal.name):
            log.info("refused tcp forwarding user=%s: too many forwards", principal.name)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE, TOO_MANY_FORWARDS)
        forwards = Forwards(panel.services.workspace(principal))
        return open_forward(forwards, self.conn, dest_host, dest_port,
                            lambda: panel.limits.close_forward(principal.name))

    def unix_connection_requested(self, dest_path: str) -> bool:
        """Refuses `direct-streamlocal` (`ssh -L PORT:/path/to.sock`), which
        would otherwise reach e.g. the Docker socket.

        Raises:
            asyncssh.ChannelOpenError: Always, "administratively prohibited":
                `NO_FORWARDING` when forwarding is off, else the message of
                every refused TCP destination.
        """
        log.info("refused unix socket forwarding to %r source=%s", dest_path[:64], self.source)
        reason = REFUSED if self.panel.settings.forwarding else NO_FORWARDING
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, reason)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """Refuses `tcpip-forward` (`ssh -R`)."""
        log.info("refused remote forwarding of %r port %d source=%s", listen_host[:64], listen_port, self.source)
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        """Refuses `streamlocal-forward` (`ssh -R /path/to.sock:...`)."""
        log.info("refused remote unix socket forwarding of %r source=%s", listen_path[:64], self.source)
        return False

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self.panel.settings.password_auth

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Accepts only a key registered to `username` itself.

        asyncssh calls this for every key the client *offers* and again for
        the key it signs with, right before verifying the signature; so the
        last accepted candidate when authentication completes is the signing
        key, and no key of another user is ever accepted (soft-serve
        GHSA-pchf-49fh-w34r, Go CVE-2024-45337).

        A throttled account goes through the same key lookup and is refused
        after it, so its answer takes no less time than any other refusal
        and does not tell that the account exists and is locked.
        """
        accounts = self.panel.accounts
        try:
            principal = await asyncio.to_thread(accounts.authenticate_key, username, key.public_data, self.source)
        except Exception as exc:
            return self._auth_error(username, exc)
        return self._settle(username, None if self.panel.limits.account_locked(username) else principal)

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Accepts a certificate's CA when it is one of `SSHPANEL_USER_CA_KEYS`;
        asyncssh then checks the certificate itself, and `_check_offer`
        decides who logs in (`sshpanel.ssh.certificates`)."""
        return self.panel.certificates.trusted_ca(key)

    async def _check_offer(self, username: str, key_data: bytes, signed: bool,
                           validate: Callable[[], Awaitable[bool]]) -> bool:
        """Decides on one offered key or certificate (`certificates.check_offers`).

        A revoked key, or a certificate that is revoked (its key or its CA)
        or names no principal, is refused before asyncssh looks at it. A
        plain key then goes to asyncssh, which calls `validate_public_key`.
        A certificate goes to asyncssh's checks (`validate_ca_key`, type,
        validity, principals, `source-address`, the signature); only once
        they passed with a signature is the user looked up (or created, with
        `SSHPANEL_CERT_AUTO_CREATE`), so the identity is bound to the
        certificate that signed, and a refused certificate counts as a
        failed attempt as a refused key does.
        """
        offer = await asyncio.to_thread(self.panel.certificates.screen, key_data)
        what = offer.certified.describe() if offer.certified else "key"
        if offer.refusal is not None:
            log.info("%s refused user=%r source=%s: %s", what, username[:32], self.source, offer.refusal)
            return self._settle(username, None)
        if offer.certified is None:
            return await validate()
        if not await validate():
            log.info("%s refused user=%r source=%s: %s", what, username[:32], self.source,
                     self.panel.certificates.why_refused(offer, username))
            return self._settle(username, None)
        if not signed:
            return True
        settings, certified = self.panel.settings, offer.certified
        try:
            principal = await asyncio.to_thread(
                self.panel.accounts.authenticate_certificate, username, certified.fingerprint, what, self.source,
                settings.cert_auto_create,
            )
        except Exception as exc:
            return self._auth_error(username, exc)
        if principal is None:
            log.info("%s refused user=%r source=%s: no such user, or disabled", what, username[:32], self.source)
        return self._settle(username, None if self.panel.limits.account_locked(username) else principal)

    async def validate_password(self, username: str, password: str) -> bool:
        """Checks a password (only offered when `Settings.password_auth` is on)
        with bcrypt in a worker thread, at most `BCRYPT_SLOTS` at a time; a
        throttled account is checked too, then refused."""
        passwords = self.panel.passwords
        principal = None
        if self.panel.settings.password_auth:
            # A throttled account pays the same bcrypt check (see above).
            async with self.panel.password_slots:
                try:
                    principal = await asyncio.to_thread(passwords.authenticate, username, password, self.source)
                except Exception as exc:
                    return self._auth_error(username, exc)
        return self._settle(username, None if self.panel.limits.account_locked(username) else principal)

    def _auth_error(self, username: str, exc: Exception) -> bool:
        """Logs at WARNING why an attempt could not be checked (asyncssh logs
        an exception leaving an auth callback at DEBUG only, 2.24.1) and
        closes the connection with a reason; returns False."""
        unavailable = isinstance(exc, DatabaseUnavailable)
        log.warning("login failed user=%r source=%s: %s", username[:32], self.source,
                    f"database unavailable: {exc.reason}" if unavailable else repr(exc),
                    exc_info=None if unavailable else exc)
        self.close(exc.message if unavailable else "internal error, try again later")
        return False

    def _settle(self, username: str, principal: Principal | None) -> bool:
        """Records the outcome of one authentication attempt; True on success."""
        if principal is None:
            self._candidate = None
            self._failures += 1
            self.panel.limits.failed(self.address, username)
            if self._failures >= self.panel.settings.max_auth_tries:
                log.info("too many authentication failures user=%r source=%s", username[:32], self.source)
                self.close("too many authentication failures")
            return False
        self._candidate = principal
        return True

    def auth_completed(self) -> None:
        self.principal = self._candidate
        assert self.principal is not None
        self.panel.client_authenticated(self)
        log.info(
            "auth ok user=%s key=%s source=%s%s", self.principal.name, self.principal.fingerprint, self.source,
            f" {self.principal.certificate}" if self.principal.certificate else "",
        )
        asyncio.get_running_loop().run_in_executor(None, self.panel.accounts.record_login, self.principal)

