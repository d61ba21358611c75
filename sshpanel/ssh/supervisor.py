"""Provides `Supervisor`, the first process of `serve --workers N` (issue 8):
it does the start-up work once, records Docker events, accepts every
connection, applies the admission limits and hands each admitted
connection to the worker process with the fewest open connections
(`worker.py`).

One process serves sessions on one core; N workers use N. The supervisor
itself does little per connection (accept, one `Limits.admit`, one message)
so it never becomes the bottleneck. A worker that dies is started again;
the places it held in the limits are given back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import itertools
from dataclasses import dataclass, field

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.backend.user.disk import DiskWatch
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.config import MAX_WORKERS, Settings, settings_to_json
from sshpanel.errors import ConfigError
from sshpanel.ssh.certificates import UserCertificates
from sshpanel.ssh.limits import Limits
from sshpanel.ssh.link import Link, link_pair
from sshpanel.ssh.server import SHUTDOWN_GRACE
from sshpanel.ssh.startup import prepare_panel, session_limits
from sshpanel.ssh.throttle import SharedThrottle
from sshpanel.ssh.worker import SETTINGS_ENV
from sshpanel.store import open_store

log = logging.getLogger("sshpanel.supervisor")

BACKLOG = 512
"""Listen backlog: a burst of logins waits in the kernel, not refused."""
READY_TIMEOUT = 60.0
"""Seconds a worker may take to start."""
RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again; doubled after each
death within `STABLE_AFTER` of its start, up to `RESTART_MAX`."""
RESTART_MAX = 30.0
STABLE_AFTER = 10.0
ACCEPT_PAUSE = 1.0
"""Seconds accepting pauses when it fails (out of descriptors), as asyncio's
own servers do."""


@dataclass
class WorkerHandle:
    """The supervisor's view of one worker process.

    Attributes:
        index: Its number, 0-based.
        process: The process, once started.
        link: The message channel to it.
        ready: It serves connections.
        pending: Ticket → address of its admitted, not yet authenticated
            connections (each holds a place in `Limits`).
        live: Tickets of its open admitted connections.
        handed: Connections handed to it, ever (spreads ties).
        delay: Seconds before its next restart.
        started: Loop time of its last start.
    """

    index: int
    process: asyncio.subprocess.Process | None = None
    link: Link | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[int, str] = field(default_factory=dict)
    live: set[int] = field(default_factory=set)
    handed: int = 0
    delay: float = RESTART_DELAY
    started: float = 0.0


def check_workers(count: int) -> int:
    """Returns `count` when it is a usable number of workers.

    Raises:
        ConfigError: Below 1 or above `MAX_WORKERS`.
    """
    if not 1 <= count <= MAX_WORKERS:
        raise ConfigError(f"--workers {count}: must be between 1 and {MAX_WORKERS}")
    return count


class Supervisor:
    """Runs `settings.workers` worker processes behind one listening socket.

    Args:
        settings: Server settings (`workers` > 1).

    Attributes:
        port: The TCP port bound, after `start`.
    """

    def __init__(self, settings: Settings) -> None:
        """Raises:
            ConfigError: A bad number of workers, a session limit below 1,
                or an unusable CA keys or revocation file.
        """
        self.settings = settings
        self.engine = Engine(settings)
        self.events = EngineEvents(self.engine, settings)
        self.disk: DiskWatch | None = None
        """Disk measurements and their enforcement (the supervisor only)."""
        self.limits = Limits(session_limits(settings))
        UserCertificates(settings)  # an unusable CA or revocation file stops the start before any worker
        self.workers = [WorkerHandle(index) for index in range(check_workers(settings.workers))]
        self.port = 0
        self._listener: socket.socket | None = None
        self._stopping = False
        self._watchers: set[asyncio.Future] = set()
        self._tickets = itertools.count(1)
        self._throttle: asyncio.Task | None = None

    async def start(self) -> None:
        """Does the start-up work, starts the workers, then binds the port
        and accepts.

        Raises:
            ConfigError: Database or host key unusable, a worker did not
                start, or the engine does not remap user namespaces while
                `require_unprivileged` is set.
            EngineUnavailable: The Docker engine does not answer.
            OSError: The port cannot be bound (e.g. in use).
        """
        store = await asyncio.to_thread(open_store, self.settings)
        self.engine.names_lock = store.locks.mutex("names")
        if store.shared:  # account failures add up over every host
            self.limits.throttle = throttle = SharedThrottle(store, self.limits.settings)
            self._throttle = asyncio.ensure_future(throttle.run(self._announce_lock))
        await prepare_panel(self.settings, store, Accounts(store, self.settings), self.engine)
        self.events.start(store)
        self.disk = DiskWatch(store, self.engine, self.settings, self.settings.disk_interval)
        self.disk.start()
        self._listener = self._bind()
        for handle in self.workers:
            await self._spawn(handle)
        try:
            await asyncio.wait_for(asyncio.gather(*(handle.ready.wait() for handle in self.workers)), READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise ConfigError("the worker processes did not start; see the log above") from None
        asyncio.get_running_loop().add_reader(self._listener, self._accept)
        log.info("listening on %s:%d with %d workers", self.settings.listen, self.port, len(self.workers))

    def _bind(self) -> socket.socket:
        family = socket.getaddrinfo(self.settings.listen, self.settings.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        listener = socket.create_server((self.settings.listen, self.settings.port), family=family, backlog=BACKLOG)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        return listener

    async def _spawn(self, handle: WorkerHandle) -> None:
        """Starts the worker of `handle` with a new link.

        Raises:
            OSError: The process cannot be started.
        """
        ours, theirs = link_pair()
        env = dict(os.environ)
        env[SETTINGS_ENV] = settings_to_json(self.settings)
        try:
            handle.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sshpanel.ssh.worker", str(theirs.fileno()), str(handle.index),
                pass_fds=[theirs.fileno()], env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        handle.started = asyncio.get_running_loop().time()
        handle.link = Link(ours, lambda message, fds: self._on_message(handle, message, fds),
                           lambda: handle.ready.clear())
        handle.link.start()
        if self._stopping:  # SIGTERM came while it was starting
            handle.process.send_signal(signal.SIGTERM)
        watcher = asyncio.ensure_future(self._watch(handle))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, handle: WorkerHandle) -> None:
        """Waits for the worker's exit; gives back its places and, unless
        stopping, starts it again (later and later while it keeps dying
        soon after its start)."""
        assert handle.process is not None
        status = await handle.process.wait()
        if handle.link is not None:
            handle.link.close()
        handle.ready.clear()
        for address in handle.pending.values():
            self.limits.released(address)
        handle.pending.clear()
        handle.live.clear()
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if loop.time() - handle.started < STABLE_AFTER:
                handle.delay = min(handle.delay * 2, RESTART_MAX)
            else:
                handle.delay = RESTART_DELAY
            log.warning("worker %d exited with status %s; starting it again in %g s", handle.index, status,
                        handle.delay)
            await asyncio.sleep(handle.delay)
            if self._stopping:
                return
            try:
                await self._spawn(handle)
                return
            except OSError as exc:
                status = f"unknown (cannot start it: {exc})"
                handle.started = loop.time()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of descriptors: clients wait in the backlog
                log.warning("accept failed: %s; pausing %g s", exc, ACCEPT_PAUSE)
                loop = asyncio.get_running_loop()
                loop.remove_reader(self._listener)
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                return
            with conn:
                self._hand_over(conn, str(peer[0]))

    def _resume_accepting(self) -> None:
        if not self._stopping and self._listener is not None:
            asyncio.get_running_loop().add_reader(self._listener, self._accept)

    def _hand_over(self, conn: socket.socket, address: str) -> None:
        """Decides on one accepted connection and passes it to the worker with
        the fewest open connections (a refused one too: the worker tells the
        client why in SSH terms)."""
        ready = [handle for handle in self.workers if handle.ready.is_set() and handle.link is not None]
        if not ready:
            log.info("connection from %s dropped: no worker is ready", address)
            return
        refusal = self.limits.admit(address)
        handle = min(ready, key=lambda item: (len(item.live), len(item.pending), item.handed))
        assert handle.link is not None
        ticket = next(self._tickets) if refusal is None else None
        handle.link.send({"op": "conn", "ticket": ticket, "refusal": refusal}, [conn.fileno()])
        handle.handed += 1
        if ticket is not None:
            handle.pending[ticket] = address
            handle.live.add(ticket)

    def _on_message(self, handle: WorkerHandle, message: dict, fds: list[int]) -> None:
        """Applies one report of a worker to the limits."""
        for fd in fds:
            os.close(fd)
        if not isinstance(message, dict):
            return
        op, ticket = message.get("op"), message.get("ticket")
        if op == "ready":
            handle.ready.set()
            refusing = self.limits.accounts.refusing()  # a new worker knows no lock yet
            if isinstance(self.limits.throttle, SharedThrottle):
                refusing += self.limits.throttle.refusing()
            for account, seconds in refusing:
                handle.link.send({"op": "lock", "account": account, "seconds": seconds})
        elif op in ("authenticated", "released") and ticket in handle.pending:
            address = handle.pending.pop(ticket)
            if op == "authenticated":
                self.limits.authenticated(address, str(message.get("account", "")))
            else:
                self.limits.released(address)
                handle.live.discard(ticket)
        elif op == "closed":
            handle.live.discard(ticket)
        elif op == "failed":
            self._failed(str(message.get("address", "")), str(message.get("account", "")))
        elif op == "close-user":
            for other in self.workers:
                if other is not handle and other.link is not None:
                    other.link.send(message)

    def _failed(self, address: str, account: str) -> None:
        """Counts a failure; an account that becomes throttled is announced
        to every worker."""
        before = self.limits.accounts.get(account)
        until_before = before.until if before is not None else 0.0
        self.limits.failed(address, account)
        after = self.limits.accounts.get(account)
        if after is not None and after.until > until_before:
            self._announce_lock(account, after.until - self.limits.clock())

    def _announce_lock(self, account: str, seconds: float) -> None:
        """Tells every worker that `account` is throttled for `seconds`."""
        for handle in self.workers:
            if handle.link is not None:
                handle.link.send({"op": "lock", "account": account, "seconds": seconds})

    async def stop(self) -> None:
        """Stops accepting, asks every worker to end its sessions and exit
        (SIGTERM, as `PanelServer.stop`), waits, then stops the recorder."""
        self._stopping = True
        if self._throttle is not None:
            self._throttle.cancel()
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener)
            self._listener.close()
            log.info("stopped accepting connections")
        running = [handle.process for handle in self.workers if handle.process and handle.process.returncode is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        if running:
            _done, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running],
                                             timeout=SHUTDOWN_GRACE + 10)
            for process in running:
                if process.returncode is None:
                    process.kill()
            if late:
                await asyncio.wait(late)
        while self._watchers:  # a restart under way ends too (`_spawn`)
            await asyncio.wait(list(self._watchers))
        self.events.stop()
        if self.disk is not None:
            await asyncio.to_thread(self.disk.stop)
        await asyncio.to_thread(self.engine.close)
