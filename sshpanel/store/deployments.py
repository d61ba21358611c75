"""Provides the database queries of deployments (issue 6): the images a
container name was deployed with, and setting a container record aside
while its replacement is tried."""

from __future__ import annotations

from sshpanel.store.models import Container, Event, utcnow
from sshpanel.store.store import Store


def deployed_images(user_id: int, name: str, limit: int = 20) -> list[str]:
    """Returns the image references of the successful deployments of the
    user's container `name`, newest first (`deploy` events whose detail
    starts with the reference)."""
    query = (
        Event.select(Event.detail)
        .join(Container)
        .where(
            (Event.user == user_id) & (Container.name == name)
            & (Event.kind == "deploy") & (Event.ok == True)  # noqa: E712 (peewee expression)
        )
        .order_by(Event.time.desc(), Event.id.desc())
        .limit(limit)
    )
    return [row.detail.split(" ", 1)[0] for row in query if row.detail]


def set_aside(store: Store, container_id: int) -> None:
    """Marks a record removed without a history event: its container is being
    replaced and may come back (`bring_back`)."""
    with store.write():
        Container.update(removed=utcnow()).where(Container.id == container_id).execute()


def bring_back(store: Store, container_id: int) -> None:
    """Undoes `set_aside`: the replacement failed and the old container is
    the user's again."""
    with store.write():
        Container.update(removed=None).where(Container.id == container_id).execute()
