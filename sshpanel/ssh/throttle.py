"""Provides `SharedThrottle`, the per-account login throttling counted over
every panel host on one database (issue 19; NIST SP 800-63B 5.2.2, as
`limits.Limits` per host).

Login decisions are made on the event loop and must not wait for the
database, so both directions go through memory: failures are added up
and written by one thread job at a time (`store.logins.count_failures`),
and the locked accounts are read every `REFRESH` seconds into a table the
loop checks. A lock reached on another host is therefore seen here within
about `REFRESH` seconds, during which an attacker may try a few more
times; what counts is that the attempts of all hosts add up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from sshpanel.errors import DatabaseUnavailable
from sshpanel.ssh.limits import LimitSettings
from sshpanel.store import Store
from sshpanel.store import logins

log = logging.getLogger("sshpanel.ssh")

REFRESH = 2.0
"""Seconds between two reads of the locked accounts."""
MAX_NAME = 32
"""Longest user name (`User.name`): a longer login name is no account."""


class SharedThrottle:
    """Failed logins per account over every host; used on the loop thread.

    Args:
        store: The shared database.
        settings: `account_max_failures`, `account_lock_seconds`.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, store: Store, settings: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._locked: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._writing = False

    def failed(self, account: str) -> None:
        """Counts one failed login of `account` (written in a thread soon)."""
        if len(account) > MAX_NAME:
            return
        if len(self._pending) >= self.settings.max_tracked and account not in self._pending:
            return  # a flood of names: the per-host table still counts them
        self._pending[account] = self._pending.get(account, 0) + 1
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._write())

    def locked(self, account: str) -> bool:
        """True while `account` is locked by the failures of all hosts."""
        until = self._locked.get(account)
        return until is not None and self.clock() < until

    def refusing(self) -> list[tuple[str, float]]:
        """Returns `(account, seconds left)` of every lock known here."""
        now = self.clock()
        return [(account, until - now) for account, until in self._locked.items() if until > now]

    async def run(self, on_lock: Callable[[str, float], None] | None = None, interval: float = REFRESH) -> None:
        """Reads the locked accounts every `interval` seconds, for ever;
        `on_lock(account, seconds)` is called for each lock new here."""
        warned = False
        while True:
            try:
                found = await asyncio.to_thread(logins.locked_accounts)
            except DatabaseUnavailable as exc:
                if not warned:
                    log.warning("cannot read the locked accounts: %s", exc.reason)
                warned = True
            else:
                warned = False
                for account, seconds in found.items():
                    if not self.locked(account) and on_lock is not None:
                        on_lock(account, seconds)
                now = self.clock()
                self._locked = {account: now + seconds for account, seconds in found.items()}
            await asyncio.sleep(interval)

    async def _write(self) -> None:
        """Writes the failures counted so far, until none is left."""
        limits = self.settings
        try:
            while self._pending:
                account, failures = self._pending.popitem()
                try:
                    seconds = await asyncio.to_thread(logins.count_failures, self.store, account, failures,
                                                      limits.account_max_failures, limits.account_lock_seconds,
                                                      limits.account_lock_seconds)
                except DatabaseUnavailable as exc:
                    log.warning("failed logins of %r not counted across hosts: %s", account, exc.reason)
                    continue
                if seconds is not None:
                    self._locked[account] = self.clock() + seconds
        finally:
            self._writing = False
