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
from collections import Counter
from dataclasses import dataclass, field

from sshpanel.backend.accounts import Accounts
from sshpanel.backend.engine import Engine
from sshpanel.backend.events import EngineEvents
from sshpanel.config import MAX_WORKERS, Settings, settings_to_json
from sshpanel.errors import ConfigError
from sshpanel.ssh.limits import Limits
from sshpanel.ssh.link import Link, link_pair
from sshpanel.ssh.server import SHUTDOWN_GRACE, prepare_panel, session_limits
from sshpanel.ssh.worker import SETTINGS_ENV
from sshpanel.store import open_store

log = logging.getLogger("sshpanel.supervisor")

BACKLOG = 512
"""Listen backlog: a burst of logins waits in the kernel, not refused."""
READY_TIMEOUT = 60.0
"""Seconds a worker may take to start."""
RESTART_DELAY = 1.0
"""Seconds before a worker that died is started again."""


@dataclass
class WorkerHandle:
    """The supervisor's view of one worker process.

    Attributes:
        index: Its number, 0-based.
        process: The process, once started.
        link: The message channel to it.
        ready: It serves connections.
        pending: Addresses of its admitted, not yet authenticated connections.
        open: Its open admitted connections.
        handed: Connections handed to it, ever (spreads ties).
    """

    index: int
    process: asyncio.subprocess.Process | None = None
    link: Link | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pending: Counter = field(default_factory=Counter)
    open: int = 0
    handed: int = 0


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
            ConfigError: A bad number of workers or a session limit below 1.
        """
        self.settings = settings
        self.engine = Engine(settings)
        self.events = EngineEvents(self.engine, settings)
        self.limits = Limits(session_limits(settings))
        self.workers = [WorkerHandle(index) for index in range(check_workers(settings.workers))]
        self.port = 0
        self._listener: socket.socket | None = None
        self._stopping = False
        self._watchers: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Does the start-up work, starts the workers, then binds the port
        and accepts.

        Raises:
            ConfigError: Database or host key unusable, or a worker did not
                start.
            EngineUnavailable: The Docker engine does not answer.
            OSError: The port cannot be bound (e.g. in use).
        """
        store = await asyncio.to_thread(open_store, self.settings)
        await prepare_panel(self.settings, store, Accounts(store, self.settings), self.engine)
        self.events.start(store)
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
        ours, theirs = link_pair()
        env = dict(os.environ)
        env[SETTINGS_ENV] = settings_to_json(self.settings)
        try:
            handle.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sshpanel.ssh.worker", str(theirs.fileno()), str(handle.index),
                pass_fds=[theirs.fileno()], env=env,
            )
        finally:
            theirs.close()
        handle.link = Link(ours, lambda message, fds: self._on_message(handle, message, fds),
                           lambda: handle.ready.clear())
        handle.link.start()
        watcher = asyncio.ensure_future(self._watch(handle))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, handle: WorkerHandle) -> None:
        """Waits for the worker's exit; gives back its places and, unless
        stopping, starts it again."""
        assert handle.process is not None
        status = await handle.process.wait()
        if handle.link is not None:
            handle.link.close()
        handle.ready.clear()
        for address, count in handle.pending.items():
            for _ in range(count):
                self.limits.released(address)
        handle.pending.clear()
        handle.open = 0
        if self._stopping:
            return
        log.warning("worker %d exited with status %s; starting it again", handle.index, status)
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            await self._spawn(handle)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of descriptors: the client retries
                log.warning("accept failed: %s", exc)
                return
            with conn:
                self._hand_over(conn, str(peer[0]))

    def _hand_over(self, conn: socket.socket, address: str) -> None:
        ready = [handle for handle in self.workers if handle.ready.is_set() and handle.link is not None]
        if not ready:
            log.info("connection from %s dropped: no worker is ready", address)
            return
        refusal = self.limits.admit(address)
        handle = min(ready, key=lambda item: (item.open, sum(item.pending.values()), item.handed))
        assert handle.link is not None
        handle.link.send({"op": "conn", "refusal": refusal}, [conn.fileno()])
        handle.handed += 1
        if refusal is None:
            handle.pending[address] += 1
            handle.open += 1

    def _on_message(self, handle: WorkerHandle, message: dict, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        op = message.get("op")
        address = str(message.get("address", ""))
        account = str(message.get("account", ""))
        if op == "ready":
            handle.ready.set()
        elif op in ("authenticated", "released") and handle.pending[address] > 0:
            handle.pending[address] -= 1
            if not handle.pending[address]:
                del handle.pending[address]
            if op == "authenticated":
                self.limits.authenticated(address, account)
            else:
                self.limits.released(address)
                handle.open = max(0, handle.open - 1)
        elif op == "closed":
            handle.open = max(0, handle.open - 1)
        elif op == "failed":
            self._failed(address, account)
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
            seconds = after.until - self.limits.clock()
            for handle in self.workers:
                if handle.link is not None:
                    handle.link.send({"op": "lock", "account": account, "seconds": seconds})

    async def stop(self) -> None:
        """Stops accepting, asks every worker to end its sessions and exit
        (SIGTERM, as `PanelServer.stop`), waits, then stops the recorder."""
        self._stopping = True
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
        for watcher in list(self._watchers):
            await watcher
        self.events.stop()
        await asyncio.to_thread(self.engine.close)
