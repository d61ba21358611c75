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

The disk quota needs no such lock: what it checks (files, volume sizes,
image layers) is measured outside the database and a check reserves
nothing, so there is no read-then-write to interleave.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Protocol

import peewee as pw

from sshpanel.errors import NotFound
from sshpanel.store.admin import published_ports
from sshpanel.store.models import Container, User, utcnow


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
