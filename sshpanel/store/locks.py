"""Provides the named locks that hold across every panel process sharing one
database (`Store.locks`): `flock(2)` files on SQLite, PostgreSQL advisory
locks on PostgreSQL (issue 19 item 4, several panel hosts).

SQLite lives on one host, so a lock file in the data folder's `locks/`
folder reaches every process that can open the database (`serve
--workers N` on that host). Every acquisition opens its own descriptor, so
a lock excludes the other threads of the same process as well as other
processes, and the kernel drops it when its holder dies.

Hosts on one PostgreSQL database share no folder, so there a lock is a
session-level advisory lock (`pg_try_advisory_lock`), keyed by a hash of
its name, held on one connection per process kept for locks alone
(`AdvisoryLocks`): not one of the pool's, so a build holding its slot for
minutes takes no connection from the sessions, and a process holds any
number of locks on it. PostgreSQL frees them when that connection ends, so
a killed host never leaves one held. Advisory locks are scoped to the
database, so two installs on one server do not meet. The connection is
opened at the first lock; when it breaks (a database restart) every lock
it held is gone: `HeldLock.still_held` tells (the events recorder's
election asks it every few seconds), and the next lock opens a new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, Protocol

import peewee as pw

from sshpanel.errors import DatabaseUnavailable
from sshpanel.store.database import reason

LOCKS_DIR = "locks"
"""Folder of the lock files, under the data folder (SQLite)."""
WAIT_STEP = 0.05
"""Seconds between two tries of a waiting `Mutex` on PostgreSQL."""
WAIT_LIMIT = 60.0
"""Seconds a `Mutex` waits for its holder before giving up (its holders
are short critical sections around a Docker call)."""
RECONNECT_PAUSE = 5.0
"""Seconds after a failed connection during which locks fail at once
rather than wait for the server again (some are taken on the event loop)."""


class HeldLock:
    """A held lock; `release` drops it.

    Args:
        release: Drops the lock (called once).
        alive: Returns whether the lock is still held.
    """

    def __init__(self, release: Callable[[], None], alive: Callable[[], bool] = lambda: True) -> None:
        self._release: Callable[[], None] | None = release
        self._alive = alive

    def release(self) -> None:
        """Drops the lock (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def still_held(self) -> bool:
        """True while the lock is held: a file lock until released; an
        advisory lock until released or its connection broke (asks the
        server: blocks)."""
        return self._release is not None and self._alive()


class Mutex(Protocol):
    """A mutex over every process and thread on the database, waiting for
    the holder (`with mutex: ...`). Not reentrant."""

    def __enter__(self) -> "Mutex":
        """Waits for the lock and takes it.

        Raises:
            OSError: (SQLite) the lock file cannot be opened.
            DatabaseUnavailable: (PostgreSQL) the server cannot be reached,
                or the holder kept it over `WAIT_LIMIT`.
        """
        ...

    def __exit__(self, *exc: object) -> None:
        """Drops the lock."""
        ...


class Locks(Protocol):
    """Named locks shared by every panel process on one database. Names are
    panel-made: a fixed word and a validated user name."""

    shared: bool
    """True when the processes may run on several hosts (PostgreSQL)."""

    def try_lock(self, name: str) -> HeldLock | None:
        """Takes lock `name` when nobody holds it; None when someone does.

        Raises:
            OSError: (SQLite) the lock file cannot be opened.
            DatabaseUnavailable: (PostgreSQL) the server cannot be reached.
        """
        ...

    def mutex(self, name: str) -> Mutex:
        """Returns the waiting mutex of lock `name` (one object may be
        entered by many threads, one at a time)."""
        ...


def lock_path(data_dir: Path, name: str) -> Path:
    """Returns the lock file `name` under `data_dir` (made at first use)."""
    return data_dir / LOCKS_DIR / name


def _open(path: Path) -> int:
    """Opens (creating it and its folder, mode 0700/0600) a lock file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def try_lock(path: Path) -> HeldLock | None:
    """Takes the `flock` of the file `path` when nobody holds it.

    Returns:
        The held lock, or None when another holder has it.

    Raises:
        OSError: The lock file cannot be opened.
    """
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(lambda: os.close(fd))


class FileLock:
    """A `Mutex` on the file `path` (created when missing).

    Args:
        path: The lock file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def __enter__(self) -> "FileLock":
        if getattr(self._local, "fd", None) is not None:
            raise RuntimeError(f"{self.path.name} lock entered twice by one thread")
        fd = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._local.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._local.fd = self._local.fd, None
        os.close(fd)


class FileLocks:
    """`Locks` as `flock` files in `folder` (SQLite: one host).

    Args:
        folder: The lock files' folder (`<data dir>/locks`).
    """

    shared = False

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def try_lock(self, name: str) -> HeldLock | None:
        """See `Locks.try_lock`."""
        return try_lock(self.folder / name)

    def mutex(self, name: str) -> FileLock:
        """See `Locks.mutex`."""
        return FileLock(self.folder / name)


def advisory_key(name: str) -> int:
    """The advisory lock key of `name`: its BLAKE2b hash as a signed
    64-bit integer (PostgreSQL's `bigint` key)."""
    return int.from_bytes(hashlib.blake2b(f"sshpanel:{name}".encode(), digest_size=8).digest(), "big", signed=True)


class AdvisoryLocks:
    """`Locks` as PostgreSQL session-level advisory locks on one connection
    of their own (see the module docstring). Thread-safe; every method
    blocks for one round trip to the server.

    Args:
        database: The panel's PostgreSQL database (its connection
            parameters are used; its pool is not).
    """

    shared = True

    def __init__(self, database: pw.PostgresqlDatabase) -> None:
        self.database = database
        self._guard = threading.Lock()
        self._conn = None
        self._generation = 0
        """Counts the lock connections opened; a lock remembers its own."""
        self._held: set[int] = set()
        self._failed_at = -RECONNECT_PAUSE

    def try_lock(self, name: str) -> HeldLock | None:
        """See `Locks.try_lock`."""
        key = advisory_key(name)
        with self._guard:
            if key in self._held:  # this process holds it (the server would let it stack)
                return None
            if not self._query("SELECT pg_try_advisory_lock(%s)", key):
                return None
            self._held.add(key)
            generation = self._generation
        return HeldLock(lambda: self._unlock(key, generation), lambda: self._alive(key, generation))

    def mutex(self, name: str) -> "AdvisoryMutex":
        """See `Locks.mutex`."""
        return AdvisoryMutex(self, name)

    def close(self) -> None:
        """Closes the lock connection: every lock of this process is dropped."""
        with self._guard:
            self._drop()

    def _unlock(self, key: int, generation: int) -> None:
        with self._guard:
            if generation != self._generation or key not in self._held:
                return  # gone with its connection
            self._held.discard(key)
            try:
                self._query("SELECT pg_advisory_unlock(%s)", key)
            except DatabaseUnavailable:
                pass  # the connection broke: the server dropped the lock with it

    def _alive(self, key: int, generation: int) -> bool:
        with self._guard:
            if generation != self._generation or key not in self._held:
                return False
            try:
                self._query("SELECT 1", None)
            except DatabaseUnavailable:
                return False
            return generation == self._generation

    def _query(self, sql: str, key: int | None):
        """Runs one statement on the lock connection (opening it when
        needed; under `_guard`) and returns its one value.

        Raises:
            DatabaseUnavailable: The server cannot be reached; the connection
                and every lock it held are dropped.
        """
        if self._conn is None:
            if time.monotonic() - self._failed_at < RECONNECT_PAUSE:
                raise DatabaseUnavailable("the lock connection failed a moment ago")
            try:
                with pw.__exception_wrapper__:
                    self._conn = pw.PostgresqlDatabase._connect(self.database)
            except pw.DatabaseError as exc:
                self._failed_at = time.monotonic()
                raise DatabaseUnavailable(reason(exc)) from None
            self._generation += 1
        try:
            with pw.__exception_wrapper__:
                with self._conn.cursor() as cursor:
                    cursor.execute(sql, None if key is None else (key,))
                    return cursor.fetchone()[0]
        except pw.DatabaseError as exc:
            self._drop()
            raise DatabaseUnavailable(reason(exc)) from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken; the server ends the session either way
                pass


class AdvisoryMutex:
    """The `Mutex` of one advisory lock: a thread lock for this process's
    threads, then `try_lock` every `WAIT_STEP` seconds (a blocking
    `pg_advisory_lock` would hold the shared lock connection meanwhile).

    Args:
        locks: The process's advisory locks.
        name: The lock's name.
    """

    def __init__(self, locks: AdvisoryLocks, name: str) -> None:
        self.locks = locks
        self.name = name
        self._threads = threading.Lock()
        self._held: HeldLock | None = None

    def __enter__(self) -> "AdvisoryMutex":
        self._threads.acquire()
        try:
            deadline = time.monotonic() + WAIT_LIMIT
            while (held := self.locks.try_lock(self.name)) is None:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"the {self.name} lock was held over {WAIT_LIMIT:g} s")
                time.sleep(WAIT_STEP)
        except BaseException:
            self._threads.release()
            raise
        self._held = held
        return self

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, None
        try:
            if held is not None:
                held.release()
        finally:
            self._threads.release()

