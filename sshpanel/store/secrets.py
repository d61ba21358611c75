"""Provides the database queries of environment secrets (issue 6); values
arrive and leave encrypted (`sshpanel.backend.secrets`)."""

from __future__ import annotations

import datetime as dt

from sshpanel.store.models import Secret, utcnow
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
