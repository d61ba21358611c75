"""Provides `Store`, the repository every other layer uses for the database.

SQLite runs in WAL mode with foreign keys on, `synchronous=FULL` and a busy
timeout (docs/PITFALLS.md "Peewee and SQLite"); write transactions take the
lock at once (`BEGIN IMMEDIATE`) so a check and the row it guards cannot
interleave with another writer. PostgreSQL goes through a bounded pool that
reconnects (`sshpanel.store.database`); there a check and the write it
guards serialize per user through `user_transaction`
(`sshpanel.store.reservations`). Peewee keeps connection state per thread;
callers run store methods in worker threads, never on the event loop, and
never await inside `write()`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Iterator

import peewee as pw

from sshpanel.config import Settings
from sshpanel.errors import Conflict, ConfigError, DatabaseUnavailable
from sshpanel.store.backup import backup, secure_file
from sshpanel.store.database import PanelPostgresqlDatabase, connect_database, reason
from sshpanel.store.locks import LOCKS_DIR, AdvisoryLocks, FileLocks, Locks
from sshpanel.store.migrations import upgrade
from sshpanel.store.models import (
    MODELS,
    AuditEntry,
    Container,
    DiskHold,
    Event,
    PublicKey,
    User,
    utcnow,
)
from sshpanel.store.reservations import UserTransaction, held_by, lock_user, usage_of

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": 2,
    "busy_timeout": 10_000,
}


def open_store(settings: Settings) -> "Store":
    """Opens (and creates if needed) the database named by the settings.

    Args:
        settings: `database_url` if set (e.g. `postgresql://u:p@host/db`,
            with at most `database_max_connections` connections), else the
            SQLite file `settings.database_path`.

    Returns:
        A `Store` with its tables created.

    Raises:
        ConfigError: The URL is not understood or the database cannot be
            opened; one line, e.g. `cannot open database: connection
            refused (127.0.0.1:1)`.
    """
    if settings.database_url:
        database = connect_database(settings.database_url, settings.database_max_connections)
        if isinstance(database, pw.SqliteDatabase):
            database.init(database.database, pragmas=SQLITE_PRAGMAS)
    else:
        path = settings.database_path
        secure_file(path)
        database = pw.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    try:
        database.bind(MODELS)
        with database.connection_context():
            upgrade(database)
    except DatabaseUnavailable as exc:
        raise ConfigError(f"cannot open database: {exc.reason}") from None
    except pw.DatabaseError as exc:
        raise ConfigError(f"cannot open database: {reason(exc)}") from None
    if isinstance(database, pw.SqliteDatabase) and database.database != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            wal = Path(database.database + suffix)
            if wal.exists():
                os.chmod(wal, 0o600)
    if isinstance(database, PanelPostgresqlDatabase):
        return Store(database, AdvisoryLocks(database))
    return Store(database, FileLocks(settings.data_dir / LOCKS_DIR))


class Store:
    """Repository over the bound Peewee models.

    Methods return model instances (plain attribute access for callers) or
    plain values; they raise `Conflict` for uniqueness violations.

    Args:
        database: The bound, open Peewee database.
        locks: The named locks every process on this database shares
            (`sshpanel.store.locks`: files on SQLite, advisory locks on
            PostgreSQL).
    """

    def __init__(self, database: pw.Database, locks: Locks) -> None:
        self.database = database
        self.locks = locks

    @property
    def shared(self) -> bool:
        """True when panel processes on several hosts may use this database
        (PostgreSQL): what one host keeps in memory the others do not see."""
        return self.locks.shared

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Opens a short write transaction (`BEGIN IMMEDIATE` on SQLite; on
        PostgreSQL a plain one at READ COMMITTED: a check and the write it
        guards need `user_transaction` there).

        Raises:
            Conflict: A uniqueness constraint failed inside the block.
            DatabaseUnavailable: The database cannot be reached.
        """
        if isinstance(self.database, pw.SqliteDatabase):
            ctx = self.database.atomic(lock_type="IMMEDIATE")
        else:
            ctx = self.database.atomic()
        try:
            with ctx:
                yield
        except pw.IntegrityError as exc:
            raise Conflict(f"already exists ({_constraint(exc)})") from None

    def user_transaction(self, user_id: int) -> contextlib.AbstractContextManager[UserTransaction]:
        """Opens a write transaction with the user locked: the only way to
        reserve against a quota (`sshpanel.store.reservations`, which says
        how each database locks and why).

        Raises:
            NotFound: No such user.
            Conflict: A uniqueness constraint failed inside the block.
            DatabaseUnavailable: The database cannot be reached.
        """
        return lock_user(self, user_id)

    def close(self) -> None:
        """Closes this thread's connection (other threads close their own)."""
        if not self.database.is_closed():
            self.database.close()

    def backup(self, path: Path) -> str:
        """Writes an online, consistent copy of the database to `path`
        (see `sshpanel.store.backup.backup`); returns the line to print.

        Raises:
            ConfigError: The target is unusable or the copy failed.
        """
        return backup(self.database, path)

    def integrity_ok(self) -> bool:
        """Runs SQLite's `PRAGMA integrity_check`; True on other databases."""
        if not isinstance(self.database, pw.SqliteDatabase):
            return True
        rows = self.database.execute_sql("PRAGMA integrity_check").fetchall()
        return rows == [("ok",)]

    # Users and keys -----------------------------------------------------

    def user_by_name(self, name: str) -> User | None:
        """Returns the user called `name`, or None."""
        return User.get_or_none(User.name == name)

    def user_by_id(self, user_id: int) -> User | None:
        """Returns the user with this id, or None."""
        return User.get_or_none(User.id == user_id)

    def users(self) -> list[User]:
        """Returns every user, by name."""
        return list(User.select().order_by(User.name))

    def enabled_users(self, names: set[str]) -> set[str]:
        """Returns those of `names` that are users and not disabled (what
        another host's `user disable` or `user rm` took away is missing)."""
        if not names:
            return set()
        query = User.select(User.name).where(User.name.in_(sorted(names)) & ~User.disabled)
        return {row.name for row in query}

    def record_disk(self, user_id: int, volumes: int, images: int, containers: int) -> None:
        """Stores a user's disk measurement (bytes; see `User.disk_*`), now."""
        with self.write():
            User.update(disk_volumes=volumes, disk_images=images, disk_containers=containers,
                        disk_measured=utcnow()).where(User.id == user_id).execute()

    def expire_disk_holds(self, before: dt.datetime) -> int:
        """Deletes the disk holds not renewed since `before` (naive UTC):
        their sessions' processes died (`sshpanel.store.reservations`).

        Returns:
            How many were deleted.
        """
        with self.write():
            return DiskHold.delete().where(DiskHold.updated < before).execute()

    def disk_held(self, user_id: int) -> int:
        """Returns the bytes a user's SFTP sessions hold ahead of their writes."""
        return held_by(user_id)

    def has_admin(self) -> bool:
        """Returns True when at least one admin account exists."""
        return User.select().where(User.role == "admin").exists()

    def create_user(
        self,
        name: str,
        role: str,
        quota_containers: int,
        quota_memory: int,
        quota_cpus: float,
    ) -> User:
        """Creates a user.

        Raises:
            Conflict: The name is taken.
        """
        with self.write():
            return User.create(
                name=name,
                role=role,
                quota_containers=quota_containers,
                quota_memory=quota_memory,
                quota_cpus=quota_cpus,
            )

    def add_key(self, user: User, algorithm: str, fingerprint: str, openssh: str, comment: str) -> PublicKey:
        """Adds a public key to `user`.

        Raises:
            Conflict: The key (same SHA256 fingerprint) is already registered,
                for this or any other user.
        """
        with self.write():
            if PublicKey.select().where(PublicKey.fingerprint == fingerprint).exists():
                raise Conflict("this public key is already registered")
            return PublicKey.create(
                user=user, algorithm=algorithm, fingerprint=fingerprint, openssh=openssh, comment=comment
            )

    def keys_of(self, user: User) -> list[PublicKey]:
        """Returns the user's public keys, oldest first."""
        return list(PublicKey.select().where(PublicKey.user == user).order_by(PublicKey.id))

    def key_of_user(self, user_name: str, fingerprint: str) -> tuple[User, PublicKey] | None:
        """Returns (user, key) when `fingerprint` is a key of `user_name`."""
        row = (
            PublicKey.select(PublicKey, User)
            .join(User)
            .where((User.name == user_name) & (PublicKey.fingerprint == fingerprint))
            .first()
        )
        return None if row is None else (row.user, row)

    def record_login(self, key: PublicKey) -> None:
        """Stamps the key's `last_used` and its user's `last_login`; the
        user's failed logins start again from 0 (`sshpanel.store.logins`)."""
        now = utcnow()
        with self.write():
            PublicKey.update(last_used=now).where(PublicKey.id == key.id).execute()
            User.update(last_login=now, login_failures=0).where(User.id == key.user_id).execute()

    def record_user_login(self, user_id: int) -> None:
        """Stamps a user's `last_login` for a login by no registered key (an
        SSH certificate, issue 24), as `record_login`."""
        with self.write():
            User.update(last_login=utcnow(), login_failures=0).where(User.id == user_id).execute()

    # Containers ----------------------------------------------------------

    def containers_of(self, user_id: int, include_removed: bool = False) -> list[Container]:
        """Returns a user's container records (created ones only), oldest first."""
        query = Container.select().where((Container.user == user_id) & Container.docker_id.is_null(False))
        if not include_removed:
            query = query.where(Container.removed.is_null())
        return list(query.order_by(Container.id))

    def live_containers(self) -> list[Container]:
        """Returns every not-removed container record of every user."""
        return list(Container.select().where(Container.removed.is_null()).order_by(Container.id))

    def usage(self, user_id: int) -> tuple[int, int, float]:
        """Returns (count, memory bytes, CPUs) held by a user's live records.

        Reservations (rows whose create is in flight) count too. A check
        followed by a reservation reads `UserTransaction.usage` instead.
        """
        return usage_of(user_id)

    def name_taken(self, user_id: int, name: str) -> bool:
        """Returns True when the user has a live container record `name`."""
        return (
            Container.select()
            .where((Container.user == user_id) & (Container.name == name) & Container.removed.is_null())
            .exists()
        )

    def attach_docker_id(self, container_id: int, docker_id: str) -> None:
        """Completes a reservation with the Docker container's full ID."""
        with self.write():
            Container.update(docker_id=docker_id).where(Container.id == container_id).execute()

    def drop_reservation(self, container_id: int) -> None:
        """Deletes a record whose Docker create failed."""
        with self.write():
            Container.delete().where(Container.id == container_id).execute()

    def mark_removed(self, container_id: int, when: dt.datetime | None = None) -> None:
        """Marks a container record removed (the row stays for the history)."""
        with self.write():
            Container.update(removed=when or utcnow()).where(
                (Container.id == container_id) & Container.removed.is_null()
            ).execute()

    def container_by_docker_id(self, docker_id: str) -> Container | None:
        """Returns the record of a Docker container by its full ID, or None."""
        return Container.get_or_none(Container.docker_id == docker_id)

    # History and audit ---------------------------------------------------

    def add_event(
        self,
        user_id: int,
        container_id: int | None,
        kind: str,
        ok: bool = True,
        exit_code: int | None = None,
        detail: str = "",
        time: dt.datetime | None = None,
    ) -> Event:
        """Records a lifecycle event of a user's container."""
        with self.write():
            return Event.create(
                user=user_id,
                container=container_id,
                kind=kind,
                ok=ok,
                exit_code=exit_code,
                detail=detail[:2000],
                time=time or utcnow(),
            )

    def events_of(self, user_id: int, container_id: int | None = None, limit: int = 200) -> list[Event]:
        """Returns a user's newest events first."""
        query = Event.select().where(Event.user == user_id)
        if container_id is not None:
            query = query.where(Event.container == container_id)
        return list(query.order_by(Event.time.desc(), Event.id.desc()).limit(limit))

    def add_audit(self, actor: str, fingerprint: str, source: str, action: str, target: str, outcome: str) -> None:
        """Appends one audit log entry."""
        with self.write():
            AuditEntry.create(
                actor=actor,
                fingerprint=fingerprint,
                source=source,
                action=action[:64],
                target=target[:255],
                outcome=outcome[:255],
            )

    def audit_entries(self, limit: int = 200) -> list[AuditEntry]:
        """Returns the newest audit entries first."""
        return list(AuditEntry.select().order_by(AuditEntry.id.desc()).limit(limit))


def _constraint(exc: Exception) -> str:
    """Returns the constraint text of an IntegrityError, without values."""
    text = str(exc).splitlines()[0]
    return text.split(":", 1)[-1].strip() if ":" in text else text
