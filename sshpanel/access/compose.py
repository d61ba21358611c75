"""Provides `parse_project`: a compose file, read strictly, as a `Project`
of validated services in start order (issue 22), and `config_hash`, what
tells an unchanged service from a changed one.

Pure: no Docker, no files (the caller reads them). Top-level keys accepted:
`name`, `services`, `volumes` (named volumes of the local driver, no
options), `version` (obsolete, ignored) and `x-*` extensions; everything
else (`networks`, `secrets`, `configs`, `include`...) is refused with its
path. The services' keys are in `sshpanel.access.compose_service`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sshpanel.access.compose_service import ServiceDraft, map_service, not_allowed
from sshpanel.access.compose_yaml import interpolate, join, load_yaml
from sshpanel.access.spec import ContainerSpec
from sshpanel.errors import InvalidValue

TOP_LEVEL = ("name", "services", "volumes", "version")
_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
MAX_SERVICES = 50


@dataclass(frozen=True)
class Project:
    """A compose project as the panel understands it.

    Attributes:
        name: The project's name (`[a-z0-9][a-z0-9_-]*`, at most 40).
        services: Its services, in an order that starts each after what it
            depends on.
        volumes: Top-level volume name -> the user's volume name
            (`PROJECT_NAME`, as Compose names them).
    """

    name: str
    services: tuple[ServiceDraft, ...]
    volumes: tuple[tuple[str, str], ...]

    def service(self, name: str) -> ServiceDraft:
        """Returns the service `name`.

        Raises:
            InvalidValue: No such service (`no such service: x`, docker
                compose's words).
        """
        for service in self.services:
            if service.name == name:
                return service
        raise InvalidValue(f"no such service: {name[:64]}")

    def selected(self, names: list[str]) -> tuple[ServiceDraft, ...]:
        """The services named and everything they depend on, in start order
        (all of them when `names` is empty), as `docker compose up SERVICE`.

        Raises:
            InvalidValue: A name is not a service of the project.
        """
        if not names:
            return self.services
        wanted: set[str] = set()
        pending = [self.service(name).name for name in names]
        while pending:
            name = pending.pop()
            if name not in wanted:
                wanted.add(name)
                pending.extend(dep for dep, _ in self.service(name).depends_on)
        return tuple(service for service in self.services if service.name in wanted)

    def config(self) -> dict[str, Any]:
        """The project as the panel will create it, in Compose's keys (the
        output of `compose config`)."""
        volume_of = {user: top for top, user in self.volumes}
        return {
            "name": self.name,
            "services": {service.name: _service_config(service, volume_of) for service in self.services},
            "volumes": {top: {"name": user} for top, user in self.volumes},
        }


def normalize_project_name(text: str) -> str:
    """Makes a project name from a folder name as docker compose does
    (lowercase, only `a-z0-9_-`, starting with a letter or digit); "" when
    nothing is left."""
    name = re.sub(r"[^a-z0-9_-]", "", text.lower())
    return name.lstrip("_-")[:40]


def check_project_name(name: str) -> str:
    """Validates a project name (`-p`, the file's `name:`).

    Raises:
        InvalidValue: Not `[a-z0-9][a-z0-9_-]*` of at most 40.
    """
    if not isinstance(name, str) or not _PROJECT.fullmatch(name):
        raise InvalidValue(f"invalid project name {str(name)[:40]!r}: must contain only lowercase letters, "
                           "digits, dashes and underscores, and start with a letter or digit (at most 40)")
    return name


def parse_project(
    text: str,
    default_name: str,
    variables: Mapping[str, str],
    read_file: Callable[[str, str], str],
    defaults: tuple[int, float],
    reserved_labels: tuple[str, ...],
    name: str = "",
) -> Project:
    """Reads a compose file.

    Args:
        text: The file's text.
        default_name: The project's name when neither `name` nor the file's
            `name:` gives one (the folder's, `normalize_project_name`).
        variables: For interpolation: the `.env` next to the file and the
            project's secrets.
        read_file: Reads a file relative to the compose file's folder
            (`env_file`), `(path, key path) -> text`.
        defaults: (memory bytes, CPUs) of a service without limits.
        reserved_labels: Label prefixes users may not set.
        name: The `-p` name, which wins over the file's.

    Returns:
        The project.

    Raises:
        InvalidValue: The first problem, with its key path
            (`services.web.privileged: not allowed`).
    """
    data = interpolate(load_yaml(text), variables)
    if not isinstance(data, dict):
        raise InvalidValue("compose file: must be a mapping with services")
    for key in data:
        if key not in TOP_LEVEL and not str(key).startswith("x-"):
            raise not_allowed(join("", key))
    project = check_project_name(name or str(data.get("name") or "") or default_name)
    volumes = _volumes(data.get("volumes"), project)
    services = data.get("services")
    if not isinstance(services, dict) or not services:
        raise InvalidValue("services: must be a mapping of at least one service")
    if len(services) > MAX_SERVICES:
        raise InvalidValue(f"services: at most {MAX_SERVICES}")
    drafts = [map_service(project, key, value, dict(volumes), read_file, defaults, reserved_labels)
              for key, value in services.items()]
    return Project(project, _ordered(drafts), volumes)


def config_hash(spec: ContainerSpec, image_id: str, depends_on: tuple[tuple[str, str], ...]) -> str:
    """The hash of a service's configuration: the spec (but the hash and the
    file name), the image's ID and what it waits for. Equal hashes: the
    running container is what the file asks for (Compose's
    `com.docker.compose.config-hash`; its own hash is of its own model).

    Returns:
        64 hex digits (SHA-256).
    """
    options = dataclasses.replace(spec.options, config_hash="", config_file="")
    text = json.dumps([dataclasses.replace(spec, options=options).to_json(), image_id, list(depends_on)])
    return hashlib.sha256(text.encode()).hexdigest()


def _volumes(value: Any, project: str) -> tuple[tuple[str, str], ...]:
    """Top-level volumes: local, no options, never external."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidValue("volumes: must be a mapping")
    pairs = []
    for key, item in value.items():
        path = join("volumes", key)
        if item is not None and not isinstance(item, dict):
            raise InvalidValue(f"{path}: must be a mapping")
        for option, setting in (item or {}).items():
            if option != "driver" or setting != "local":
                raise not_allowed(join(path, option))
        user_name = f"{project}_{key}"
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", user_name):
            raise InvalidValue(f"{path}: invalid volume name: letters, digits, '_', '.', '-'")
        pairs.append((str(key), user_name))
    return tuple(pairs)


def _ordered(drafts: list[ServiceDraft]) -> tuple[ServiceDraft, ...]:
    """Orders services so that each comes after what it depends on (the
    file's order otherwise).

    Raises:
        InvalidValue: An unknown service or a cycle, with its path.
    """
    by_name = {draft.name: draft for draft in drafts}
    for draft in drafts:
        for dep, _condition in draft.depends_on:
            if dep not in by_name:
                raise InvalidValue(f"{join(join('services', draft.name), 'depends_on')}.{dep[:64]}: no such service")
    ordered: list[ServiceDraft] = []
    state: dict[str, str] = {}

    def visit(draft: ServiceDraft) -> None:
        if state.get(draft.name) == "done":
            return
        if state.get(draft.name) == "visiting":
            raise InvalidValue(f"{join(join('services', draft.name), 'depends_on')}: dependency cycle")
        state[draft.name] = "visiting"
        for dep, _condition in draft.depends_on:
            visit(by_name[dep])
        state[draft.name] = "done"
        ordered.append(draft)

    for draft in drafts:
        visit(draft)
    return tuple(ordered)


def _service_config(service: ServiceDraft, volume_of: Mapping[str, str]) -> dict[str, Any]:
    """One service in Compose's keys, only what is set."""
    spec, options = service.spec, service.spec.options
    out: dict[str, Any] = {}
    if service.build is not None:
        out["build"] = {"context": service.build.context, "dockerfile": service.build.dockerfile}
    if spec.image:
        out["image"] = spec.image
    out["container_name"] = spec.name
    if spec.command:
        out["command"] = list(spec.command)
    if options.entrypoint:
        out["entrypoint"] = list(options.entrypoint)
    if spec.env:
        out["environment"] = dict(spec.env)
    if spec.ports:
        out["ports"] = [f"{p.host}:{p.container}/{p.protocol}" for p in spec.ports]
    if spec.volumes:
        out["volumes"] = [f"{volume_of.get(m.name, m.name)}:{m.target}" + (":ro" if m.read_only else "")
                          for m in spec.volumes]
    if service.depends_on:
        out["depends_on"] = {dep: {"condition": condition} for dep, condition in service.depends_on}
    restart = spec.restart + (f":{spec.restart_retries}" if spec.restart_retries else "")
    out["restart"] = restart
    limits: dict[str, Any] = {"memory": spec.memory, "cpus": spec.cpus}
    if options.pids:
        limits["pids"] = options.pids
    out["deploy"] = {"resources": {"limits": limits}}
    if options.healthcheck is not None:
        check = options.healthcheck
        out["healthcheck"] = {"test": list(check.test), **{
            key: f"{getattr(check, key):g}s" for key in ("interval", "timeout", "start_period") if getattr(check, key)},
            **({"retries": check.retries} if check.retries else {})}
    for key in ("working_dir", "user", "hostname", "stop_signal"):
        if getattr(options, key):
            out[key] = getattr(options, key)
    if options.labels:
        out["labels"] = dict(options.labels)
    if options.stop_timeout is not None:
        out["stop_grace_period"] = f"{options.stop_timeout}s"
    for key in ("init", "tty", "stdin_open"):
        if getattr(options, key):
            out[key] = True
    return out
