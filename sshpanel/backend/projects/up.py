"""Provides what `compose up` needs beside the `Projects` service: waiting
for a `depends_on` condition, and `Rollback`, which puts a project back as
it was before an `up` that failed half-way (issue 22)."""

from __future__ import annotations

import contextlib
import time
from typing import Callable

from sshpanel.access.names import docker_container_name, docker_volume_name, project_network_name
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import EngineError, NotFound, PanelError, TimedOut
from sshpanel.store import deployments
from sshpanel.store.history import record_removal

CONDITION_TIMEOUT = 300.0
"""Seconds `up` waits for one dependency to be healthy or to complete."""
POLL = 0.25


def wait_for_condition(engine: Engine, row, condition: str, timeout: float = CONDITION_TIMEOUT) -> None:
    """Waits until the container of record `row` meets a `depends_on`
    condition, as docker compose does: `service_started` (running),
    `service_healthy` (its health check says healthy),
    `service_completed_successfully` (it exited with code 0).

    Raises:
        EngineError: It exited (with a code other than 0 for a completion),
            or became unhealthy; the message says which.
        TimedOut: Not met within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        state = engine.inspect_container(row.docker_id)["State"]
        health = (state.get("Health") or {}).get("Status")
        running = bool(state.get("Running"))
        if condition == "service_completed_successfully":
            if not running and state.get("Status") == "exited":
                if state.get("ExitCode") == 0:
                    return
                raise EngineError(f"dependency {row.name} exited with code {state.get('ExitCode')}")
        elif not running and state.get("Status") in ("exited", "dead"):
            raise EngineError(f"dependency {row.name} exited with code {state.get('ExitCode')}")
        elif condition == "service_started" or health == "healthy":
            return
        elif health == "unhealthy":
            raise EngineError(f"dependency {row.name} is unhealthy")
        elif condition == "service_healthy" and health is None:
            raise EngineError(f"dependency {row.name} has no healthcheck")
        if time.monotonic() >= deadline:
            raise TimedOut(f"dependency {row.name}: not {condition} after {timeout:g} s")
        time.sleep(POLL)


class Rollback:
    """What one `up` changed, to undo it when the `up` fails.

    Args:
        workspace: The user's workspace.
        project: The project's name.
        step: Progress lines.

    Attributes:
        reserved: service -> its new record (a Docker ID once created).
        volumes: The user's volumes this `up` created.
        network: True when this `up` created the project's network.
        aside: (old record, whether it ran) of containers being replaced.
    """

    def __init__(self, workspace: Workspace, project: str, step: Callable[[str], None]) -> None:
        self.workspace = workspace
        self.project = project
        self.step = step
        self.reserved: dict[str, object] = {}
        self.volumes: list[str] = []
        self.network = False
        self.aside: list[tuple[object, bool]] = []

    def set_aside(self, row) -> None:
        """Stops a container being replaced and renames it out of the way
        (its record was set aside in the reservation)."""
        engine = self.workspace.engine
        was_running = bool(engine.inspect_container(row.docker_id)["State"].get("Running"))
        self.aside.append((row, was_running))
        engine.stop(row.docker_id, timeout=10)
        engine.rename(row.docker_id, f"{self._docker_name(row.name)}.replaced-{row.docker_id[:12]}")

    def undo(self, error: PanelError, services: list[str]) -> None:
        """Removes what this `up` created and puts the replaced containers
        back; records a failed `deploy` per (re)created service. Best
        effort: each step is tried whatever the others did."""
        ws = self.workspace
        self.step(f"Error: {error.message}: putting the project back as it was")
        for service, row in self.reserved.items():
            if row.docker_id:
                with contextlib.suppress(PanelError):
                    ws.engine.remove_container(row.docker_id, force=True)
                record_removal(ws.store, row.id, "removed: compose up failed")
            else:
                ws.store.drop_reservation(row.id)
            ws.store.add_event(ws.principal.user_id, row.id if row.docker_id else None, "deploy", ok=False,
                               detail=f"{self.project}/{service} {error.message}")
        for row, was_running in self.aside:
            deployments.bring_back(ws.store, row.id)
            with contextlib.suppress(PanelError):
                ws.engine.rename(row.docker_id, self._docker_name(row.name))
                if was_running:
                    ws.engine.start(row.docker_id)
        for volume in self.volumes:
            with contextlib.suppress(PanelError):
                ws.engine.remove_volume(docker_volume_name(ws.settings.namespace, ws.principal.name, volume))
        if self.network:
            with contextlib.suppress(PanelError):
                remove_project_network(ws, self.project)

    def commit(self) -> None:
        """The `up` succeeded: removes the replaced containers for good."""
        ws = self.workspace
        for row, _was_running in self.aside:
            with contextlib.suppress(NotFound):
                ws.engine.remove_container(row.docker_id, force=True)
            ws.store.add_event(ws.principal.user_id, row.id, "remove", detail="replaced by compose up")

    def _docker_name(self, name: str) -> str:
        return docker_container_name(self.workspace.settings.namespace, self.workspace.principal.name, name)


def remove_project_network(ws: Workspace, project: str) -> bool:
    """Removes the user's project's network (`PROJECT_default`); True when
    there was one. A network of that name the user does not own is left."""
    name = project_network_name(ws.settings.namespace, ws.principal.name, project)
    for item in ws.engine.networks(names=[name]):
        if item.get("Name") == name and (item.get("Labels") or {}).get(ws.settings.label_owner) == ws.principal.name:
            with contextlib.suppress(NotFound):
                ws.engine.remove_network(item["Id"])
            return True
    return False
