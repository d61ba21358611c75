"""Provides the connection and login limits asyncssh lacks (PITFALLS.md):
OpenSSH-style `MaxStartups` admission, a per-source cap on unauthenticated
connections, `PerSourcePenalties` after repeated failures, per-account
throttling, and per-user session counts.

All state is per server instance (no module globals) and touched only on the
event loop thread.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable


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
    _source_failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _source_blocked_until: dict[str, float] = field(default_factory=dict)
    _account_failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _account_locked_until: dict[str, float] = field(default_factory=dict)
    _user_sessions: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def admit(self, source: str) -> str | None:
        """Decides whether a new connection from `source` (an IP) may proceed.

        Returns:
            None to admit (the connection is then counted as unauthenticated
            until `authenticated` or `released`), else the refusal reason.
        """
        until = self._source_blocked_until.get(source)
        if until is not None and self.clock() < until:
            return "too many authentication failures from your address; try again later"
        if self._per_source[source] >= self.settings.per_source_unauthenticated:
            return "too many unauthenticated connections from your address"
        start, rate, full = self.settings.startups
        if self.unauthenticated >= full:
            return "too many unauthenticated connections"
        if self.unauthenticated >= start:
            probability = (rate + (100 - rate) * (self.unauthenticated - start) / max(1, full - start)) / 100
            if self.chance() < probability:
                return "too many unauthenticated connections"
        self.unauthenticated += 1
        self._per_source[source] += 1
        return None

    def authenticated(self, source: str, account: str) -> None:
        """An admitted connection authenticated: it no longer counts as
        unauthenticated, and the account's failure streak ends."""
        self._release(source)
        self._account_failures.pop(account, None)
        self._source_failures.pop(source, None)

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
        until = self._account_locked_until.get(account)
        if until is None:
            return False
        if self.clock() >= until:
            del self._account_locked_until[account]
            return False
        return True

    def failed(self, source: str, account: str) -> None:
        """Counts one authentication failure against the address and the account."""
        self._source_failures[source] += 1
        excess = self._source_failures[source] - self.settings.penalty_after
        if excess >= 0:
            window = min(self.settings.penalty_seconds * 2**excess, self.settings.penalty_max_seconds)
            self._source_blocked_until[source] = self.clock() + window
        self._account_failures[account] += 1
        if self._account_failures[account] >= self.settings.account_max_failures:
            self._account_locked_until[account] = self.clock() + self.settings.account_lock_seconds
            self._account_failures[account] = 0

    def open_session(self, user: str) -> bool:
        """Counts a new session of `user`; False when over the per-user limit."""
        if self._user_sessions[user] >= self.settings.sessions_per_user:
            return False
        self._user_sessions[user] += 1
        return True

    def close_session(self, user: str) -> None:
        """Releases a session counted by `open_session`."""
        if self._user_sessions.get(user, 0) > 0:
            self._user_sessions[user] -= 1
            if not self._user_sessions[user]:
                del self._user_sessions[user]
