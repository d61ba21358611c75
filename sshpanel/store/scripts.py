"""Provides the queries over users' provisioning scripts (`Script` rows).

Every function takes the owner's user id and only ever touches that user's rows
(docs/ARCHITECTURE.md invariant 1). Call them from worker threads, like
`Store`.
"""

from __future__ import annotations

from sshpanel.store.models import Script, utcnow
from sshpanel.store.store import Store


def scripts_of(user_id: int) -> list[Script]:
    """Returns a user's scripts, by name."""
    return list(Script.select().where(Script.user == user_id).order_by(Script.name))


def script_named(user_id: int, name: str) -> Script | None:
    """Returns the user's script called `name`, or None."""
    return Script.get_or_none((Script.user == user_id) & (Script.name == name))


def save_script(store: Store, user_id: int, name: str, body: str) -> tuple[Script, bool]:
    """Creates the user's script `name`, or replaces the body of the existing one.

    Args:
        store: For the write transaction.
        user_id: The owner.
        name: A validated script name.
        body: The script text.

    Returns:
        (the row, True when it was created rather than replaced).
    """
    with store.write():
        row = Script.get_or_none((Script.user == user_id) & (Script.name == name))
        if row is None:
            return Script.create(user=user_id, name=name, body=body, created=utcnow()), True
        Script.update(body=body).where(Script.id == row.id).execute()
        row.body = body
        return row, False


def delete_script(store: Store, user_id: int, name: str) -> bool:
    """Deletes the user's script `name`.

    Returns:
        True when a script was deleted, False when the user has none by that name.
    """
    with store.write():
        return Script.delete().where((Script.user == user_id) & (Script.name == name)).execute() > 0
