"""Provides the failed-login counts of accounts that every panel host on one
database shares (issue 19): NIST SP 800-63B throttling (`ssh/limits.py`
counts per host; these rows count over all of them).

Only real users have a row to count in, so a flood of invented login names
writes nothing. A count is forgotten after `quiet_seconds` without a
failure, and starts again from 0 at a successful login
(`Store.record_login`).
"""

from __future__ import annotations

import datetime as dt

import peewee as pw

from sshpanel.store.models import User, utcnow
from sshpanel.store.store import Store


def count_failures(store: Store, name: str, failures: int, max_failures: int, quiet_seconds: float,
                   lock_seconds: float) -> float | None:
    """Adds `failures` failed logins to user `name`.

    Args:
        store: The database.
        name: The login name tried (nothing is written when no user has it).
        failures: How many failures to add (at least 1).
        max_failures: Failures after which the account is locked.
        quiet_seconds: Seconds without a failure after which the count
            starts again.
        lock_seconds: How long a lock lasts.

    Returns:
        The seconds of the lock when these failures locked the account, else
        None.

    Raises:
        DatabaseUnavailable: The database cannot be reached.
    """
    now = utcnow()
    with store.write():
        query = User.select(User.id, User.login_failures, User.login_failed_at).where(User.name == name)
        if not isinstance(store.database, pw.SqliteDatabase):
            query = query.for_update("FOR NO KEY UPDATE")
        row = query.first()
        if row is None:
            return None
        recent = row.login_failed_at is not None and (now - row.login_failed_at).total_seconds() < quiet_seconds
        total = (row.login_failures if recent else 0) + failures
        if total < max_failures:
            User.update(login_failures=total, login_failed_at=now).where(User.id == row.id).execute()
            return None
        User.update(login_failures=0, login_failed_at=now,
                    login_locked_until=now + dt.timedelta(seconds=lock_seconds)).where(User.id == row.id).execute()
        return lock_seconds


def locked_accounts() -> dict[str, float]:
    """Returns user name -> seconds left of every account locked now.

    Raises:
        DatabaseUnavailable: The database cannot be reached.
    """
    now = utcnow()
    query = User.select(User.name, User.login_locked_until).where(User.login_locked_until > now)
    return {row.name: (row.login_locked_until - now).total_seconds() for row in query}
