"""Provides `Deployer`: `deploy NAME` runs the newest build of NAME as the
container NAME, replacing the running one with its configuration kept, and
puts the previous container back when the new one does not stay up;
`rollback NAME` deploys the image of the previous deployment (issue 6).

The old container is never removed before the new one has run for
`Settings.deploy_settle` seconds: it is stopped, renamed on the engine and
set aside in the database (so the new one can take its name and quota), and
either removed once the new one settled or renamed, restored and started
again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from sshpanel.access.names import check_container_name, docker_container_name
from sshpanel.access.spec import ContainerSpec, make_spec
from sshpanel.backend.pipeline.builds import Builder
from sshpanel.backend.user.disk import check_room
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.user.secrets import mask_values
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import InvalidValue, NotFound, PanelError
from sshpanel.store import deployments

POLL = 0.25
"""Seconds between two looks at a settling container."""
LOG_LINES = 5


@dataclass(frozen=True)
class DeployResult:
    """What a deployment did.

    Attributes:
        ok: True when the new container runs; False when it failed and the
            previous one (if any) was put back.
        container: The container name.
        image: The image reference deployed (or tried).
        previous: The image reference of the container it replaced ("" when
            there was none).
        message: One line for the user (why it failed, with the exit code).
    """

    ok: bool
    container: str
    image: str
    previous: str
    message: str


class Deployer:
    """Deployments of one user's containers (a `Workspace`). Every method
    blocks (Docker calls and up to `deploy_settle` seconds of waiting)."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.settings = workspace.settings

    def deploy(
        self, name: str, image: str | None = None, on_step: Callable[[str], None] | None = None
    ) -> DeployResult:
        """Deploys an image as the container `name`.

        Args:
            name: Container name; also the image name when `image` is None.
            image: A build number of the user's repository `name` (`3`), or
                any image reference the user may use; None for the newest
                build of `name`.
            on_step: Called with short progress lines (from this thread).

        Returns:
            The result; ok=False when the new container failed to start or
            exited within `deploy_settle` seconds (the previous container,
            if any, then runs again). The deployment is recorded in the
            history (`deploy` event) and audited.

        Raises:
            InvalidValue: Bad name, no build of `name`, an image the user may
                not use.
            QuotaExceeded: The new configuration does not fit the quota, or
                the user holds their disk quota (`disk.check_room`).
            EngineError: Docker refused a call before anything changed.
        """
        step = on_step or (lambda _text: None)
        with self.workspace.audited("deploy", name):
            check_container_name(name)
            user = self.workspace.store.user_by_id(self.workspace.principal.user_id)
            check_room(self.workspace.engine, self.settings, user, "deploy")
            reference = self._reference(name, image)
            self.workspace.image_id(reference)
            current = self._current(name)
            if current is None:
                return self._first(name, reference, step)
            return self._replace(current, reference, step)

    def rollback(self, name: str, on_step: Callable[[str], None] | None = None) -> DeployResult:
        """Deploys the image of the deployment before the current one of
        the container `name` (see `deploy`).

        Raises:
            NotFound: `name` has no earlier deployment with another image.
        """
        check_container_name(name)
        images = deployments.deployed_images(self.workspace.principal.user_id, name)
        earlier = [ref for ref in images[1:] if images and ref != images[0]]
        if not earlier:
            raise NotFound(f"{name} has no earlier deployment to roll back to")
        return self.deploy(name, earlier[0], on_step)

    # Internals -----------------------------------------------------------

    def _reference(self, name: str, image: str | None) -> str:
        """The image reference to deploy: a build number or tag of the
        user's repository `name`, or `image` as given."""
        if image is not None and not image.isdigit():
            return image
        repository = Builder(self.workspace).repository(name.lower())
        if image is not None:
            return f"{repository}:{image}"
        numbers = []
        for item in self.workspace.engine.images(name=repository):
            for tag in item.get("RepoTags") or []:
                repo, _, number = tag.rpartition(":")
                if repo == repository and number.isdigit():
                    numbers.append(int(number))
        if not numbers:
            raise InvalidValue(f"no build of {name.lower()!r} yet: run `build {name.lower()}` first, or give --image")
        return f"{repository}:{max(numbers)}"

    def _current(self, name: str):
        """The user's live container record named `name`, or None."""
        for row in self.workspace.store.containers_of(self.workspace.principal.user_id):
            if row.name == name:
                return row
        return None

    def _first(self, name: str, reference: str, step: Callable[[str], None]) -> DeployResult:
        """Creates and starts the container; records the deployment.

        A first deployment that fails leaves nothing half-deployed: the
        container that did not start, or did not stay up, is removed (its
        `remove` event and the failed `deploy` event stay in the history)."""
        workspace, settings = self.workspace, self.settings
        spec = make_spec(name, reference, settings.default_memory, settings.default_cpus)
        step(f"creating {name} from {reference}")
        try:
            workspace.create(spec, start=True)
        except PanelError as exc:
            created = self._current(name)
            if created is not None:  # created, then the start failed
                workspace.remove(created.docker_id, force=True)
            workspace.store.add_event(workspace.principal.user_id, created.id if created else None, "deploy",
                                      ok=False, detail=f"{reference} {exc.message}")
            raise
        row = self._current(name)
        step(f"waiting {settings.deploy_settle:g} s for it to settle")
        failure = self._settle(row)
        result = self._record(row, reference, "", failure)
        if failure:
            step(f"the new container failed ({failure}): removing it")
            workspace.remove(row.docker_id, force=True)
        return result

    def _replace(self, old, reference: str, step: Callable[[str], None]) -> DeployResult:
        """Replaces the container `old` by one of image `reference` with the
        same configuration; puts `old` back when the new one fails."""
        workspace, engine = self.workspace, self.workspace.engine
        spec = dataclasses.replace(ContainerSpec.from_json(old.spec), image=reference)
        docker_name = docker_container_name(self.settings.namespace, workspace.principal.name, old.name)
        aside_name = f"{docker_name}.replaced-{old.docker_id[:12]}"
        with translate_errors(f"no such container: {old.name}"):
            was_running = bool(engine.inspect_container(old.docker_id)["State"].get("Running"))
            step(f"stopping the old container ({old.image})")
            engine.stop(old.docker_id, timeout=10)
            try:
                engine.rename(old.docker_id, aside_name)
            except PanelError:
                if was_running:
                    engine.start(old.docker_id)
                raise
        deployments.set_aside(workspace.store, old.id)
        step(f"creating {old.name} from {reference}")
        try:
            workspace.create(spec, start=True)
        except PanelError as exc:
            created = self._current(old.name)
            if created is not None:  # created, then the start failed
                workspace.remove(created.docker_id, force=True)
            self._put_back(old, docker_name, was_running, step)
            workspace.store.add_event(workspace.principal.user_id, old.id, "deploy", ok=False,
                                      detail=f"{reference} {exc.message}")
            raise
        new = self._current(old.name)
        step(f"waiting {self.settings.deploy_settle:g} s for it to settle")
        failure = self._settle(new)
        if failure:
            step(f"the new container failed ({failure}): putting the old one back")
            workspace.remove(new.docker_id, force=True)
            self._put_back(old, docker_name, was_running, step)
            return self._record(new, reference, old.image, failure)
        # Recorded before the old container goes: start-up recovery then knows
        # the deployment succeeded if the panel stops in between.
        result = self._record(new, reference, old.image, failure)
        step("removing the old container")
        with contextlib.suppress(NotFound):  # gone already
            engine.remove_container(old.docker_id, force=True)
        workspace.store.add_event(workspace.principal.user_id, old.id, "remove", detail=f"replaced by {reference}")
        return result

    def _put_back(self, old, docker_name: str, was_running: bool, step: Callable[[str], None]) -> None:
        """Gives the old container its name and record back (and starts it
        when it ran before the deployment)."""
        engine = self.workspace.engine
        deployments.bring_back(self.workspace.store, old.id)
        with translate_errors(f"no such container: {old.name}"):
            engine.rename(old.docker_id, docker_name)
            if was_running:
                step("starting the old container again")
                engine.start(old.docker_id)

    def _settle(self, row) -> str:
        """Watches the started container of the record `row` for
        `deploy_settle` seconds.

        A restart in that time is a failure even when the container runs
        again when looked at: a crash loop under a restart policy would
        otherwise pass whenever it is polled between two crashes.

        Returns:
            "" when it still runs, never restarted; else why not (`exited
            with code 1`, `restarted 2 times while settling`, with the
            last lines of its log, the values of its secrets masked:
            the log tail goes into the history, an app may print its
            environment).
        """
        engine = self.workspace.engine
        deadline = time.monotonic() + self.settings.deploy_settle
        while True:
            data = engine.inspect_container(row.docker_id)
            state = data["State"]
            restarts = max(int(data.get("RestartCount") or 0), 1 if state.get("Restarting") else 0)
            if not state.get("Running") or restarts:
                break
            if time.monotonic() >= deadline:
                return ""
            time.sleep(POLL)
        logs = engine.logs_tail(row.docker_id, LOG_LINES)
        reason = f"exited with code {state.get('ExitCode')}"
        if restarts:
            reason = f"restarted {restarts} time{'s' if restarts > 1 else ''} while settling"
        if state.get("OOMKilled"):
            reason += " (out of memory)"
        masked = mask_values(logs, self.workspace.secrets().values_in(row.name, data))
        lines = [line for line in masked.splitlines() if line.strip()]
        return reason + (": " + " | ".join(lines[-LOG_LINES:]) if lines else "")

    def _record(self, row, reference: str, previous: str, failure: str) -> DeployResult:
        """Records the deployment (or its failure) on the container `row`."""
        workspace = self.workspace
        image_id = workspace.engine.inspect_image(reference)["Id"]
        detail = f"{reference} {image_id[:19]}" + (f" (was {previous})" if previous else "")
        if failure:
            detail = f"{reference} {failure}"
        workspace.store.add_event(workspace.principal.user_id, row.id, "deploy", ok=not failure, detail=detail)
        if failure:
            back = f"; {row.name} runs {previous} again" if previous else ""
            return DeployResult(False, row.name, reference, previous, f"the new container {failure}{back}")
        return DeployResult(True, row.name, reference, previous, f"{row.name} runs {reference}")

