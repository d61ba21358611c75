"""Provides `connect_database`, the Peewee database a URL names, and the
PostgreSQL database class that survives server restarts.

A plain `PostgresqlDatabase` keeps one connection per thread forever and
never reconnects: after a server restart every later query on a thread
raises `InterfaceError: connection already closed` (checked with peewee
4.5.3 and psycopg2 2.9.13). `PanelPostgresqlDatabase` is Peewee's own pool
(`playhouse.pool.PooledPostgresqlDatabase`) combined with Peewee's
`playhouse.shortcuts.ReconnectMixin`:

- a connection is checked out of the pool for one statement, or for one
  transaction, and given back right after, so a process never holds more
  than `Settings.database_max_connections` and no thread keeps a
  connection between two pieces of work (a thread over the maximum waits
  up to `POOL_WAIT` seconds);
- the pool checks a connection when handing it out (`SELECT 1`) and drops a
  dead one, and the mixin opens a new connection once when a statement
  outside a transaction fails because its connection broke;
- a failure to reach the server becomes `DatabaseUnavailable` (one line,
  `database unavailable, try again later`); inside a transaction nothing
  is retried (what it did so far is gone), the error goes to the caller.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

import peewee as pw
from playhouse import db_url
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase
from playhouse.shortcuts import ReconnectMixin

from sshpanel.errors import ConfigError, DatabaseUnavailable

POOL_WAIT = 10.0
"""Seconds a thread waits for a free connection when the pool is full."""
CONNECT_TIMEOUT = 5
"""Seconds one attempt to reach the server may take (libpq `connect_timeout`)."""
POSTGRES_SCHEMES = ("postgres", "postgresql", "postgres+pool", "postgresql+pool")
_CONNECT_FAILED = re.compile(r'connection to server at "([^"]*)"(?: \([^)]*\))?, port (\d+) failed: (.*)')
_SOCKET_FAILED = re.compile(r'connection to server on socket "([^"]*)" failed: (.*)')


class PanelPostgresqlDatabase(ReconnectMixin, PooledPostgresqlDatabase):
    """PostgreSQL through a bounded pool that reconnects (see the module
    docstring). Every method may raise `DatabaseUnavailable`."""

    reconnect_errors = (
        # psycopg2's messages for a connection the server has dropped
        # (Peewee's own suggestions in `ReconnectMixin`, plus a restart).
        (pw.OperationalError, "server closed the connection"),
        (pw.OperationalError, "terminating connection"),
        (pw.OperationalError, "connection already closed"),
        (pw.OperationalError, "could not receive data from server"),
        (pw.OperationalError, "ssl connection has been closed"),
        (pw.OperationalError, "no connection to the server"),
        (pw.InterfaceError, "connection already closed"),
    )

    def connect(self, reuse_if_open: bool = False) -> bool:
        try:
            return super().connect(reuse_if_open)
        except (pw.DatabaseError, MaxConnectionsExceeded) as exc:
            raise _translated(exc) from None

    def execute_sql(self, sql, params=None):
        try:
            with _outages_translated():
                return super().execute_sql(sql, params)
        finally:
            # psycopg2's cursors hold their rows client-side: the cursor
            # stays readable once its connection is back in the pool.
            self._release_if_idle()

    def begin(self, *args, **kwargs) -> None:
        try:
            with _outages_translated():
                super().begin(*args, **kwargs)
        except BaseException:
            self._release_if_idle()
            raise

    def commit(self) -> None:
        # On failure Peewee rolls back next, which needs the connection.
        with _outages_translated():
            super().commit()
        self._release_if_idle()

    def rollback(self) -> None:
        try:
            with _outages_translated():
                super().rollback()
        finally:
            self._release_if_idle()

    def _release_if_idle(self) -> None:
        """Gives this thread's connection back to the pool unless a
        transaction runs on it or a `connection_context()` holds it."""
        if not self.in_transaction() and not self._state.ctx and not self.is_closed():
            self.close()


@contextlib.contextmanager
def _outages_translated() -> Iterator[None]:
    """Turns a lost or refused connection into `DatabaseUnavailable`; every
    other database error passes as it is."""
    try:
        yield
    except pw.DatabaseError as exc:
        if not is_outage(exc):
            raise
        raise _translated(exc) from None


def connect_database(url: str, max_connections: int) -> pw.Database:
    """Returns the (not yet connected) database `url` names.

    Args:
        url: A Peewee database URL (`postgresql://user:pw@host:port/db`,
            `sqlite:///path`).
        max_connections: For PostgreSQL, connections this process opens at
            most (at least 1).

    Raises:
        ConfigError: The URL is not understood, or the maximum is below 1.
    """
    try:
        scheme = url.split(":", 1)[0].lower()
        if scheme not in POSTGRES_SCHEMES:
            return db_url.connect(url)
        if max_connections < 1:
            raise ConfigError(f"SSHPANEL_DATABASE_MAX_CONNECTIONS must be at least 1, not {max_connections}")
        params = db_url.parse(url)
        params.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return PanelPostgresqlDatabase(
            params.pop("database"), max_connections=max_connections, timeout=POOL_WAIT, **params
        )
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ConfigError(f"cannot use database URL: {exc}") from None


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the server could not be reached or dropped the
    connection: psycopg2's `InterfaceError`, or an `OperationalError`
    without an SQLSTATE (libpq's own) or of class 08 (connection exception)
    or 57P (operator intervention: shutdown, crash, starting up). Lock
    timeouts, deadlocks and serialization failures are not outages."""
    if isinstance(exc, MaxConnectionsExceeded):
        return True
    if isinstance(exc, pw.InterfaceError):
        return True
    if not isinstance(exc, pw.OperationalError):
        return False
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    return code is None or code.startswith("08") or code.startswith("57P")


def _translated(exc: BaseException) -> Exception:
    """Returns `DatabaseUnavailable` for an outage, else `exc` itself."""
    if isinstance(exc, DatabaseUnavailable) or not is_outage(exc):
        return exc  # type: ignore[return-value]
    return DatabaseUnavailable(reason(exc))


def reason(exc: BaseException) -> str:
    """Returns a one-line reason for a database error.

    psycopg2's connection errors are several lines long (a hint after a
    tab): the first line is kept, and libpq's
    `connection to server at "HOST", port PORT failed: WHY` becomes
    `why (HOST:PORT)`, e.g. `connection refused (127.0.0.1:1)`.
    """
    if isinstance(exc, MaxConnectionsExceeded):
        return f"no free connection in the pool within {POOL_WAIT:g} s"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    match = _CONNECT_FAILED.match(first)
    if match:
        host, port, why = match.groups()
        return f"{_plain(why)} ({host}:{port})"
    match = _SOCKET_FAILED.match(first)
    if match:
        path, why = match.groups()
        return f"{_plain(why)} ({path})"
    return _plain(first)


def _plain(text: str) -> str:
    """`FATAL:  Password ...` -> `password ...`."""
    text = re.sub(r"^(FATAL|ERROR):\s+", "", text.strip())
    return text[:1].lower() + text[1:]
