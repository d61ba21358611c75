"""Provides the connection and login limits asyncssh lacks
(docs/PITFALLS.md "asyncssh server defaults"):
OpenSSH-style `MaxStartups` admission, a per-source cap on unauthenticated
connections, `PerSourcePenalties` after repeated failures, per-account
throttling, and per-user counts of sessions and of forwarded connections.

All state is per server instance (no module globals) and touched only on the
event loop thread. Tables keyed by what a client chooses (its address, the
login name it types) are bounded: an entry is forgotten once its refusal
window has ended and it has been quiet for a while, and past
`LimitSettings.max_tracked` entries the least recently active one goes.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass
class LimitSettings:
    """Numbers behind the limits.

    Attributes:
        startups: OpenSSH `MaxStartups start:rate:full` — past `start`
            unauthenticated connections refuse with probability `rate` %,
            rising linearly to 100 % at `full`.
        per_source_unauthenticated: Unauthenticated connections one address
            may hold at once.
        penalty_after: Authentication failures from one address before it is
            refused for a while (OpenSSH 9.8 `PerSourcePenalties`).
        penalty_seconds: First refusal window; doubles with each further
            failure, capped at `penalty_max_seconds`.
        penalty_max_seconds: Longest refusal window.
        account_max_failures: Consecutive failures on one account before its
            logins are throttled (NIST SP 800-63B 5.2.2: at most 100).
        account_lock_seconds: How long a throttled account refuses logins.
        sessions_per_user: Concurrent SSH sessions (channels) one user may hold.
        sessions_per_connection: Sessions (channels) one connection may open.
        forwards_per_user: Forwarded connections (`direct-tcpip` channels)
            one user may hold open at once (issue 25).
        max_tracked: Most addresses, and most login names, whose failures
            are remembered at once.
    """

    startups: tuple[int, int, int] = (10, 30, 100)
    per_source_unauthenticated: int = 10
    penalty_after: int = 10
    penalty_seconds: float = 5.0
    penalty_max_seconds: float = 600.0
    account_max_failures: int = 100
    account_lock_seconds: float = 900.0
    sessions_per_user: int = 20
    sessions_per_connection: int = 10
    forwards_per_user: int = 32
    max_tracked: int = 10_000


@dataclass
class Streak:
    """Failures of one address or one account.

    Attributes:
        failures: Failures counted (since the last success or lock).
        last: Clock time of the last failure, seconds.
        until: Clock time until which logins are refused; 0 = not refused.
    """

    failures: int = 0
    last: float = 0.0
    until: float = 0.0


class StreakTable:
    """Failure streaks keyed by an attacker-chosen text, bounded in size.

    An entry is forgotten when its refusal window has ended and no failure
    came for `quiet_seconds` (its count then starts again from zero); past
    `capacity` entries, the least recently failed one that is not refusing
    logins is dropped, so a flood of new names cannot lift a penalty.

    Args:
        capacity: Most entries kept (at least 1).
        quiet_seconds: Quiet time after which an entry is forgotten.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, capacity: int, quiet_seconds: float, clock: Callable[[], float]) -> None:
        self.capacity = max(1, capacity)
        self.quiet_seconds = quiet_seconds
        self.clock = clock
        self._entries: OrderedDict[str, Streak] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _expired(self, streak: Streak, now: float) -> bool:
        return now >= streak.until and now - streak.last >= self.quiet_seconds

    def get(self, key: str) -> Streak | None:
        """Returns the live streak of `key`, or None (forgetting an expired one)."""
        streak = self._entries.get(key)
        if streak is not None and self._expired(streak, self.clock()):
            del self._entries[key]
            return None
        return streak

    def fail(self, key: str) -> Streak:
        """Counts one failure of `key` and returns its streak (to set `until`)."""
        now = self.clock()
        streak = self.get(key)
        if streak is None:
            self._make_room(now)
            streak = self._entries[key] = Streak()
        else:
            self._entries.move_to_end(key)
        streak.failures += 1
        streak.last = now
        return streak

    def refusing(self) -> list[tuple[str, float]]:
        """Returns `(key, seconds left)` of every entry refusing logins now."""
        now = self.clock()
        return [(key, streak.until - now) for key, streak in self._entries.items() if streak.until > now]

    def forget(self, key: str) -> None:
        """Drops `key`'s streak (a success)."""
        self._entries.pop(key, None)

    def _make_room(self, now: float) -> None:
        """Drops expired entries from the least recent end; when the table is
        still full, drops the least recent entry not refusing logins (or, if
        every one is, the least recent)."""
        while self._entries and self._expired(next(iter(self._entries.values())), now):
            self._entries.popitem(last=False)
        if len(self._entries) < self.capacity:
            return
        victim = next((key for key, streak in self._entries.items() if now >= streak.until), None)
        if victim is None:
            self._entries.popitem(last=False)
        else:
            del self._entries[victim]


class SessionLimits(Protocol):
    """The per-user counts of sessions and of forwarded connections that
    every connection of a user shares: `Limits` in a single process,
    `worker.WorkerLimits` in a worker of `serve --workers`.

    Attributes:
        settings: The numbers (`sessions_per_connection` and the others).
    """

    settings: LimitSettings

    def open_session(self, user: str) -> bool:
        """Counts a new session of `user`; False when over the per-user limit."""
        ...

    def close_session(self, user: str) -> None:
        """Releases a session counted by `open_session`."""
        ...

    def open_forward(self, user: str) -> bool:
        """Counts a new forwarded connection of `user`; False when over the
        per-user limit."""
        ...

    def close_forward(self, user: str) -> None:
        """Releases a forwarded connection counted by `open_forward`."""
        ...


@dataclass
class Limits:
    """The live counters behind `LimitSettings`.

    Args:
        settings: The numbers.
        clock: Monotonic clock in seconds (tests pass their own).
        chance: Random source in [0, 1) for `MaxStartups` (tests pass their own).
    """

    settings: LimitSettings = field(default_factory=LimitSettings)
    clock: Callable[[], float] = time.monotonic
    chance: Callable[[], float] = random.random
    unauthenticated: int = 0
    _per_source: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _user_sessions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _user_forwards: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def __post_init__(self) -> None:
        limits = self.settings
        self.sources = StreakTable(limits.max_tracked, limits.penalty_max_seconds, self.clock)
        """Failures per source address (`PerSourcePenalties`)."""
        self.accounts = StreakTable(limits.max_tracked, limits.account_lock_seconds, self.clock)
        """Failures per login name (NIST SP 800-63B throttling)."""

    def refusal_probability(self, unauthenticated: int) -> float:
        """OpenSSH `MaxStartups start:rate:full`: the chance that a new
        connection is refused while `unauthenticated` others are pending.

        Returns:
            0.0 below `start`, `rate` % at `start` rising linearly to 1.0 at
            `full`, 1.0 from `full` on.
        """
        start, rate, full = self.settings.startups
        if unauthenticated >= full:
            return 1.0
        if unauthenticated < start:
            return 0.0
        return (rate + (100 - rate) * (unauthenticated - start) / max(1, full - start)) / 100

    def admit(self, source: str) -> str | None:
        """Decides whether a new connection from `source` (an IP) may proceed.

        Returns:
            None to admit (the connection is then counted as unauthenticated
            until `authenticated` or `released`), else the refusal reason.
        """
        streak = self.sources.get(source)
        if streak is not None and self.clock() < streak.until:
            return "too many authentication failures from your address; try again later"
        if self._per_source[source] >= self.settings.per_source_unauthenticated:
            return "too many unauthenticated connections from your address"
        probability = self.refusal_probability(self.unauthenticated)
        if probability >= 1.0 or (probability > 0.0 and self.chance() < probability):
            return "too many unauthenticated connections"
        self.unauthenticated += 1
        self._per_source[source] += 1
        return None

    def authenticated(self, source: str, account: str) -> None:
        """An admitted connection authenticated: it no longer counts as
        unauthenticated, and the account's failure streak ends."""
        self._release(source)
        self.accounts.forget(account)
        self.sources.forget(source)

    def released(self, source: str) -> None:
        """An admitted connection closed before authenticating."""
        self._release(source)

    def _release(self, source: str) -> None:
        if self._per_source.get(source, 0) > 0:
            self.unauthenticated = max(0, self.unauthenticated - 1)
            self._per_source[source] -= 1
            if not self._per_source[source]:
                del self._per_source[source]

    def account_locked(self, account: str) -> bool:
        """True while `account` is throttled after too many failures."""
        streak = self.accounts.get(account)
        return streak is not None and self.clock() < streak.until

    def failed(self, source: str, account: str) -> None:
        """Counts one authentication failure against the address and the account."""
        now = self.clock()
        source_streak = self.sources.fail(source)
        excess = source_streak.failures - self.settings.penalty_after
        if excess >= 0:
            window = min(self.settings.penalty_seconds * 2 ** min(excess, 64), self.settings.penalty_max_seconds)
            source_streak.until = now + window
        account_streak = self.accounts.fail(account)
        if account_streak.failures >= self.settings.account_max_failures:
            account_streak.until = now + self.settings.account_lock_seconds
            account_streak.failures = 0

    def open_session(self, user: str) -> bool:
        """Counts a new session of `user`; False when over the per-user limit."""
        return _take(self._user_sessions, user, self.settings.sessions_per_user)

    def close_session(self, user: str) -> None:
        """Releases a session counted by `open_session`."""
        _give_back(self._user_sessions, user)

    def open_forward(self, user: str) -> bool:
        """Counts a new forwarded connection of `user`; False when over the
        per-user limit (`LimitSettings.forwards_per_user`)."""
        return _take(self._user_forwards, user, self.settings.forwards_per_user)

    def close_forward(self, user: str) -> None:
        """Releases a forwarded connection counted by `open_forward`."""
        _give_back(self._user_forwards, user)


def _take(counts: dict[str, int], user: str, most: int) -> bool:
    """Counts one more for `user` unless `most` are counted already."""
    if counts[user] >= most:
        return False
    counts[user] += 1
    return True


def _give_back(counts: dict[str, int], user: str) -> None:
    """Counts one less for `user`, forgetting a user at zero (the table stays
    as small as what is open)."""
    if counts.get(user, 0) > 0:
        counts[user] -= 1
        if not counts[user]:
            del counts[user]
