"""Provides `HomeLedger`, one session's side of the per-user disk ledger
(issue 26): writes reserve against the user's disk quota before they are
made, in the database, so that every session of the user, in every panel
process and on every panel host sharing the database, counts against one
figure; removals give the bytes back.

A database transaction per SFTP write request (32 KiB from OpenSSH) would
cost every user time, so a session holds bytes ahead (`DiskHold`, at most
`HOLD_CHUNK`, less as the user nears the quota) and takes its writes from
that hold without asking again. What it wrote is settled into the home
directory's figure (`User.disk_home`) at its next reservation and when its
last file open for writing closes; the rest of the hold is then given back.
Holds count in the usage every other session sees, so the sum of what all
sessions write can never pass the quota; near the quota a session can be
refused while another holds bytes it has not written yet (at most a
quarter of what was left each).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time

from sshpanel.config import Settings
from sshpanel.errors import QuotaExceeded
from sshpanel.store import Store

MIB = 1024 * 1024
HOLD_CHUNK = 4 * MIB
"""Most bytes a session holds ahead of its writes."""
HOLD_TTL = 600.0
"""Seconds after which `DiskWatch` deletes a hold that was not renewed (its
process died without giving it back)."""
RENEW_AFTER = HOLD_TTL / 3
"""Seconds after which a session renews its hold before using it, so a
live session's hold never expires under it (clocks of panel hosts may
differ by less than the rest of `HOLD_TTL`)."""


class HomeLedger:
    """One session's reservations against its user's disk quota. Methods
    are thread-safe; `take` never blocks, the others do (database).

    Args:
        store: The repository.
        settings: `quota_disk` (bytes).
        user_id: The user's id.
    """

    def __init__(self, store: Store, settings: Settings, user_id: int) -> None:
        self.store = store
        self.quota = settings.quota_disk
        self.user_id = user_id
        self.holder = secrets.token_hex(16)
        """The name of this session's `DiskHold` row."""
        self.held = 0
        """Bytes the database holds for this session."""
        self.written = 0
        """Bytes of `held` written and not settled yet."""
        self._renewed: float | None = None
        """When `held` was last written to the database (monotonic seconds)."""
        self._lock = threading.Lock()

    def take(self, growth: int) -> bool:
        """Takes `growth` bytes from what the session holds, without asking
        the database.

        Args:
            growth: Bytes about to be added to the home directory.

        Returns:
            True when they were taken (or `growth` is 0 or less); False when
            the session holds too little, or its hold is due for renewal:
            call `reserve`.
        """
        with self._lock:
            return self._take(growth)

    def reserve(self, growth: int) -> None:
        """Reserves `growth` bytes before they are written: settles what was
        written, then holds at least `growth` bytes anew if the user's
        usage (home, every session's holds, volumes, image and writable
        layers as last measured) leaves room.

        Args:
            growth: Bytes about to be added to the home directory.

        Raises:
            QuotaExceeded: They would take the user past the quota (holding
                exactly the quota is allowed); the session then holds nothing.
            NotFound: The user is gone.
            DatabaseUnavailable: The database cannot be reached.
        """
        with self._lock:
            if self._take(growth):
                return
            with self.store.user_transaction(self.user_id) as tx:
                tx.add_home(self.written)
                tx.set_disk_hold(self.holder, 0)
                user = tx.user
                total = (int(user.disk_home) + tx.disk_held() + int(user.disk_volumes or 0)
                         + int(user.disk_images or 0) + int(user.disk_containers or 0))
                room = self.quota - total
                grant = min(room, max(growth, min(HOLD_CHUNK, room // 4))) if growth <= room else 0
                tx.set_disk_hold(self.holder, grant)
            self.held, self.written, self._renewed = grant, 0, time.monotonic()
            if growth > room:
                raise QuotaExceeded(
                    f"disk quota exceeded: you hold {total} of {self.quota} bytes "
                    "(files, volumes, images and containers together)")
            self.written = growth

    def give_back(self, removed: int) -> None:
        """Lowers the home directory's figure by `removed` bytes (a file
        deleted, truncated or replaced).

        Raises:
            NotFound: The user is gone.
            DatabaseUnavailable: The database cannot be reached.
        """
        if removed > 0:
            give_back(self.store, self.user_id, removed)

    def settle(self) -> None:
        """Adds what was written to the home directory's figure and gives the
        rest of the hold back (the session's last file open for writing
        closed, or the session ended).

        Raises:
            NotFound: The user is gone.
            DatabaseUnavailable: The database cannot be reached.
        """
        with self._lock:
            if not self.held and not self.written:
                return
            with self.store.user_transaction(self.user_id) as tx:
                tx.add_home(self.written)
                tx.set_disk_hold(self.holder, 0)
            self.held = self.written = 0

    def _take(self, growth: int) -> bool:
        if growth <= 0:
            return True
        fresh = self._renewed is not None and time.monotonic() - self._renewed < RENEW_AFTER
        if fresh and self.held - self.written >= growth:
            self.written += growth
            return True
        return False


def give_back(store: Store, user_id: int, removed: int) -> None:
    """Lowers a user's home directory figure by `removed` bytes (never below 0).

    Raises:
        NotFound: The user is gone.
        DatabaseUnavailable: The database cannot be reached.
    """
    with store.user_transaction(user_id) as tx:
        tx.add_home(-removed)


def expiry(now: dt.datetime | None = None) -> dt.datetime:
    """Returns the naive UTC time before which holds have expired (`HOLD_TTL`)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - dt.timedelta(seconds=HOLD_TTL)).replace(tzinfo=None)
