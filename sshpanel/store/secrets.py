"""Provides the database queries of environment secrets (issue 6); values
arrive and leave encrypted (`sshpanel.backend.user.secrets`)."""

from __future__ import annotations

import datetime as dt

from sshpanel.store.models import Secret, SecretKeyCheck, utcnow
from sshpanel.store.store import Store


def put(store: Store, user_id: int, name: str, key: str, token: str) -> bool:
    """Adds or replaces the secret `key` of the user's container `name`.

    Returns:
        True when it was added, False when it replaced one.
    """
    with store.write():
        updated = (
            Secret.update(value=token, updated=utcnow())
            .where((Secret.user == user_id) & (Secret.name == name) & (Secret.key == key))
            .execute()
        )
        if not updated:
            Secret.create(user=user_id, name=name, key=key, value=token)
    return not updated


def remove(store: Store, user_id: int, name: str, key: str) -> bool:
    """Removes a secret; returns False when there was none."""
    with store.write():
        return bool(
            Secret.delete()
            .where((Secret.user == user_id) & (Secret.name == name) & (Secret.key == key))
            .execute()
        )


def listed(user_id: int, name: str) -> list[tuple[str, str, dt.datetime]]:
    """Returns (key, token, updated) of the user's secrets of container
    `name`, by key."""
    query = Secret.select().where((Secret.user == user_id) & (Secret.name == name)).order_by(Secret.key)
    return [(row.key, row.value, row.updated) for row in query]


def key_check(store: Store, made: str) -> str:
    """Returns the secret key's check token, storing `made` (a token of the
    caller's key) when the database has none yet; of two panels starting at
    once, the first to commit sets it."""
    with store.write():
        SecretKeyCheck.insert(id=1, token=made).on_conflict_ignore().execute()
    return SecretKeyCheck.get_by_id(1).token


def any_token() -> str | None:
    """Returns the newest secret's token (for databases whose secrets predate
    the check token), or None when there is no secret."""
    row = Secret.select(Secret.value).order_by(Secret.id.desc()).first()
    return None if row is None else row.value
