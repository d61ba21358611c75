"""Provides `WorkspaceHistory`, one user's history of deployments and
failures: the event timeline, per-day counts for the 30-day chart and the
newest record, plus the rules that say what counts as which.

Definitions (issue 4), applied to the `Event` table:

- A **deployment** is a successful `create` (also what `run` records),
  `run`, `deploy` or `provision`.
- A **failure** is an event with `ok` false of kind `create`, `run`,
  `start`, `build`, `provision` or `deploy` (a failed action), `die` (a
  non-zero exit the user did not ask for: the events recorder marks an exit
  after a kill/stop/restart request as ok), or `oom` (an out-of-memory
  kill, recorded once even when it also ends the container).

Days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sshpanel.access.text import quoted
from sshpanel.backend.user.scope import UserScope
from sshpanel.errors import InvalidValue, NotFound
from sshpanel.store import history as queries

DEPLOYMENT_KINDS = ("create", "run", "deploy", "provision")
FAILURE_KINDS = ("create", "run", "start", "build", "provision", "deploy", "die", "oom")
MAX_DAYS = 366


def is_deployment(kind: str, ok: bool) -> bool:
    """True when an event of this kind and outcome counts as a deployment."""
    return ok and kind in DEPLOYMENT_KINDS


def is_failure(kind: str, ok: bool) -> bool:
    """True when an event of this kind and outcome counts as a failure."""
    return not ok and kind in FAILURE_KINDS


@dataclass(frozen=True)
class HistoryEntry:
    """One event in a user's history.

    Attributes:
        time: When it happened, UTC.
        container: The container's short name ("" when none, e.g. a create
            that failed before Docker made the container).
        container_id: Full Docker ID ("" when none).
        kind: `create`, `start`, `stop`, `restart`, `remove`, `die`, `oom`,
            `kill`, `health`, `build`, `provision`, ...
        ok: False for a failed action, an unrequested non-zero exit, an OOM
            kill or an `unhealthy` health status.
        exit_code: Exit code of a `die` (or of the `oom` that ended the
            container), else None.
        detail: One line of detail (image, signal, reason, health status).
    """

    time: dt.datetime
    container: str
    container_id: str
    kind: str
    ok: bool
    exit_code: int | None
    detail: str

    @property
    def is_deployment(self) -> bool:
        """True when this counts as a deployment on the chart."""
        return is_deployment(self.kind, self.ok)

    @property
    def is_failure(self) -> bool:
        """True when this counts as a failure on the chart."""
        return is_failure(self.kind, self.ok)


@dataclass(frozen=True)
class DailyCount:
    """Deployments and failures of one UTC day.

    Attributes:
        date: The day.
        deployments: Number of deployments.
        failures: Number of failures.
    """

    date: dt.date
    deployments: int
    failures: int


class WorkspaceHistory:
    """The history of one user's containers (removed ones included).

    Args:
        scope: The user's scope.

    Methods block (database): call them in a thread from async code.
    """

    def __init__(self, scope: UserScope) -> None:
        self.scope = scope

    def events(self, ref: str | None = None, days: int = 30, limit: int = 500) -> list[HistoryEntry]:
        """Returns the user's events of the last `days` days, newest first.

        Args:
            ref: Only this container: a name (every container that had that
                name, removed ones too) or an ID prefix; None for all.
            days: How far back, 1-366 days.
            limit: At most this many events.

        Raises:
            InvalidValue: `days` out of range.
            NotFound: `ref` names none of the user's containers, past or present.
        """
        since = _now() - dt.timedelta(days=_check_days(days))
        rows = queries.timeline(self.scope.principal.user_id, self._records(ref), since, limit)
        return [_entry(row) for row in rows]

    def daily(self, days: int = 30, ref: str | None = None) -> list[DailyCount]:
        """Returns deployments and failures per UTC day, oldest first: one
        entry for each of the last `days` days, today included.

        Raises:
            InvalidValue: `days` out of range.
            NotFound: `ref` names none of the user's containers.
        """
        today = _now().date()
        first = today - dt.timedelta(days=_check_days(days) - 1)
        counts = queries.daily_counts(
            self.scope.principal.user_id,
            dt.datetime.combine(first, dt.time()),
            DEPLOYMENT_KINDS,
            FAILURE_KINDS,
            self._records(ref),
        )
        result = []
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            deployments, failures = counts.get(day.isoformat(), (0, 0))
            result.append(DailyCount(day, deployments, failures))
        return result

    def last_record(self, ref: str | None = None) -> HistoryEntry | None:
        """Returns the user's newest event (for the dashboard), or None.

        Raises:
            NotFound: `ref` names none of the user's containers.
        """
        row = queries.latest_event(self.scope.principal.user_id, self._records(ref))
        return None if row is None else _entry(row)

    def _records(self, ref: str | None) -> list[int] | None:
        if ref is None:
            return None
        rows = queries.records_matching(self.scope.principal.user_id, ref)
        if not rows:
            raise NotFound(f"no such container: {quoted(ref)}")
        return [row.id for row in rows]


def _now() -> dt.datetime:
    """Now as naive UTC, the way times are stored."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise InvalidValue(f"invalid number of days {days}: use 1 to {MAX_DAYS}")
    return days


def _entry(row) -> HistoryEntry:
    """Builds an entry from an `Event` row with its container joined."""
    container = row.container
    return HistoryEntry(
        time=row.time.replace(tzinfo=dt.timezone.utc),
        container=container.name if container is not None else "",
        container_id=(container.docker_id or "") if container is not None else "",
        kind=row.kind,
        ok=bool(row.ok),
        exit_code=row.exit_code,
        detail=row.detail,
    )
