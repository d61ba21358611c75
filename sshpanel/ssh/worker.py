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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import asyncssh

from sshpanel.backend.locks import HeldLock, lock_path, try_lock
from sshpanel.config import Settings, settings_from_json
from sshpanel.ssh.hostkeys import load_or_create_host_key
from sshpanel.ssh.limits import LimitSettings
from sshpanel.ssh.link import Link
from sshpanel.ssh.server import PanelServer, PanelSSHServer
from sshpanel.ssh.startup import session_limits
from sshpanel.store import Store, open_store

log = logging.getLogger("sshpanel.worker")

SETTINGS_ENV = "SSHPANEL_WORKER_SETTINGS"
"""Environment variable carrying a worker's settings."""


class SessionSlots:
    """Per-user places shared by all panel processes: place `k` of a user is
    the lock file `KIND-USER-k`, held while the session (or the forwarded
    connection) is open.

    Args:
        data_dir: The data folder (lock files under `locks/`).
        per_user: Places per user (`LimitSettings.sessions_per_user`, or
            `forwards_per_user`).
        kind: What is counted, the lock files' prefix: `session` or `forward`.
    """

    def __init__(self, data_dir: Path, per_user: int, kind: str = "session") -> None:
        self.data_dir = data_dir
        self.per_user = per_user
        self.kind = kind
        self._held: dict[str, list[HeldLock]] = {}

    def open_session(self, user: str) -> bool:
        """Takes a free place of `user`; False when all are taken (or the
        lock files cannot be opened: refused rather than uncounted)."""
        for place in range(self.per_user):
            try:
                held = try_lock(lock_path(self.data_dir, f"{self.kind}-{user}-{place}"))
            except OSError as exc:
                log.warning("%s place of user=%s unavailable: %s", self.kind, user, exc)
                return False
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
        forwards: The per-user places of forwarded connections.
        send: Sends a message to the supervisor.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, settings: LimitSettings, slots: SessionSlots, forwards: SessionSlots,
                 send: Callable[[dict], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.slots = slots
        self.forwards = forwards
        self._send = send
        self.clock = clock
        self._locked: dict[str, float] = {}

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

    def open_forward(self, user: str) -> bool:
        """Counts a new forwarded connection of `user` over all processes;
        False when over the per-user limit."""
        return self.forwards.open_session(user)

    def close_forward(self, user: str) -> None:
        """Releases a forwarded connection counted by `open_forward`."""
        self.forwards.close_session(user)


@dataclass(frozen=True)
class Decision:
    """The supervisor's word on one handed-over connection.

    Attributes:
        ticket: Its number in the supervisor's counts; None when refused.
        refusal: Why it is refused, or None when admitted.
    """

    ticket: int | None
    refusal: str | None


NOT_HANDED = "this connection was not admitted"
"""Refusal of a connection no decision came with (never expected)."""


class Handoff:
    """An asyncssh tunnel listener (`create_server(..., tunnel=)`) whose
    connections are sockets accepted by the supervisor, not a port.

    Args:
        lost: Called with the decision of a socket that never became an SSH
            connection (so no `connection_lost` will report it).
    """

    def __init__(self, lost: Callable[[Decision], None]) -> None:
        self._lost = lost
        self._factory: Callable[[str, int], asyncio.Protocol] | None = None
        self._decisions: dict[object, Decision] = {}
        self._tasks: set[asyncio.Future] = set()

    @property
    def sockets(self) -> list[socket.socket]:
        """No listening socket of its own (`SSHAcceptor.sockets`)."""
        return []

    async def create_server(self, session_factory: Callable[[str, int], asyncio.Protocol],
                            listen_host: str, listen_port: int) -> "Handoff":
        """Called once by asyncssh with its connection factory."""
        self._factory = session_factory
        return self

    def accept(self, sock: socket.socket, decision: Decision) -> None:
        """Serves an accepted socket under the supervisor's decision."""
        if self._factory is None:
            sock.close()
            self._lost(decision)
            return
        task = asyncio.ensure_future(self._serve(sock, self._factory, decision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, sock: socket.socket, factory: Callable[[str, int], asyncio.Protocol],
                     decision: Decision) -> None:
        made: list[object] = []

        def make() -> asyncio.Protocol:
            conn = factory("", 0)
            self._decisions[conn] = decision
            made.append(conn)
            return conn

        try:
            await asyncio.get_running_loop().connect_accepted_socket(make, sock)
        except OSError as exc:
            log.info("a handed-over connection failed: %s", exc)
            sock.close()
            if not made or self._decisions.pop(made[0], None) is not None:
                self._lost(decision)

    def decision(self, conn: object) -> Decision | None:
        """Takes the decision of the SSH connection `conn` (once)."""
        return self._decisions.pop(conn, None)

    def get_port(self) -> int:
        """No port of its own (`SSHAcceptor.get_port`)."""
        return 0

    def get_addresses(self) -> list:
        """No address of its own (`SSHAcceptor.get_addresses`)."""
        return []

    def close(self) -> None:
        """Stops serving new sockets."""
        self._factory = None

    async def wait_closed(self) -> None:
        """Nothing to wait for: the supervisor owns the listening socket."""
        return None


class WorkerServer(PanelServer):
    """A `PanelServer` in a worker process.

    Args:
        settings: The supervisor's settings.
        store: The open database, shared with the supervisor.
        sock: This worker's end of the link.
        index: The worker's number (0-based), for the log.
    """

    def __init__(self, settings: Settings, store: Store, sock: socket.socket, index: int) -> None:
        super().__init__(settings, store)
        self.index = index
        self.handoff = Handoff(self._lost)
        self.link = Link(sock, self._on_message, self._on_link_closed)
        limits = session_limits(settings)
        self.limits = WorkerLimits(limits, SessionSlots(settings.data_dir, limits.sessions_per_user),
                                   SessionSlots(settings.data_dir, limits.forwards_per_user, "forward"), self.link.send)
        self.gone = asyncio.Event()
        """Set when the supervisor has gone (the worker then stops)."""

    async def prepare(self) -> asyncssh.SSHKey:
        """The supervisor did the start-up work; events are listened to for
        the dashboards, recorded by the supervisor only."""
        self.events.start()
        key, _created = await asyncio.to_thread(load_or_create_host_key, self.settings.host_keys_dir)
        return key

    def listen_target(self) -> dict[str, object]:
        """Connections come from the supervisor (`Handoff`)."""
        return {"tunnel": self.handoff}

    def listening(self) -> None:
        """Starts the link and tells the supervisor this worker is ready."""
        self.link.start()
        self.link.send({"op": "ready"})
        log.info("worker %d ready (pid %d)", self.index, os.getpid())

    def admit(self, client: PanelSSHServer) -> str | None:
        """The supervisor's decision about this connection (refused when
        none came with it)."""
        decision = self.handoff.decision(client.conn)
        if decision is None:
            return NOT_HANDED
        client.ticket = decision.ticket
        return decision.refusal

    def client_authenticated(self, client: PanelSSHServer) -> None:
        """Reports the authentication to the supervisor (its `Limits`)."""
        assert client.principal is not None
        self.link.send({"op": "authenticated", "ticket": client.ticket, "account": client.principal.name})

    def connection_ended(self, client: PanelSSHServer) -> None:
        """Reports the close to the supervisor."""
        self.link.send({"op": "closed" if client.principal is not None else "released", "ticket": client.ticket})

    def _lost(self, decision: Decision) -> None:
        if decision.ticket is not None:
            self.link.send({"op": "released", "ticket": decision.ticket})

    def close_user_sessions(self, name: str, reason: str) -> int:
        """Closes the user's connections here, and asks the supervisor to
        have every other worker do the same."""
        self.link.send({"op": "close-user", "name": name, "reason": reason})
        return self.close_local_sessions(name, reason)

    def close_local_sessions(self, name: str, reason: str) -> int:
        """Closes the user's connections in this process only."""
        return super().close_user_sessions(name, reason)

    def _on_message(self, message: dict, fds: list[int]) -> None:
        op = message.get("op") if isinstance(message, dict) else None
        if op == "conn":
            ticket, refusal = message.get("ticket"), message.get("refusal")
            decision = Decision(ticket if isinstance(ticket, int) else None,
                                refusal if isinstance(refusal, str) else None)
            if len(fds) == 1:
                self.handoff.accept(socket.socket(fileno=fds[0]), decision)
                return
            self._lost(decision)  # the descriptor did not come (e.g. none left here)
        for fd in fds:
            os.close(fd)
        if op == "lock":
            self.limits.lock(str(message.get("account", "")), float(message.get("seconds", 0)))
        elif op == "close-user":
            self.close_local_sessions(str(message.get("name", "")), str(message.get("reason", "")))

    def _on_link_closed(self) -> None:
        self.gone.set()


async def serve_worker(settings: Settings, sock: socket.socket, index: int) -> int:
    """Runs one worker until SIGTERM or until its supervisor goes (SIGINT,
    e.g. Ctrl+C reaching the whole process group, is left to the supervisor,
    which then stops the workers in order).

    Returns:
        The exit status.
    """
    server = WorkerServer(settings, await asyncio.to_thread(open_store, settings), sock, index)
    await server.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, server.gone.set)
    await server.gone.wait()
    await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m sshpanel.ssh.worker FD INDEX`."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
