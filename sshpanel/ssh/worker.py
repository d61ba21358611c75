"""Provides the worker process of `serve --workers N` (issue 8): a
`PanelServer` that serves the connections its supervisor accepted and hands
over, and whose login limits are the supervisor's.

What is shared between the processes, and how:

- Admission (`MaxStartups`, unauthenticated connections per address,
  `PerSourcePenalties`) is decided by the supervisor before a connection
  is handed over; the worker reports each authentication, failure and
  early close back, so the supervisor's `Limits` see every connection.
- Account throttling: the supervisor counts the failures and tells every
  worker when an account is locked, and for how long.
- Sessions per user: one lock file per place (`SessionSlots`), so the
  count holds across processes and a dead worker's places come back.
- Closing a user's sessions (an admin disabled the user) reaches every
  worker through the supervisor.

Started as `python -m sshpanel.ssh.worker FD` with the settings in
`SSHPANEL_WORKER_SETTINGS` (`config.settings_to_json`) and the worker's end
of its link as descriptor FD.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import Callable

import asyncssh

from sshpanel.backend.locks import HeldLock, lock_path, try_lock
from sshpanel.config import Settings, settings_from_json
from sshpanel.ssh.hostkeys import load_or_create_host_key
from sshpanel.ssh.limits import LimitSettings
from sshpanel.ssh.link import Link
from sshpanel.ssh.server import PanelServer, session_limits

log = logging.getLogger("sshpanel.worker")

SETTINGS_ENV = "SSHPANEL_WORKER_SETTINGS"
"""Environment variable carrying a worker's settings."""


class SessionSlots:
    """Per-user session places shared by all panel processes: place `k` of a
    user is the lock file `session-USER-k`, held while the session is open.

    Args:
        data_dir: The data folder (lock files under `locks/`).
        per_user: Places per user (`LimitSettings.sessions_per_user`).
    """

    def __init__(self, data_dir, per_user: int) -> None:
        self.data_dir = data_dir
        self.per_user = per_user
        self._held: dict[str, list[HeldLock]] = {}

    def open_session(self, user: str) -> bool:
        """Takes a free place of `user`; False when all are taken."""
        for place in range(self.per_user):
            held = try_lock(lock_path(self.data_dir, f"session-{user}-{place}"))
            if held is not None:
                self._held.setdefault(user, []).append(held)
                return True
        return False

    def close_session(self, user: str) -> None:
        """Gives back one place of `user` taken by this process."""
        held = self._held.get(user)
        if held:
            held.pop().release()
            if not held:
                del self._held[user]


class WorkerLimits:
    """The `Limits` of a worker process: same methods, the supervisor's state.

    Args:
        settings: The numbers.
        slots: The per-user session places.
        send: Sends a message to the supervisor.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, settings: LimitSettings, slots: SessionSlots, send: Callable[[dict], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.slots = slots
        self._send = send
        self.clock = clock
        self._locked: dict[str, float] = {}

    def authenticated(self, source: str, account: str) -> None:
        """Reports a connection that authenticated (see `Limits.authenticated`)."""
        self._send({"op": "authenticated", "address": source, "account": account})

    def failed(self, source: str, account: str) -> None:
        """Reports one authentication failure."""
        self._send({"op": "failed", "address": source, "account": account})

    def lock(self, account: str, seconds: float) -> None:
        """Applies the supervisor's word that `account` is throttled for
        `seconds`; the table forgets ended locks, so it stays as small as
        the supervisor's own (`LimitSettings.max_tracked`)."""
        now = self.clock()
        if len(self._locked) >= self.settings.max_tracked:
            self._locked = {name: until for name, until in self._locked.items() if until > now}
        self._locked[account] = now + max(0.0, seconds)

    def account_locked(self, account: str) -> bool:
        """True while `account` is throttled (`Limits.account_locked`)."""
        until = self._locked.get(account)
        if until is None:
            return False
        if self.clock() >= until:
            del self._locked[account]
            return False
        return True

    def open_session(self, user: str) -> bool:
        """Counts a new session of `user` over all processes; False when over
        the per-user limit."""
        return self.slots.open_session(user)

    def close_session(self, user: str) -> None:
        """Releases a session counted by `open_session`."""
        self.slots.close_session(user)


class Handoff:
    """An asyncssh tunnel listener (`create_server(..., tunnel=)`) whose
    connections are sockets accepted by the supervisor, not a port."""

    sockets: list[socket.socket] = []

    def __init__(self) -> None:
        self._factory: Callable[[str, int], asyncio.Protocol] | None = None

    async def create_server(self, session_factory: Callable[[str, int], asyncio.Protocol],
                            listen_host: str, listen_port: int) -> "Handoff":
        """Called once by asyncssh with its connection factory."""
        self._factory = session_factory
        return self

    def accept(self, sock: socket.socket, failed: Callable[[], None]) -> None:
        """Serves an accepted socket; `failed` runs when it cannot be (after
        `close`, or the socket died before the SSH connection began)."""
        if self._factory is None:
            sock.close()
            failed()
            return
        asyncio.ensure_future(self._serve(sock, self._factory, failed))

    @staticmethod
    async def _serve(sock: socket.socket, factory: Callable[[str, int], asyncio.Protocol],
                     failed: Callable[[], None]) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: factory("", 0), sock)
        except OSError as exc:
            log.info("a handed-over connection failed: %s", exc)
            sock.close()
            failed()

    def get_port(self) -> int:
        return 0

    def get_addresses(self) -> list:
        return []

    def close(self) -> None:
        """Stops serving new sockets."""
        self._factory = None

    async def wait_closed(self) -> None:
        return None


class WorkerServer(PanelServer):
    """A `PanelServer` in a worker process.

    Args:
        settings: The supervisor's settings.
        sock: This worker's end of the link.
        index: The worker's number (0-based), for the log.
    """

    def __init__(self, settings: Settings, sock: socket.socket, index: int) -> None:
        super().__init__(settings)
        self.index = index
        self.handoff = Handoff()
        self.link = Link(sock, self._on_message, self._on_link_closed)
        self.limits = WorkerLimits(session_limits(settings), SessionSlots(settings.data_dir, settings.max_sessions_per_user),
                                   self.link.send)
        self._decided: dict[str, str | None] = {}
        self.gone = asyncio.Event()
        """Set when the supervisor has gone (the worker then stops)."""

    async def prepare(self) -> asyncssh.SSHKey:
        """The supervisor did the start-up work; events are listened to for
        the dashboards, recorded by the supervisor only."""
        self.events.start()
        key, _created = await asyncio.to_thread(load_or_create_host_key, self.settings.host_keys_dir)
        return key

    def listen_target(self) -> dict[str, object]:
        return {"tunnel": self.handoff}

    def listening(self) -> None:
        self.link.start()
        self.link.send({"op": "ready"})
        log.info("worker %d ready (pid %d)", self.index, os.getpid())

    def admit(self, address: str, source: str) -> str | None:
        """The supervisor's decision about this connection."""
        return self._decided.pop(source, None)

    def connection_ended(self, address: str, authenticated: bool) -> None:
        """Tells the supervisor an admitted connection closed."""
        self.link.send({"op": "closed" if authenticated else "released", "address": address})

    def close_user_sessions(self, name: str, reason: str) -> int:
        """Closes the user's connections here, and asks the supervisor to
        have every other worker do the same."""
        self.link.send({"op": "close-user", "name": name, "reason": reason})
        return self.close_local_sessions(name, reason)

    def close_local_sessions(self, name: str, reason: str) -> int:
        """Closes the user's connections in this process only."""
        return super().close_user_sessions(name, reason)

    def _on_message(self, message: dict, fds: list[int]) -> None:
        op = message.get("op")
        if op == "conn" and len(fds) == 1:
            sock = socket.socket(fileno=fds[0])
            try:
                host, port = sock.getpeername()[:2]
            except OSError:
                sock.close()
                return
            refusal = message.get("refusal")
            refusal = refusal if isinstance(refusal, str) else None
            source = f"{host}:{port}"
            self._decided[source] = refusal

            def failed() -> None:
                # Still decided: asyncssh never made the connection, so no
                # `connection_lost` will report it.
                if source in self._decided and self._decided.pop(source) is None:
                    self.connection_ended(host, authenticated=False)

            self.handoff.accept(sock, failed)
            return
        for fd in fds:
            os.close(fd)
        if op == "lock":
            self.limits.lock(str(message.get("account", "")), float(message.get("seconds", 0)))
        elif op == "close-user":
            self.close_local_sessions(str(message.get("name", "")), str(message.get("reason", "")))

    def _on_link_closed(self) -> None:
        self.gone.set()


async def serve_worker(settings: Settings, sock: socket.socket, index: int) -> int:
    """Runs one worker until SIGTERM/SIGINT or until its supervisor goes.

    Returns:
        The exit status.
    """
    server = WorkerServer(settings, sock, index)
    await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.gone.set)
    await server.gone.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m sshpanel.ssh.worker FD INDEX`."""
    args = sys.argv[1:] if argv is None else argv
    settings = settings_from_json(os.environ[SETTINGS_ENV])
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s[w{args[1]}]: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    sock = socket.socket(fileno=int(args[0]))
    return asyncio.run(serve_worker(settings, sock, int(args[1])))


if __name__ == "__main__":
    sys.exit(main())
