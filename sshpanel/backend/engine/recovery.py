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
(docs/ARCHITECTURE.md invariant 7). It runs before any session is served (with
`serve --workers`, in the supervisor before the workers start), so no
reservation can belong to a live create; a worker killed in the middle of
a create leaves its reservation until the panel's next start.

A killed `deploy` that was replacing a container (`sshpanel.backend.pipeline.deploy`)
leaves the old one stopped, renamed `<docker name>.replaced-<id>` and its
record set aside (marked removed), and perhaps the new one not yet
settled. The deployment never finished, so it counts as failed, as a
failed settle would: the new container (if any) is removed, the old one
gets its name and record back, stopped (the user starts it: whether it ran
before is not known), and a failed `deploy` event says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass

from sshpanel.access.names import docker_container_name
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.recorder import UNCLAIMED_AGE
from sshpanel.config import Settings
from sshpanel.errors import NotFound, PanelError
from sshpanel.store import Store, deployments

log = logging.getLogger("sshpanel.recovery")


@dataclass(frozen=True)
class RecoveryReport:
    """What the start-up repair did.

    Attributes:
        completed: `owner/name` of reservations completed with the container
            their interrupted create had made.
        dropped: `owner/name` of reservations deleted: no container was made.
        unclaimed: Full IDs of labelled containers no record claims.
        restored: `owner/name` of containers an interrupted deploy had set
            aside, given their name and record back.
    """

    completed: tuple[str, ...]
    dropped: tuple[str, ...]
    unclaimed: tuple[str, ...]
    restored: tuple[str, ...] = ()


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
    listed = engine.containers(all=True, filters={"label": label})
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
    restored = _restore_set_aside(store, engine, settings, listed)
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
    return RecoveryReport(tuple(completed), tuple(dropped), tuple(unclaimed), tuple(restored))


def _restore_set_aside(store: Store, engine: Engine, settings: Settings, listed: list[dict]) -> list[str]:
    """Puts back the containers of interrupted deploy replacements (see the
    module docstring); returns their `owner/name`. A container that cannot
    be put back is logged and left as it is."""
    restored = []

    for item in listed:
        labels = item.get("Labels") or {}
        owner, name = labels.get(settings.label_owner, ""), labels.get(f"{settings.label_prefix}name", "")
        docker_name = docker_container_name(settings.namespace, owner, name) if owner and name else ""
        shown = (item.get("Names") or ["/"])[0].lstrip("/")
        row = store.container_by_docker_id(item["Id"])
        if (not docker_name or not re.fullmatch(re.escape(docker_name) + r"\.replaced-[0-9a-f]{12}", shown)
                or row is None or row.removed is None or row.name != name or row.user.name != owner):
            continue
        who = f"{owner}/{name}"
        if _replacement_deployed(store, row.user_id, name):
            with contextlib.suppress(PanelError):
                engine.remove_container(item["Id"], force=True)
                store.add_event(row.user_id, row.id, "remove", detail="replaced by a deployment")
                log.warning("start: removed %s's old container %s, replaced by a deployment", who, item["Id"][:12])
            continue
        try:
            for live in store.containers_of(row.user_id):
                if live.name == name:
                    with contextlib.suppress(NotFound):
                        engine.remove_container(live.docker_id, force=True)
                    store.mark_removed(live.id)
                    store.add_event(row.user_id, live.id, "remove", detail="its deploy was interrupted")
            engine.rename(item["Id"], docker_name)
        except PanelError as exc:
            log.error("start: could not put back %s, set aside by an interrupted deploy: %s", who, exc.message)
            continue
        deployments.bring_back(store, row.id)
        store.add_event(row.user_id, row.id, "deploy", ok=False,
                        detail=f"{row.image} back: the deploy replacing it was interrupted (stopped; start it)")
        restored.append(who)
        log.warning("start: put back %s (container %s), set aside by an interrupted deploy", who, item["Id"][:12])
    return restored


def _replacement_deployed(store: Store, user_id: int, name: str) -> bool:
    """Whether the live container of that name has a successful deployment
    recorded: then only the removal of the old one was interrupted."""
    return any(event.kind == "deploy" and event.ok
               for live in store.containers_of(user_id) if live.name == name
               for event in store.events_of(user_id, live.id, limit=20))
