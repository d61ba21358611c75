"""Provides the database queries of user administration, self-service keys
and passwords, quotas and the audit log viewer.

Functions that change rows do not open a transaction themselves: callers
wrap a check and the change it guards in one `Store.write()` block
(docs/ARCHITECTURE.md invariant 3). All of them block; call them from threads.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee as pw

from sshpanel.store.models import AuditEntry, Container, PublicKey, User

USER_FIELDS = frozenset(
    {
        "role",
        "disabled",
        "password_hash",
        "quota_containers",
        "quota_memory",
        "quota_cpus",
        "quota_pids",
        "quota_port_low",
        "quota_port_high",
    }
)
"""Columns `update_user` may change."""


def update_user(user_id: int, **fields: Any) -> None:
    """Sets columns of one user (names from `USER_FIELDS`); call inside `write()`.

    Raises:
        ValueError: A column that may not be set this way (a programming error).
    """
    unknown = set(fields) - USER_FIELDS
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}")
    if fields:
        User.update(**fields).where(User.id == user_id).execute()


def delete_user(user_id: int) -> None:
    """Deletes a user; keys, container records, events and scripts go with it
    (ON DELETE CASCADE). Audit entries stay: they name the actor, not the row.
    Call inside `write()` after checking no live container remains."""
    User.delete().where(User.id == user_id).execute()


def key_counts() -> dict[int, int]:
    """Returns user id -> number of public keys."""
    query = PublicKey.select(PublicKey.user, pw.fn.COUNT(PublicKey.id)).group_by(PublicKey.user).tuples()
    return {user_id: count for user_id, count in query}


def count_keys(user_id: int) -> int:
    """Returns how many public keys a user has."""
    return PublicKey.select().where(PublicKey.user == user_id).count()


def key_by_fingerprint(user_id: int, fingerprint: str) -> PublicKey | None:
    """Returns one of the user's keys by its SHA256 fingerprint, or None."""
    return PublicKey.get_or_none((PublicKey.user == user_id) & (PublicKey.fingerprint == fingerprint))


def delete_key(key_id: int) -> None:
    """Deletes one public key; call inside `write()`."""
    PublicKey.delete().where(PublicKey.id == key_id).execute()


def usage_by_user() -> dict[int, tuple[int, int, float]]:
    """Returns user id -> (live containers, memory bytes, CPUs) of every user,
    counting in-flight reservations like `Store.usage`."""
    query = (
        Container.select(
            Container.user,
            pw.fn.COUNT(Container.id),
            pw.fn.COALESCE(pw.fn.SUM(Container.memory), 0),
            pw.fn.COALESCE(pw.fn.SUM(Container.cpus), 0.0),
        )
        .where(Container.removed.is_null())
        .group_by(Container.user)
        .tuples()
    )
    return {user_id: (int(count), int(memory), float(cpus)) for user_id, count, memory, cpus in query}


def published_ports(exclude_container: int | None = None) -> dict[tuple[int, str], tuple[int, str]]:
    """Returns (host port, protocol) -> (user id, container name) for every
    port a live container record publishes (read from its stored spec).

    Args:
        exclude_container: A record id to leave out.
    """
    query = Container.select(Container.id, Container.user, Container.name, Container.spec).where(
        Container.removed.is_null()
    )
    found: dict[tuple[int, str], tuple[int, str]] = {}
    for row in query:
        if row.id == exclude_container:
            continue
        try:
            ports = json.loads(row.spec).get("ports") or []
        except (ValueError, AttributeError):
            continue
        for port in ports:
            found[(int(port["host"]), str(port.get("protocol", "tcp")))] = (row.user_id, row.name)
    return found


def audit_query(
    actor: str | None = None,
    since: dt.datetime | None = None,
    action: str | None = None,
    outcome: str | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Returns audit entries, newest first.

    Args:
        actor: Only this user's actions.
        since: Only entries at or after this time (UTC, naive).
        action: Only this action (`stop`, `user.add`, ...).
        outcome: Only outcomes starting with this text (`ok`, `failed`, `error`).
        limit: At most this many entries.
    """
    query = AuditEntry.select()
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.time >= since)
    if action:
        query = query.where(AuditEntry.action == action)
    if outcome:
        query = query.where(AuditEntry.outcome.startswith(outcome))
    return list(query.order_by(AuditEntry.time.desc(), AuditEntry.id.desc()).limit(limit))
