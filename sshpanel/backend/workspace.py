"""Provides `Workspace`, everything one user can do with their containers.

A Workspace is built for exactly one principal; no method takes a user id
(docs/ARCHITECTURE.md "Conventions"). User text is only ever resolved among the
user's own records, then the action uses the full Docker ID
(docs/ARCHITECTURE.md invariant 1), so another user's container reads exactly
like one that does not exist.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from typing import Callable, Iterator

import docker.errors

from sshpanel.access.names import generate_name, network_name
from sshpanel.access.policy import create_arguments
from sshpanel.access.principal import Principal
from sshpanel.access.quota import Usage, check_quota
from sshpanel.access.spec import ContainerSpec, CreateRequest, spec_from_request
from sshpanel.access.text import quoted
from sshpanel.backend.engine import Engine, translate_errors
from sshpanel.backend.events import DISCONNECTED, EngineEvents
from sshpanel.backend.images import ImagePolicy
from sshpanel.backend.quotas import check_publish, check_start, check_update, limits_of, pids_of, quota_view, update_limits
from sshpanel.backend.records import QuotaView
from sshpanel.backend.secrets import Secrets
from sshpanel.backend.views import ContainerView, ImageView
from sshpanel.backend.volumes import Volumes
from sshpanel.config import Settings
from sshpanel.errors import Conflict, EngineError, NotFound, PanelError
from sshpanel.store import Store
from sshpanel.store.history import record_removal


class Workspace:
    """One user's containers on one engine.

    Args:
        principal: The authenticated user.
        store: The database repository.
        engine: The Docker engine.
        settings: Server settings (namespace, default limits).
        events: The shared events listener, for `watch`.

    Every method blocks (Docker and database calls): run it in a thread.
    Every action is written to the audit log with its outcome.
    """

    def __init__(
        self,
        principal: Principal,
        store: Store,
        engine: Engine,
        settings: Settings,
        events: EngineEvents | None = None,
    ) -> None:
        self.principal = principal
        self.store = store
        self.engine = engine
        self.settings = settings
        self.events = events

    # Reading -------------------------------------------------------------

    def containers(self, all: bool = True) -> list[ContainerView]:
        """Lists the user's containers, newest first.

        Args:
            all: Include stopped containers (`docker ps -a`).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        rows = self.store.containers_of(self.principal.user_id)
        with translate_errors():
            listed = self.engine.client.api.containers(
                all=True, filters={"label": f"{self.settings.label_owner}={self.principal.name}"}
            )
        by_id = {item["Id"]: item for item in listed}
        views = []
        for row in rows:
            item = by_id.get(row.docker_id)
            if item is None:
                self._forget(row, "removed outside the panel")
                continue
            view = _view(row, item, self.principal.name)
            if all or view.running:
                views.append(view)
        views.sort(key=lambda v: v.created, reverse=True)
        return views

    def images(self) -> list[ImageView]:
        """Lists the images on the engine the user may create containers from
        (see `sshpanel.backend.images.ImagePolicy`: the admin's rules, the
        user's own builds, never other users' builds).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        return ImagePolicy(self).usable()

    def image_id(self, reference: str) -> str:
        """Resolves an image the user may use to its full ID (never pulled);
        see `sshpanel.backend.images.ImagePolicy.image_id`.

        Raises:
            InvalidValue: Not on the engine, or not allowed for this user.
        """
        return ImagePolicy(self).image_id(reference)

    def inspect(self, ref: str) -> dict:
        """Returns Docker's inspect data of one of the user's containers, the
        values of its secrets masked.

        Raises:
            NotFound: No such container among the user's.
        """
        row = self.resolve(ref)
        with translate_errors(f"no such container: {ref}"):
            data = self.engine.client.api.inspect_container(row.docker_id)
        return self.secrets().redact(row.name, data)

    def secrets(self) -> Secrets:
        """Returns the user's environment secrets (`sshpanel.backend.secrets`)."""
        return Secrets(self.store, self.settings, self.principal.user_id)

    def resolve(self, ref: str):
        """Finds one of the user's live containers by short name or ID prefix.

        Args:
            ref: A short name, a full ID, or an ID prefix (any length ≥ 1).

        Returns:
            The container record.

        Raises:
            NotFound: Nothing of the user's matches, or a prefix matches several
                of the user's own containers.
        """
        rows = self.store.containers_of(self.principal.user_id)
        for row in rows:
            if row.name == ref:
                return row
        if ref and all(c in "0123456789abcdef" for c in ref.lower()):
            hits = [row for row in rows if row.docker_id.startswith(ref.lower())]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise NotFound(f"{ref!r} matches several of your containers: give more of the ID or the name")
        raise NotFound(f"no such container: {quoted(ref)}")

    # Acting --------------------------------------------------------------

    def create_from(self, request: CreateRequest, start: bool = False) -> ContainerView:
        """Creates a container from what the user typed (`run`/`create` and
        the TUI form alike): a missing name is generated among the user's
        names, defaults are filled, every field is validated, then `create`.

        Raises:
            InvalidValue: A field is invalid (see `spec_from_request`).
            NotFound, Conflict, QuotaExceeded, EngineError: See `create`.
        """
        name = request.name.strip()
        if not name:
            taken = {row.name for row in self.store.containers_of(self.principal.user_id)}
            name = generate_name(request.image, taken, secrets.token_hex(8))
        spec = spec_from_request(request, name, self.settings.default_memory, self.settings.default_cpus)
        return self.create(spec, start=start)

    def create(self, spec: ContainerSpec, start: bool = False) -> ContainerView:
        """Creates a container from a validated spec (and starts it).

        The name is reserved and the quota checked in one transaction before
        Docker is called; a failed Docker call removes the reservation.

        Returns:
            The new container.

        Raises:
            InvalidValue: Unknown image or an image the user may not use.
            NotFound: A volume name taken by something not the user's.
            Conflict: The user already has a container with this name.
            QuotaExceeded: Count, memory or CPU quota would be exceeded, or a
                published host port is outside the user's range.
            EngineError: Docker refused the create or the start.
        """
        with self.audited("create" if not start else "run", spec.name):
            image_id = self.image_id(spec.image)
            Volumes(self).ensure([mount.name for mount in spec.volumes])
            with self.store.user_transaction(self.principal.user_id) as tx:
                if self.store.name_taken(self.principal.user_id, spec.name):
                    raise Conflict(f"you already have a container named {spec.name!r}")
                check_quota(limits_of(tx.user), Usage(*tx.usage()), Usage(1, spec.memory, spec.cpus))
                check_publish(tx, spec)
                pids = pids_of(tx.user, self.settings)
                row = tx.reserve_container(spec.name, spec.image, spec.to_json(), spec.memory, spec.cpus)
            try:
                container_id = self._docker_create(spec, image_id, pids)
            except BaseException:
                self.store.drop_reservation(row.id)
                self.store.add_event(self.principal.user_id, None, "create", ok=False, detail=spec.name)
                raise
            self.store.attach_docker_id(row.id, container_id)
            row.docker_id = container_id
            self.store.add_event(self.principal.user_id, row.id, "create", detail=spec.image)
            if start:
                self._lifecycle(row, "start")
        return self._view_of(spec.name)

    def start(self, ref: str) -> str:
        """Starts one of the user's containers; returns its short name.

        Raises:
            NotFound: No such container of the user's.
            QuotaExceeded: The user is over a quota (an admin lowered it since
                the container was created; see `sshpanel.backend.quotas`).
        """
        with self.audited("start", ref):
            row = self.resolve(ref)
            check_start(self.store, self.principal.user_id, row)
            self._lifecycle(row, "start")
            return row.name

    def update(
        self, ref: str, memory: int | None = None, cpus: float | None = None, restart: str | None = None
    ) -> ContainerView:
        """Changes limits of one of the user's containers live, within quota
        (`docker update`); see `sshpanel.backend.quotas.update_limits`.

        Args:
            ref: Container name or ID prefix.
            memory: New memory limit, bytes.
            cpus: New CPU limit, in CPUs.
            restart: New restart policy (`on-failure[:N]` and the others).

        Returns:
            The container after the update.

        Raises:
            UsageError: Nothing to change.
            InvalidValue: Memory under 6 MiB or a bad restart policy.
            NotFound: No such container of the user's.
            QuotaExceeded: Memory or CPU quota would be exceeded.
            EngineError: Docker refused.
        """
        with self.audited("update", ref):
            policy = check_update(memory, cpus, restart)
            row = self.resolve(ref)
            update_limits(self, row, memory, cpus, policy)
        return self._view_of(row.name)

    def quota(self) -> QuotaView:
        """Returns the user's quotas and what their live containers hold."""
        return quota_view(self.store, self.store.user_by_id(self.principal.user_id), self.settings)

    def stop(self, ref: str) -> str:
        """Stops one of the user's containers (10 s grace, then SIGKILL)."""
        return self._act("stop", ref)

    def restart(self, ref: str) -> str:
        """Restarts one of the user's containers."""
        return self._act("restart", ref)

    def remove(self, ref: str, force: bool = False) -> str:
        """Removes one of the user's containers and its anonymous volumes.

        Args:
            ref: Name or ID prefix.
            force: Kill a running container first (`docker rm -f`).

        Raises:
            NotFound: No such container of the user's.
            Conflict: The container runs and `force` is False.
        """
        with self.audited("rm", ref):
            row = self.resolve(ref)
            with translate_errors(f"no such container: {ref}"):
                try:
                    self.engine.client.api.remove_container(row.docker_id, v=True, force=force)
                except docker.errors.APIError as exc:
                    if exc.status_code == 409 and not force:
                        raise Conflict(
                            f"container {row.name} is running: stop it first or use rm -f"
                        ) from None
                    if exc.status_code != 404:
                        raise
            self._forget(row, "removed")
            return row.name

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Calls `callback()` (from another thread) whenever one of the user's
        containers changes state in Docker, and when the events listener
        loses the engine (so that viewers notice at once, without polling).

        Returns:
            A function that stops the calls; call it when the viewer goes away.
        """
        if self.events is None:
            return lambda: None
        owner = self.principal.name
        return self.events.subscribe(
            lambda who, _id, action: (who == owner or action == DISCONNECTED) and callback())

    # Internals -----------------------------------------------------------

    def _act(self, action: str, ref: str) -> str:
        with self.audited(action, ref):
            row = self.resolve(ref)
            self._lifecycle(row, action)
            return row.name

    def _lifecycle(self, row, action: str) -> None:
        """Runs start/stop/restart on a resolved record and records the event."""
        api = self.engine.client.api
        calls = {
            "start": lambda: api.start(row.docker_id),
            "stop": lambda: api.stop(row.docker_id, timeout=10),
            "restart": lambda: api.restart(row.docker_id, timeout=10),
        }
        try:
            with translate_errors(f"no such container: {row.name}"):
                calls[action]()
        except PanelError as exc:
            self.store.add_event(self.principal.user_id, row.id, action, ok=False, detail=exc.message)
            raise
        self.store.add_event(self.principal.user_id, row.id, action)

    def _docker_create(self, spec: ContainerSpec, image_id: str, pids_limit: int) -> str:
        """Creates the Docker container; returns its full ID."""
        client = self.engine.client
        arguments = create_arguments(
            spec, self.principal.name, self.settings.namespace, image_id, pids_limit, self.settings.publish_address
        )
        self.secrets().inject(spec.name, arguments)
        with translate_errors():
            self._ensure_network()
            arguments["networking_config"] = {
                arguments["network"]: client.api.create_endpoint_config(aliases=[spec.name])
            }
            try:
                container = client.containers.create(**arguments)
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise Conflict(f"the name {spec.name!r} is still in use on the engine; try again") from None
                raise
            return container.id

    def _ensure_network(self) -> None:
        """Creates the user's own bridge network when it is missing.

        Docker's name filter also matches parts of names (`ns.bob` finds
        `ns.bobby`), hence the exact comparison; and Docker lets two
        concurrent creates make two networks of one name, hence the lock.
        """
        name = network_name(self.settings.namespace, self.principal.name)
        client = self.engine.client
        with self.engine.names_lock:
            if any(item.get("Name") == name for item in client.api.networks(names=[name])):
                return
            try:
                client.networks.create(
                    name, driver="bridge", labels={self.settings.label_owner: self.principal.name},
                    check_duplicate=True,
                )
            except docker.errors.APIError as exc:
                if exc.status_code == 404:  # Docker's answer when no address pool is left
                    raise EngineError(f"cannot create your network: {exc.explanation}") from None
                if exc.status_code != 409:
                    raise

    def _view_of(self, name: str) -> ContainerView:
        for view in self.containers(all=True):
            if view.name == name:
                return view
        raise NotFound(f"no such container: {name}")

    def _forget(self, row, detail: str) -> None:
        """Marks a record removed and records the event, once: sessions and
        the events recorder may notice the same removal (issue 4)."""
        record_removal(self.store, row.id, detail)

    @contextlib.contextmanager
    def audited(self, action: str, target: str) -> Iterator[None]:
        """Writes one audit entry with the outcome of the enclosed action.

        Every action a user can take goes through this
        (docs/ARCHITECTURE.md invariant 6):
        `with workspace.audited("stop", ref): ...`.
        """
        try:
            yield
        except PanelError as exc:
            self._audit(action, target, f"failed: {exc.message}")
            raise
        except Exception as exc:
            self._audit(action, target, f"error: {type(exc).__name__}")
            raise
        else:
            self._audit(action, target, "ok")

    def _audit(self, action: str, target: str, outcome: str) -> None:
        p = self.principal
        actor, shown = (p.actor, f"{p.name}/{quoted(target)}") if p.actor else (p.name, quoted(target))
        self.store.add_audit(actor, p.fingerprint, p.source, action, shown, outcome)


def _view(row, item: dict, owner: str) -> ContainerView:
    """Builds a view from a record and the engine's `/containers/json` entry."""
    return ContainerView(
        id=row.docker_id,
        name=row.name,
        image=row.image,
        state=item.get("State", ""),
        status=item.get("Status", ""),
        ports=format_ports(item.get("Ports") or []),
        created=dt.datetime.fromtimestamp(item.get("Created", 0), dt.timezone.utc),
        memory=row.memory,
        cpus=row.cpus,
        owner=owner,
    )


def format_ports(ports: list[dict]) -> str:
    """Formats the engine's port list as `docker ps` prints it
    (`127.0.0.1:8080->80/tcp, 443/tcp`)."""
    parts = []
    for port in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("PublicPort", 0))):
        inner = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
        if port.get("PublicPort"):
            parts.append(f"{port.get('IP', '0.0.0.0')}:{port['PublicPort']}->{inner}")
        else:
            parts.append(inner)
    return ", ".join(dict.fromkeys(parts))
