"""Provides `recover_interrupted_creates`, the start-up repair of what a
killed panel process left between its database and the engine (issue 7).

`Workspace.create` reserves a record (no Docker ID yet), creates the Docker
container, then writes its ID into the record. A process killed in between
leaves a reservation that holds the name and counts against the quota
forever, and perhaps a labelled container that no record claims. At start,
before any session can create anything, each reservation is completed when
the engine has exactly the container it was creating (same Docker name,
owner and name labels, claimed by no other record), else dropped; labelled
containers still without a record are logged for admins and left alone
(DESIGN.md invariant 7). One process serves one database (see
`sshpanel.store.models`), so no reservation can belong to a live create.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sshpanel.access.names import docker_container_name
from sshpanel.backend.engine import Engine, translate_errors
from sshpanel.backend.recorder import UNCLAIMED_AGE
from sshpanel.config import Settings
from sshpanel.store import Store

log = logging.getLogger("sshpanel.recovery")


@dataclass(frozen=True)
class RecoveryReport:
    """What the start-up repair did.

    Attributes:
        completed: `owner/name` of reservations completed with the container
            their interrupted create had made.
        dropped: `owner/name` of reservations deleted: no container was made.
        unclaimed: Full IDs of labelled containers no record claims.
    """

    completed: tuple[str, ...]
    dropped: tuple[str, ...]
    unclaimed: tuple[str, ...]


def recover_interrupted_creates(store: Store, engine: Engine, settings: Settings) -> RecoveryReport:
    """Completes or drops the reservations of interrupted creates and reports
    labelled containers without a record. Call once at start, before the
    server accepts connections (blocks: Docker and database calls).

    Labelled containers younger than `UNCLAIMED_AGE` are logged here; the
    events recorder's first reconciliation logs the older ones (it skips young
    ones as creates in flight), so each is reported once.

    Args:
        store: The database repository.
        engine: The Docker engine.
        settings: Namespace and label keys.

    Returns:
        The report.

    Raises:
        EngineUnavailable, EngineError: The engine could not be listed.
    """
    label = settings.label_owner
    with translate_errors():
        listed = engine.client.api.containers(all=True, filters={"label": label})
    by_name = {(item.get("Names") or ["/"])[0].lstrip("/"): item for item in listed}
    completed, dropped = [], []
    for row in store.live_containers():
        if row.docker_id:
            continue
        owner = row.user.name
        who = f"{owner}/{row.name}"
        item = by_name.get(docker_container_name(settings.namespace, owner, row.name))
        labels = (item or {}).get("Labels") or {}
        if (
            item is not None
            and labels.get(label) == owner
            and labels.get(f"{settings.label_prefix}name") == row.name
            and store.container_by_docker_id(item["Id"]) is None
        ):
            store.attach_docker_id(row.id, item["Id"])
            store.add_event(row.user_id, row.id, "create", detail=row.image)
            completed.append(who)
            log.warning("start: completed the interrupted create of %s (container %s)", who, item["Id"][:12])
        else:
            store.drop_reservation(row.id)
            dropped.append(who)
            log.warning("start: dropped the reservation of %s: its create was interrupted before Docker made it", who)
    now = time.time()
    unclaimed = []
    for item in listed:
        if store.container_by_docker_id(item["Id"]) is not None:
            continue
        unclaimed.append(item["Id"])
        if now - item.get("Created", 0) < UNCLAIMED_AGE:
            log.warning(
                "start: container %s (%s) carries owner label %r but no record claims it; left alone",
                (item.get("Names") or ["/"])[0].lstrip("/"), item["Id"][:12], (item.get("Labels") or {}).get(label, ""),
            )
    return RecoveryReport(tuple(completed), tuple(dropped), tuple(unclaimed))
