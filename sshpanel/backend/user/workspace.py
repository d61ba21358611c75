"""Provides `Workspace`, everything one user can do with their containers.

A Workspace is built for exactly one principal; no method takes a user id
(docs/ARCHITECTURE.md "Conventions"). User text is only ever resolved among the
user's own records, then the action uses the full Docker ID
(docs/ARCHITECTURE.md invariant 1), so another user's container reads exactly
like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Callable

from sshpanel.access.names import generate_name, network_name
from sshpanel.access.policy import create_arguments
from sshpanel.access.quota import Usage, check_quota
from sshpanel.access.spec import ContainerSpec, CreateRequest, spec_from_request
from sshpanel.access.text import quoted
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.engine.states import ContainerState, list_owner
from sshpanel.backend.engine.events import DISCONNECTED
from sshpanel.backend.user.images import ImagePolicy
from sshpanel.backend.user.quotas import check_publish, check_start, check_update, limits_of, pids_of, quota_view, update_limits
from sshpanel.backend.records import QuotaView
from sshpanel.backend.user.scope import UserScope
from sshpanel.backend.views import ContainerView, ImageView
from sshpanel.backend.user.volumes import Volumes
from sshpanel.errors import Conflict, EngineError, NotFound, PanelError
from sshpanel.store.history import record_removal


class Workspace(UserScope):
    """One user's containers on one engine: the user's scope (see
    `UserScope`, its arguments) with the container actions on it.

    Every method blocks (Docker and database calls): run it in a thread.
    Every action is written to the audit log with its outcome.
    """

    # Reading -------------------------------------------------------------

    def containers(self, all: bool = True) -> list[ContainerView]:
        """Lists the user's containers, newest first.

        Args:
            all: Include stopped containers (`docker ps -a`).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        rows = self.store.containers_of(self.principal.user_id)
        if self.events is not None:
            states = self.events.states.of_owner(self.principal.name, self.events.connected.is_set())
        else:
            states = list_owner(self.engine, self.settings.label_owner, self.principal.name)
        by_id = {state.id: state for state in states}
        views = []
        now = dt.datetime.now(dt.timezone.utc)
        for row in rows:
            state = by_id.get(row.docker_id)
            if state is None and self.events is not None:
                # The copy may lag: another panel process made it a moment ago.
                state = self.events.states.read(row.docker_id)
            if state is None:
                self._forget(row, "removed outside the panel")
                continue
            view = _view(row, state, self.principal.name, now)
            if all or view.running:
                views.append(view)
        views.sort(key=lambda v: v.created, reverse=True)
        return views

    def images(self) -> list[ImageView]:
        """Lists the images on the engine the user may create containers from
        (see `sshpanel.backend.user.images.ImagePolicy`: the admin's rules, the
        user's own builds, never other users' builds).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        return ImagePolicy(self).usable()

    def image_id(self, reference: str) -> str:
        """Resolves an image the user may use to its full ID (never pulled);
        see `sshpanel.backend.user.images.ImagePolicy.image_id`.

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
            data = self.engine.inspect_container(row.docker_id)
        return self.secrets().redact(row.name, data)

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
            self._refresh(container_id)
            self.store.add_event(self.principal.user_id, row.id, "create", detail=spec.image)
            if start:
                self._lifecycle(row, "start")
        return self._view_of(spec.name)

    def start(self, ref: str) -> str:
        """Starts one of the user's containers; returns its short name.

        Raises:
            NotFound: No such container of the user's.
            QuotaExceeded: The user is over a quota (an admin lowered it since
                the container was created; see `sshpanel.backend.user.quotas`).
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
        (`docker update`); see `sshpanel.backend.user.quotas.update_limits`.

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
            self._refresh(row.docker_id)
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
            try:
                self.engine.remove_container(row.docker_id, force=force)
            except NotFound:
                pass  # gone from the engine already: forget the record below
            except Conflict:
                if force:
                    raise
                raise Conflict(f"container {row.name} is running: stop it first or use rm -f") from None
            self._refresh(row.docker_id)
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
        engine = self.engine
        calls = {
            "start": lambda: engine.start(row.docker_id),
            "stop": lambda: engine.stop(row.docker_id, timeout=10),
            "restart": lambda: engine.restart(row.docker_id, timeout=10),
        }
        try:
            with translate_errors(f"no such container: {row.name}"):
                calls[action]()
        except PanelError as exc:
            self.store.add_event(self.principal.user_id, row.id, action, ok=False, detail=exc.message)
            raise
        finally:
            self._refresh(row.docker_id)
        self.store.add_event(self.principal.user_id, row.id, action)

    def _docker_create(self, spec: ContainerSpec, image_id: str, pids_limit: int) -> str:
        """Creates the Docker container; returns its full ID."""
        arguments = create_arguments(
            spec, self.principal.name, self.settings.namespace, image_id, pids_limit, self.settings.publish_address
        )
        self.secrets().inject(spec.name, arguments)
        self._ensure_network()
        try:
            return self.engine.create_container(arguments, arguments["network"], [spec.name])
        except Conflict:
            raise Conflict(f"the name {spec.name!r} is still in use on the engine; try again") from None

    def _ensure_network(self) -> None:
        """Creates the user's own bridge network when it is missing.

        Docker's name filter also matches parts of names (`ns.bob` finds
        `ns.bobby`), hence the exact comparison; and Docker lets two
        concurrent creates make two networks of one name, hence the lock.
        """
        name = network_name(self.settings.namespace, self.principal.name)
        with self.engine.names_lock:
            if any(item.get("Name") == name for item in self.engine.networks(names=[name])):
                return
            try:
                self.engine.create_network(name, labels={self.settings.label_owner: self.principal.name})
            except NotFound:  # Docker's answer when no address pool is left
                raise EngineError("cannot create your network: no address pool is left on the engine") from None
            except Conflict:
                pass  # created meanwhile by another panel process

    def _refresh(self, docker_id: str) -> None:
        """Reads a container the user just acted on into the engine's shared
        copy at once (the events stream tells a moment later): what the
        user does next sees what they did."""
        if self.events is not None and docker_id:
            try:
                self.events.states.refresh(docker_id)
            except PanelError:
                self.events.states.lost()  # the next read lists the engine afresh

    def _view_of(self, name: str) -> ContainerView:
        for view in self.containers(all=True):
            if view.name == name:
                return view
        raise NotFound(f"no such container: {name}")

    def _forget(self, row, detail: str) -> None:
        """Marks a record removed and records the event, once: sessions and
        the events recorder may notice the same removal (issue 4)."""
        record_removal(self.store, row.id, detail)


def _view(row, state: ContainerState, owner: str, now: dt.datetime) -> ContainerView:
    """Builds a view from a record and the engine's state of its container."""
    return ContainerView(
        id=row.docker_id,
        name=row.name,
        image=row.image,
        state=state.state,
        status=state.status(now),
        ports=format_ports(list(state.ports)),
        created=state.created,
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
