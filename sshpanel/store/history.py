"""Provides the history queries: a user's event timeline, deployments and
failures counted per day, the newest record, the race-free "mark removed
once", and the look-ups the events recorder deduplicates with.

Times are naive UTC in the database; days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable, Sequence

import peewee as pw

from sshpanel.store.models import Container, Event, utcnow
from sshpanel.store.store import Store


def record_removal(store: Store, container_id: int, detail: str, when: dt.datetime | None = None) -> bool:
    """Marks a container record removed and adds its `remove` event, once.

    Two writers may notice the same removal (the Workspace that removed it,
    a listing that no longer finds it, the events listener): only the first
    one, inside one write transaction, marks the record and writes the event.

    Args:
        store: The repository (for its write transaction).
        container_id: Database id of the record.
        detail: Event detail (`removed`, `removed outside the panel`).
        when: Time of the removal, naive UTC (default now).

    Returns:
        True when this call marked it; False when it was marked already or
        the record does not exist.
    """
    when = when or utcnow()
    with store.write():
        row = Container.get_or_none(Container.id == container_id)
        if row is None:
            return False
        marked = (
            Container.update(removed=when)
            .where((Container.id == container_id) & Container.removed.is_null())
            .execute()
        )
        if not marked:
            return False
        Event.create(user=row.user_id, container=container_id, kind="remove", detail=detail[:2000], time=when)
    return True


def has_event(container_id: int, kinds: Sequence[str], start: dt.datetime, end: dt.datetime) -> bool:
    """True when the record has an event of one of `kinds` between two times
    (naive UTC, inclusive)."""
    return (
        Event.select()
        .where(
            (Event.container == container_id)
            & Event.kind.in_(list(kinds))
            & (Event.time >= start)
            & (Event.time <= end)
        )
        .exists()
    )


def records_matching(user_id: int, ref: str) -> list[Container]:
    """Returns a user's created container records, removed ones included,
    whose name is `ref`, or else the one whose Docker ID starts with `ref`
    (a name may have been reused: every record of that name is returned)."""
    base = Container.select().where((Container.user == user_id) & Container.docker_id.is_null(False))
    named = list(base.where(Container.name == ref).order_by(Container.id))
    if named or not ref or any(c not in "0123456789abcdef" for c in ref.lower()):
        return named
    hits = list(base.where(Container.docker_id.startswith(ref.lower())).order_by(Container.id))
    return hits if len(hits) == 1 else []


def timeline(
    user_id: int, container_ids: Iterable[int] | None = None, since: dt.datetime | None = None, limit: int = 500
) -> list[Event]:
    """Returns a user's events, newest first, with their container record
    joined (`event.container` is None for events of no container).

    Args:
        user_id: The user.
        container_ids: Only events of these records; None for all.
        since: Only events at or after this time (naive UTC).
        limit: At most this many.
    """
    query = (
        Event.select(Event, Container)
        .join(Container, pw.JOIN.LEFT_OUTER, on=(Event.container == Container.id))
        .where(Event.user == user_id)
    )
    if container_ids is not None:
        query = query.where(Event.container.in_(list(container_ids)))
    if since is not None:
        query = query.where(Event.time >= since)
    return list(query.order_by(Event.time.desc(), Event.id.desc()).limit(limit))


def daily_counts(
    user_id: int,
    since: dt.datetime,
    deployment_kinds: Sequence[str],
    failure_kinds: Sequence[str],
    container_ids: Iterable[int] | None = None,
) -> dict[str, tuple[int, int]]:
    """Counts a user's deployments and failures per UTC day.

    A deployment is an event with `ok` true and a kind in `deployment_kinds`;
    a failure one with `ok` false and a kind in `failure_kinds` (the rules
    live in `sshpanel.backend.user.history`).

    Returns:
        `{"YYYY-MM-DD": (deployments, failures)}` for the days that have any
        event since `since` (naive UTC).
    """
    day = pw.fn.DATE(Event.time)
    deployed = pw.Case(None, [((Event.ok == True) & Event.kind.in_(list(deployment_kinds)), 1)], 0)  # noqa: E712
    failed = pw.Case(None, [((Event.ok == False) & Event.kind.in_(list(failure_kinds)), 1)], 0)  # noqa: E712
    query = Event.select(day, pw.fn.SUM(deployed), pw.fn.SUM(failed)).where(
        (Event.user == user_id) & (Event.time >= since)
    )
    if container_ids is not None:
        query = query.where(Event.container.in_(list(container_ids)))
    return {str(row[0])[:10]: (int(row[1] or 0), int(row[2] or 0)) for row in query.group_by(day).tuples()}


def latest_event(user_id: int, container_ids: Iterable[int] | None = None) -> Event | None:
    """Returns the user's newest event (with its container joined), or None."""
    rows = timeline(user_id, container_ids, limit=1)
    return rows[0] if rows else None
