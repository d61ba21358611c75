"""Provides `Projects`: one user's Compose projects (issue 22) — `up` of a
parsed file, all or nothing within the quota, recreating only the services
whose configuration changed; `ps`, `ls`, `stop`/`start`/`restart`, `down`.

A project's containers are the user's own records whose spec says so
(`ServiceOptions.project`): ownership comes from the database, never from
the Compose labels a container carries (docs/ARCHITECTURE.md invariant 1).
They are `PROJECT-SERVICE-1` for the user, on the project's own network,
where each is also reachable by its service's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Callable

from sshpanel.access.compose import Project, config_hash, parse_project
from sshpanel.access.compose_yaml import read_env
from sshpanel.access.compose_service import ServiceDraft
from sshpanel.access.names import project_network_name
from sshpanel.access.policy import COMPOSE_LABEL, create_arguments
from sshpanel.access.quota import Usage, check_ports, check_quota
from sshpanel.access.spec import ContainerSpec
from sshpanel.backend.pipeline.builds import Builder
from sshpanel.backend.projects.files import ComposeFiles, ComposeSource
from sshpanel.backend.projects.up import Rollback, remove_project_network, wait_for_condition
from sshpanel.backend.user.disk import check_room
from sshpanel.backend.user.files import home_dir
from sshpanel.backend.user.quotas import limits_of, pids_of, port_range_of
from sshpanel.backend.views import ContainerView
from sshpanel.backend.user.volumes import Volumes
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import Conflict, InvalidValue, NotFound, PanelError


@dataclass(frozen=True)
class ServiceView:
    """One container of a project, as `compose ps` shows it.

    Attributes:
        project: The project's name.
        service: The service's name.
        spec: The container's spec as created.
        container: The container as the engine reports it now.
    """

    project: str
    service: str
    spec: ContainerSpec
    container: ContainerView


@dataclass(frozen=True)
class ProjectView:
    """One project, as `compose ls` shows it.

    Attributes:
        name: The project's name.
        states: (Docker state, how many containers are in it), sorted.
        config_files: The files it was brought up from.
    """

    name: str
    states: tuple[tuple[str, int], ...]
    config_files: tuple[str, ...]

    @property
    def status(self) -> str:
        """docker compose's wording: `running(2), exited(1)`."""
        return ", ".join(f"{state}({count})" for state, count in self.states)


class Projects:
    """The Compose projects of one user (a `Workspace`). Every method blocks
    (Docker, database, waiting for health checks): call it in a thread."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.settings = workspace.settings
        self.files = ComposeFiles(home_dir(self.settings, workspace.principal.name), workspace.principal.name)

    # Reading -------------------------------------------------------------

    def load(self, file: str | None, stdin: str | None, name: str = "") -> tuple[Project, ComposeSource]:
        """Finds and parses the project's compose file (see
        `ComposeFiles.source` and `sshpanel.access.compose.parse_project`),
        with variables from the `.env` next to it. Secrets are not
        variables: an interpolated value would be stored in the spec and
        shown by `inspect` and `config` in clear; each container gets its
        own secrets (`secret set PROJECT-SERVICE-1 KEY -`) at create.

        Raises:
            NotFound: No compose file.
            InvalidValue: The file is refused: the message has the key path.
        """
        source = self.files.source(file, stdin, name)
        variables: dict[str, str] = {}
        with contextlib.suppress(NotFound):
            variables.update(read_env(self.files.read(source.folder, ".env", ".env")))
        project = parse_project(
            source.text, source.default_name, variables,
            lambda path, what: self.files.read(source.folder, path, what),
            (self.settings.default_memory, self.settings.default_cpus), (self.settings.label_prefix,), name,
        )
        return project, source

    def ps(self, name: str, all: bool = True) -> list[ServiceView]:
        """The project's containers (its running ones unless `all`), by
        service; empty for a project the user does not have.

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        views = {view.name: view for view in self.workspace.containers(all=all)}
        found = []
        for row, spec in self._records(name):
            if row.name in views:
                found.append(ServiceView(name, spec.options.service, spec, views[row.name]))
        return sorted(found, key=lambda item: item.service)

    def ls(self) -> list[ProjectView]:
        """Every project the user has, by name."""
        views = {view.name: view for view in self.workspace.containers(all=True)}
        projects: dict[str, tuple[dict[str, int], set[str]]] = {}
        for row in self.workspace.store.containers_of(self.workspace.principal.user_id):
            spec = _spec_of(row)
            if spec is None or not spec.options.project or row.name not in views:
                continue
            states, files = projects.setdefault(spec.options.project, ({}, set()))
            state = views[row.name].state
            states[state] = states.get(state, 0) + 1
            if spec.options.config_file:
                files.add(spec.options.config_file)
        return [ProjectView(name, tuple(sorted(states.items())), tuple(sorted(files)))
                for name, (states, files) in sorted(projects.items())]

    def records(self, name: str, services: list[str] | None = None) -> list:
        """The user's container records of the project (of the services
        named, when given), in service order.

        Raises:
            NotFound: The user has no such project, or no such service in it.
        """
        rows = self._records(name)
        if not rows:
            raise NotFound(f"no such project: {name[:40]}")
        by_service = {spec.options.service: row for row, spec in rows}
        if not services:
            return [by_service[key] for key in sorted(by_service)]
        missing = [service for service in services if service not in by_service]
        if missing:
            raise NotFound(f"no such service: {missing[0][:64]}")
        return [by_service[service] for service in services]

    # Acting --------------------------------------------------------------

    def act(self, action: str, name: str, services: list[str] | None = None) -> list[str]:
        """`stop`, `start` or `restart` the project's containers (of the
        services named); stops in reverse start order.

        Returns:
            The containers' names, in the order acted on.

        Raises:
            NotFound: See `records`.
            QuotaExceeded, EngineError: See the `Workspace` action.
        """
        call = {"stop": self.workspace.stop, "start": self.workspace.start, "restart": self.workspace.restart}[action]
        with self.workspace.audited(f"compose.{action}", name):
            rows = self.records(name, services)
            if action == "stop":
                rows = rows[::-1]
            return [call(row.docker_id) for row in rows]

    def down(self, name: str, volumes: bool = False) -> list[str]:
        """Removes the project's containers and network (`compose down`),
        and with `volumes` its named volumes (`down -v`).

        Returns:
            Lines saying what was removed, in docker compose's words.

        Raises:
            NotFound: The user has no such project.
        """
        with self.workspace.audited("compose.down", name):
            rows = self._records(name)
            if not rows:
                raise NotFound(f"no such project: {name[:40]}")
            lines, mounted = [], set()
            for row, spec in rows:
                mounted.update(mount.name for mount in spec.volumes if mount.name.startswith(f"{name}_"))
                self.workspace.remove(row.docker_id, force=True)
                lines.append(f"Container {row.name} Removed")
            if remove_project_network(self.workspace, name):
                lines.append(f"Network {name}_default Removed")
            if volumes:
                for volume in sorted(mounted):
                    with contextlib.suppress(NotFound):
                        Volumes(self.workspace).remove(volume)
                        lines.append(f"Volume {volume} Removed")
            return lines

    def up(self, project: Project, source: ComposeSource, services: list[str] | None = None,
           build: bool = False, on_step: Callable[[str], None] | None = None) -> None:
        """Brings the project up: every service of `services` (all when
        empty) and what they depend on, in depends_on order, each started
        once the conditions of what it depends on hold.

        Only services whose configuration hash changed (or that have no
        container) are (re)created; the others are started if stopped. The
        new containers are reserved against the quota in one transaction
        before anything is created; when anything fails after that, the new
        containers are removed and the replaced ones put back as they were.
        Every `up` is a `deploy` event per (re)created service, a failed one
        on failure.

        Args:
            project: The parsed file (`load`).
            source: Where it came from (recorded on each container).
            services: Services to bring up (with what they depend on).
            build: Build every service with `build:` again (`--build`).
            on_step: Called with progress lines in docker compose's words
                (`Container demo-web-1 Started`), from this thread.

        Raises:
            InvalidValue: An image the user may not use; a build refused.
            QuotaExceeded: The project does not fit (count, memory, CPUs,
                ports, disk); nothing was created.
            Conflict: A container name or host port in use.
            PanelError: A create, start or condition failed; the project is
                as it was before.
        """
        step = on_step or (lambda _line: None)
        ws = self.workspace
        with ws.audited("compose.up", project.name):
            user = ws.store.user_by_id(ws.principal.user_id)
            check_room(ws.engine, self.settings, user, "compose up")
            selected = project.selected(services or [])
            desired = {service.name: self._desired(project, service, source, build, step) for service in selected}
            current = {spec.options.service: (row, spec) for row, spec in self._records(project.name)}
            changed = [s for s in selected if s.name not in current
                       or current[s.name][1].options.config_hash != desired[s.name][0].options.config_hash]
            replaced = [current[s.name][0] for s in changed if s.name in current]
            rows, pids = self._reserve([desired[s.name][0] for s in changed], replaced)
            rollback = Rollback(ws, project.name, step)
            rollback.reserved = dict(zip((s.name for s in changed), rows))
            try:
                for _top, volume in project.volumes:
                    if Volumes(ws).create(volume):
                        rollback.volumes.append(volume)
                rollback.network = self._ensure_network(project.name)
                for row in replaced:
                    rollback.set_aside(row)
                for service in changed:
                    spec, image_id = desired[service.name]
                    self._create(rollback.reserved[service.name], spec, image_id, pids)
                    step(f"Container {spec.name} Created")
                by_service = {**{k: v[0] for k, v in current.items()}, **rollback.reserved}
                for service in selected:
                    for dep, condition in service.depends_on:
                        wait_for_condition(ws.engine, by_service[dep], condition)
                    row = by_service[service.name]
                    if service in changed or not _running(ws, row.docker_id):
                        ws.start(row.docker_id)
                        step(f"Container {row.name} Started")
            except PanelError as exc:
                rollback.undo(exc, [s.name for s in changed])
                raise
            for service in changed:
                spec, image_id = desired[service.name]
                row = rollback.reserved[service.name]
                ws.store.add_event(ws.principal.user_id, row.id, "deploy", detail=f"{spec.image} {image_id[:19]}")
            rollback.commit()
            for service in selected:
                if service not in changed:
                    step(f"Container {desired[service.name][0].name} Running")

    # Internals -----------------------------------------------------------

    def _records(self, name: str) -> list[tuple[object, ContainerSpec]]:
        rows = []
        for row in self.workspace.store.containers_of(self.workspace.principal.user_id):
            spec = _spec_of(row)
            if spec is not None and spec.options.project == name and row.docker_id:
                rows.append((row, spec))
        return rows

    def _desired(self, project: Project, service: ServiceDraft, source: ComposeSource, build: bool,
                 step: Callable[[str], None]) -> tuple[ContainerSpec, str]:
        """The service's spec with its image (built when it has `build`),
        its config hash and file; and the image's ID."""
        image = service.spec.image or self._build(project, service, source, build, step)
        image_id = self.workspace.image_id(image)
        spec = dataclasses.replace(service.spec, image=image)
        options = dataclasses.replace(spec.options, config_hash=config_hash(spec, image_id, service.depends_on),
                                      config_file=source.shown)
        return dataclasses.replace(spec, options=options), image_id

    def _build(self, project: Project, service: ServiceDraft, source: ComposeSource, always: bool,
               step: Callable[[str], None]) -> str:
        """Builds the service's context folder as the user's image
        `PROJECT-SERVICE` unless a build of it exists (`--build`: always);
        returns the tag to use."""
        builder = Builder(self.workspace)
        name = f"{project.name}-{service.name}".lower()
        repository = builder.repository(name)
        tags = sorted((int(tag.rpartition(":")[2]), tag) for item in self.workspace.engine.images(name=repository)
                      for tag in item.get("RepoTags") or [] if tag.rpartition(":")[2].isdigit())
        if tags and not always:
            return tags[-1][1]
        folder = "/".join(part for part in (source.folder, service.build.context) if part and part != ".")
        if not folder:
            raise InvalidValue(f"services.{service.name}.build: give a folder of your home, not the home itself")
        step(f"Service {service.name} Building")
        with builder.context_from_folder(folder) as context:
            result = builder.run(name, context, lambda line: step(f"{service.name}  | {line}"))
        step(f"Service {service.name} Built")
        return result.tag

    def _reserve(self, specs: list[ContainerSpec], replaced: list) -> tuple[list, int]:
        """Checks count, memory, CPUs and host ports of the new containers
        against the quota, minus what the replaced ones hold, and reserves
        them — one transaction (docs/ARCHITECTURE.md invariant 3).

        Returns:
            (the new records in the order of `specs`, the user's pids limit
            per container).
        """
        ws = self.workspace
        with ws.store.user_transaction(ws.principal.user_id) as tx:
            count, memory, cpus = tx.usage()
            used = Usage(count - len(replaced), memory - sum(r.memory for r in replaced),
                         cpus - sum(r.cpus for r in replaced))
            check_quota(limits_of(tx.user), used, Usage(len(specs), sum(s.memory for s in specs),
                                                           sum(s.cpus for s in specs)))
            ports = [port for spec in specs for port in spec.ports]
            if ports:
                leaving = {row.name for row in replaced}
                in_use = {key: (f"your container {name}" if owner == tx.user.id else "another user's container")
                          for key, (owner, name) in tx.published_ports().items()
                          if not (owner == tx.user.id and name in leaving)}
                for spec in specs:
                    check_ports(spec.ports, port_range_of(tx.user), in_use)
                    in_use.update({(p.host, p.protocol): f"your service {spec.options.service}" for p in spec.ports})
            replacing = {row.name for row in replaced}
            for spec in specs:
                if spec.name not in replacing and ws.store.name_taken(ws.principal.user_id, spec.name):
                    raise Conflict(f"you already have a container named {spec.name!r}")
            rows = tx.reserve_project([(s.name, s.image, s.to_json(), s.memory, s.cpus) for s in specs],
                                      [row.id for row in replaced])
            return rows, pids_of(tx.user, self.settings)

    def _create(self, row, spec: ContainerSpec, image_id: str, pids_limit: int) -> None:
        """Creates one reserved container on the project's network, reachable
        there by its service's name; attaches its ID to the record."""
        ws = self.workspace
        arguments = create_arguments(spec, ws.principal.name, self.settings.namespace, image_id, pids_limit,
                                     self.settings.publish_address)
        ws.secrets().inject(spec.name, arguments)
        try:
            container_id = ws.engine.create_container(arguments, arguments["network"],
                                                      [spec.options.service, spec.name])
        except Conflict:
            raise Conflict(f"the name {spec.name!r} is still in use on the engine; try again") from None
        ws.store.attach_docker_id(row.id, container_id)
        row.docker_id = container_id
        ws.store.add_event(ws.principal.user_id, row.id, "create", detail=spec.image)

    def _ensure_network(self, project: str) -> bool:
        """Creates the project's network when missing; True when created."""
        ws, name = self.workspace, project_network_name(self.settings.namespace, self.workspace.principal.name,
                                                         project)
        with ws.engine.names_lock:
            if any(item.get("Name") == name for item in ws.engine.networks(names=[name])):
                return False
            ws.engine.create_network(name, labels={
                self.settings.label_owner: ws.principal.name, f"{COMPOSE_LABEL}project": project,
                f"{COMPOSE_LABEL}network": "default"})
            return True


def _spec_of(row) -> ContainerSpec | None:
    try:
        return ContainerSpec.from_json(row.spec)
    except (ValueError, TypeError):
        return None


def _running(ws: Workspace, docker_id: str) -> bool:
    return bool(ws.engine.inspect_container(docker_id)["State"].get("Running"))
