"""Provides `UserTransaction`, the one way to read a user's usage and reserve
against it: a write transaction in which the user is locked.

Every quota check that is followed by a write (create, update, published
ports) must see the usage as no concurrent request can change it until the
write commits, or two creates each read "2 of 3" and both reserve
(issue 19). How the user is locked depends on the database:

- SQLite: the transaction starts with `BEGIN IMMEDIATE` (`Store.write`),
  which takes the database's write lock at once, so every writer, for
  every user, runs one after the other.
- PostgreSQL: transactions run at READ COMMITTED and only conflict on rows
  they lock, so the transaction first locks the user's row with
  `SELECT ... FOR NO KEY UPDATE`. A second transaction for the same user
  waits there until the first commits, then reads the usage the first
  committed; other users' requests do not wait. `NO KEY UPDATE` rather
  than `UPDATE`: it conflicts with itself and with updates of the row, but
  not with the key-share locks that inserts of rows pointing at the user
  take (events, audit), which would otherwise queue behind every create.
  A row lock rather than SERIALIZABLE: no retry loop around code that
  calls Docker after the commit, and waiting is bounded by the short
  transactions (no Docker call runs inside one).
- Host ports are shared by all users, so `published_ports` also takes a
  transaction-level advisory lock (`pg_advisory_xact_lock`) on PostgreSQL;
  it is always taken after the user's row, so the two cannot deadlock.

The disk quota's ledger of home directories (issue 26) is reserved the
same way: an SFTP session holds bytes ahead of its writes in a `DiskHold`
row, read and written in a transaction with the user locked, so every
session of the user, in every process and on every panel host sharing the
database, sees the others' holds. Volumes, image layers and writable
layers are measured outside the database (`User.disk_*`) and only read.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import peewee as pw

from sshpanel.errors import NotFound
from sshpanel.store.admin import published_ports
from sshpanel.store.models import Container, DiskHold, User, utcnow


class Transactional(Protocol):
    """What `lock_user` needs of the `Store` (a Protocol, so that this
    module does not import the one that uses it)."""

    database: pw.Database

    def write(self) -> contextlib.AbstractContextManager[None]:
        """Opens a short write transaction."""

PORTS_LOCK = 0x7373_6870_706F_7274
"""Key of the advisory lock on published host ports (b"sshpport")."""


class UserTransaction:
    """An open write transaction in which `user` is locked; made only by
    `lock_user` (`Store.user_transaction`). Methods that reserve take no
    user id: they act for `user`.

    Attributes:
        user: The locked user's row, read inside the transaction.
    """

    def __init__(self, database: pw.Database, user: User) -> None:
        self._database = database
        self.user = user

    def usage(self) -> tuple[int, int, float]:
        """Returns (count, memory bytes, CPUs) of the user's live records,
        reservations in flight included, as no one else can change them
        before this transaction ends."""
        return usage_of(self.user.id)

    def published_ports(self) -> dict[tuple[int, str], tuple[int, str]]:
        """Returns (host port, protocol) -> (user id, container name) of every
        live record of every user, with the host ports locked until commit
        (see the module docstring)."""
        if not isinstance(self._database, pw.SqliteDatabase):
            self._database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (PORTS_LOCK,))
        return published_ports()

    def reserve_container(self, name: str, image: str, spec: str, memory: int, cpus: float) -> Container:
        """Inserts the user's record of a container with no Docker ID yet.

        Args:
            name: The user's short name of the container.
            image: The image reference as given.
            spec: The validated spec as JSON.
            memory: Memory limit, bytes.
            cpus: CPU limit, in CPUs.

        Raises:
            Conflict: (at the end of the transaction) the name is taken.
        """
        return Container.create(user=self.user.id, name=name, image=image, spec=spec, memory=memory, cpus=cpus)

    def reserve_project(
        self, items: list[tuple[str, str, str, int, float]], replacing: list[int]
    ) -> list[Container]:
        """Reserves a Compose project's new containers at once (issue 22):
        sets the user's records `replacing` aside (marked removed, without a
        history event: they come back if the `up` fails), then inserts one
        record per item, like `reserve_container`.

        Args:
            items: (name, image, spec JSON, memory bytes, CPUs) per container.
            replacing: Ids of the user's records the new ones replace.

        Returns:
            The new records, in the order of `items`.

        Raises:
            Conflict: (at the end of the transaction) a name is taken.
        """
        if replacing:
            Container.update(removed=utcnow()).where(
                Container.id.in_(replacing) & (Container.user == self.user.id)).execute()
        return [self.reserve_container(*item) for item in items]

    def update_limits(self, container_id: int, memory: int, cpus: float, spec: str) -> None:
        """Stores new limits (bytes, CPUs) and spec of one of the user's records."""
        Container.update(memory=memory, cpus=cpus, spec=spec).where(
            (Container.id == container_id) & (Container.user == self.user.id)
        ).execute()


    def disk_held(self) -> int:
        """Returns the bytes every session of the user holds ahead of its
        writes (`DiskHold`), as no one else can change them before commit."""
        return held_by(self.user.id)

    def set_disk_hold(self, holder: str, held: int) -> bool:
        """Sets the bytes the session `holder` holds and stamps it now; 0
        deletes the hold.

        Args:
            holder: The session's unique name.
            held: Bytes, 0 or more.

        Returns:
            True when the hold existed before (False: new, or it had
            expired and was deleted by `expire_disk_holds`).
        """
        existed = DiskHold.select().where(DiskHold.holder == holder).exists()
        if held <= 0:
            DiskHold.delete().where(DiskHold.holder == holder).execute()
        elif existed:
            DiskHold.update(bytes=held, updated=utcnow()).where(DiskHold.holder == holder).execute()
        else:
            DiskHold.create(user=self.user.id, holder=holder, bytes=held)
        return existed

    def add_home(self, change: int) -> int:
        """Adds `change` bytes to the home directory's ledger (written
        bytes: positive, also added to `disk_home_grown`; removed bytes:
        negative, never below 0).

        Returns:
            The ledger's new figure, bytes.
        """
        home = max(0, int(self.user.disk_home or 0) + change)
        grown = int(self.user.disk_home_grown or 0) + max(change, 0)
        User.update(disk_home=home, disk_home_grown=grown).where(User.id == self.user.id).execute()
        self.user.disk_home, self.user.disk_home_grown = home, grown
        return home

    def measured_home(self, measured: int, grown_before: int, complete: bool) -> int:
        """Replaces the home directory's ledger by a measurement.

        Bytes settled while the walk ran (`disk_home_grown` now minus
        `grown_before`) are added, since the walk may have missed them;
        removals meanwhile are not subtracted. Both err towards more, never
        less, than the files hold. An incomplete walk only raises the figure.
        While a session holds bytes (`DiskHold`), it may have written bytes
        the walk saw and not settled them yet: the figure is then left as
        it is (the ledger already counts every write).

        Args:
            measured: Bytes the walk found.
            grown_before: `disk_home_grown` read before the walk began.
            complete: The walk saw every entry (it stops at a bound).

        Returns:
            The ledger's figure, bytes.
        """
        if self.disk_held():
            return int(self.user.disk_home or 0)
        home = measured + max(0, int(self.user.disk_home_grown or 0) - grown_before)
        if not complete:
            home = max(home, int(self.user.disk_home or 0))
        User.update(disk_home=home).where(User.id == self.user.id).execute()
        self.user.disk_home = home
        return home


def held_by(user_id: int) -> int:
    """Returns the bytes a user's SFTP sessions hold ahead of their writes."""
    return int(DiskHold.select(pw.fn.COALESCE(pw.fn.SUM(DiskHold.bytes), 0))
               .where(DiskHold.user == user_id).scalar() or 0)


def usage_of(user_id: int) -> tuple[int, int, float]:
    """Returns (count, memory bytes, CPUs) held by a user's live records
    (reservations whose create is in flight count too)."""
    row = (
        Container.select(
            pw.fn.COUNT(Container.id),
            pw.fn.COALESCE(pw.fn.SUM(Container.memory), 0),
            pw.fn.COALESCE(pw.fn.SUM(Container.cpus), 0.0),
        )
        .where((Container.user == user_id) & Container.removed.is_null())
        .tuples()
        .first()
    )
    return int(row[0]), int(row[1]), float(row[2])


@contextlib.contextmanager
def lock_user(store: Transactional, user_id: int) -> Iterator[UserTransaction]:
    """Opens `store.write()` and locks the user in it (module docstring).

    Raises:
        NotFound: No such user (deleted meanwhile).
        Conflict: A uniqueness constraint failed inside the block.
        DatabaseUnavailable: The database cannot be reached.
    """
    with store.write():
        query = User.select().where(User.id == user_id)
        if not isinstance(store.database, pw.SqliteDatabase):
            query = query.for_update("FOR NO KEY UPDATE")
        user = query.first()
        if user is None:
            raise NotFound("no such user")
        yield UserTransaction(store.database, user)
