"""Provides `map_service`: one Compose service, read strictly, mapped onto a
`ContainerSpec` (issue 22). Every key the panel does not accept is refused
with its path (`services.web.privileged: not allowed`), so a compose file
can ask for nothing `run` could not (docs/ARCHITECTURE.md invariant 2).

Pure: no Docker, no files (an `env_file` is read through the caller's
function). Keys and forms from the Compose Specification
(https://github.com/compose-spec/compose-spec/blob/main/05-services.md).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sshpanel.access.compose_yaml import join, read_env
from sshpanel.access.names import compose_container_name
from sshpanel.access.policy import COMPOSE_LABEL
from sshpanel.access.spec import ContainerSpec, Healthcheck, ServiceOptions, check_image_ref, make_spec
from sshpanel.access.units import parse_cpus, parse_duration, parse_size
from sshpanel.errors import InvalidValue

ACCEPTED = frozenset({
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
    "restart", "healthcheck", "deploy", "mem_limit", "cpus", "pids_limit", "working_dir", "user", "labels",
    "hostname", "stop_signal", "stop_grace_period", "init", "tty", "stdin_open",
})
"""The service keys the panel accepts (issue 22); every other is refused."""
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_SIGNAL = re.compile(r"SIG[A-Z0-9+-]{1,12}|[0-9]{1,2}")
_HOSTNAME = re.compile(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")
_PORT = re.compile(r"(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?")


@dataclass(frozen=True)
class BuildConfig:
    """A service's `build:`: a folder of the user's home to build.

    Attributes:
        context: The folder, relative to the compose file's folder.
        dockerfile: The Dockerfile's name at the context's top.
    """

    context: str
    dockerfile: str = "Dockerfile"


@dataclass(frozen=True)
class ServiceDraft:
    """One service as the file describes it, validated.

    Attributes:
        name: The service's name.
        spec: Its container; `spec.image` is "" for a service built from
            `build` (the build's tag is put in before the create).
        depends_on: (service, condition) pairs.
        build: Its build, or None.
    """

    name: str
    spec: ContainerSpec
    depends_on: tuple[tuple[str, str], ...]
    build: BuildConfig | None


def not_allowed(path: str, why: str = "not allowed") -> InvalidValue:
    """The error of a refused key: `services.web.privileged: not allowed`."""
    return InvalidValue(f"{path}: {why}")


def map_service(
    project: str,
    name: Any,
    data: Any,
    volumes: Mapping[str, str],
    read_file: Callable[[str, str], str],
    defaults: tuple[int, float],
    reserved_labels: tuple[str, ...],
) -> ServiceDraft:
    """Validates one service and maps it onto a `ContainerSpec`.

    Args:
        project: The project's name.
        name: The service's key under `services`.
        data: Its value (interpolated already).
        volumes: Top-level volume name -> the user's volume name.
        read_file: Reads a file relative to the compose file's folder
            `(path, key path) -> text`; raises `InvalidValue` for a path
            outside the user's home.
        defaults: (memory bytes, CPUs) for a service without limits.
        reserved_labels: Label prefixes users may not set.

    Raises:
        InvalidValue: Naming the key path and why.
    """
    path = join("services", name)
    if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
        raise InvalidValue(f"{path}: invalid service name: letters, digits, '_', '.', '-'")
    if not isinstance(data, dict):
        raise InvalidValue(f"{path}: must be a mapping")
    for key in data:
        if key not in ACCEPTED and not str(key).startswith("x-"):
            raise not_allowed(join(path, key))
    build = _build(data.get("build"), join(path, "build")) if "build" in data else None
    image = data.get("image")
    if image is None and build is None:
        raise InvalidValue(f"{path}: has neither an image nor a build")
    if image is not None:
        image = _text(image, join(path, "image"))
        try:
            check_image_ref(image)
        except InvalidValue as exc:
            raise InvalidValue(f"{join(path, 'image')}: {exc.message}") from None
    memory, cpus, pids = _resources(data, path, defaults)
    env = _environment(data, path, read_file)
    command = _argv(data.get("command"), join(path, "command"))
    restart = _restart(data, path)
    ports = _ports(data.get("ports"), join(path, "ports"))
    mounts = _volumes(data.get("volumes"), join(path, "volumes"), volumes)
    try:
        spec = make_spec(
            compose_container_name(project, name), image or "build", memory, cpus, command=command,
            env=tuple(f"{key}={value}" for key, value in env.items()), restart=restart, ports=ports, volumes=mounts,
        )
    except InvalidValue as exc:
        raise InvalidValue(f"{path}: {exc.message}") from None
    options = ServiceOptions(
        entrypoint=tuple(_argv(data.get("entrypoint"), join(path, "entrypoint"))),
        working_dir=_absolute(data.get("working_dir"), join(path, "working_dir")),
        user=_match(data.get("user"), _USER, join(path, "user"), "USER[:GROUP]"),
        hostname=_match(data.get("hostname"), _HOSTNAME, join(path, "hostname"), "a host name"),
        labels=_labels(data.get("labels"), join(path, "labels"), reserved_labels),
        stop_signal=_match(data.get("stop_signal"), _SIGNAL, join(path, "stop_signal"), "a signal like SIGTERM"),
        stop_timeout=_grace(data.get("stop_grace_period"), join(path, "stop_grace_period")),
        init=_flag(data, "init", path), tty=_flag(data, "tty", path), stdin_open=_flag(data, "stdin_open", path),
        pids=pids,
        healthcheck=_healthcheck(data.get("healthcheck"), join(path, "healthcheck")),
        project=project, service=name,
    )
    spec = dataclasses.replace(spec, image=image or "", options=options)
    return ServiceDraft(name, spec, _depends_on(data.get("depends_on"), join(path, "depends_on")), build)


# Fields ------------------------------------------------------------------


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidValue(f"{path}: must be a string")
    return str(value)


def _mapping(value: Any, path: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise InvalidValue(f"{path}: must be a mapping")
    for key in value:
        if key not in allowed:
            raise not_allowed(join(path, key))
    return value


def _build(value: Any, path: str) -> BuildConfig:
    if isinstance(value, str):
        return BuildConfig(value)
    value = _mapping(value, path, ("context", "dockerfile"))
    dockerfile = _text(value.get("dockerfile", "Dockerfile"), join(path, "dockerfile"))
    if dockerfile != "Dockerfile":
        raise not_allowed(join(path, "dockerfile"), "only the context's own Dockerfile is built")
    return BuildConfig(_text(value.get("context", "."), join(path, "context")), dockerfile)


def _resources(data: dict, path: str, defaults: tuple[int, float]) -> tuple[int, float, int]:
    """(memory bytes, CPUs, pids) from `mem_limit`/`cpus`/`pids_limit` or
    `deploy.resources.limits`, which wins as in Compose."""
    memory, cpus, pids = data.get("mem_limit"), data.get("cpus"), data.get("pids_limit")
    if "deploy" in data:
        deploy = _mapping(data["deploy"], join(path, "deploy"), ("resources",))
        resources = _mapping(deploy.get("resources", {}), join(path, "deploy.resources"), ("limits",))
        limits = _mapping(resources.get("limits", {}), join(path, "deploy.resources.limits"),
                          ("memory", "cpus", "pids"))
        memory, cpus, pids = limits.get("memory", memory), limits.get("cpus", cpus), limits.get("pids", pids)
    try:
        memory_bytes = parse_size(str(memory)) if memory is not None else defaults[0]
        cpu_count = parse_cpus(cpus) if cpus is not None else defaults[1]
    except InvalidValue as exc:
        raise InvalidValue(f"{path}: {exc.message}") from None
    if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int) or not 0 < pids <= 1 << 22):
        raise InvalidValue(f"{join(path, 'pids_limit')}: a positive number of processes")
    return memory_bytes, cpu_count, int(pids or 0)


def _environment(data: dict, path: str, read_file: Callable[[str, str], str]) -> dict[str, str]:
    """`env_file` files first, then `environment` over them (Compose's order)."""
    env: dict[str, str] = {}
    files = data.get("env_file", [])
    for index, item in enumerate([files] if isinstance(files, str) else files if isinstance(files, list) else [None]):
        where = join(path, "env_file") + (f"[{index}]" if isinstance(files, list) else "")
        if isinstance(item, dict):
            item = _mapping(item, where, ("path", "required")).get("path")
        env.update(read_env(read_file(_text(item, where), where), where))
    value = data.get("environment", {})
    where = join(path, "environment")
    if isinstance(value, list):
        for item in value:
            key, sep, text = _text(item, where).partition("=")
            if sep:
                env[key] = text
    elif isinstance(value, dict):
        for key, text in value.items():
            if text is not None:  # a bare KEY takes the shell's value in Compose: there is no shell here
                env[str(key)] = str(text).lower() if isinstance(text, bool) else str(text)
    else:
        raise InvalidValue(f"{where}: must be a list or a mapping")
    return env


def _argv(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise InvalidValue(f"{path}: {exc}") from None
    if isinstance(value, list):
        return [_text(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise InvalidValue(f"{path}: must be a string or a list")


def _restart(data: dict, path: str) -> str:
    return _text(data.get("restart", "no"), join(path, "restart"))


def _ports(value: Any, path: str) -> tuple[str, ...]:
    """`HOST:CONTAINER[/PROTO]` or `{target, published, protocol}`; a host
    address, a range or a port without a host side is refused."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidValue(f"{path}: must be a list")
    ports = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, dict):
            item = _mapping(item, where, ("target", "published", "protocol", "mode"))
            if item.get("mode", "ingress") not in ("ingress", "host"):
                raise not_allowed(join(where, "mode"))
            item = f"{item.get('published', '')}:{item.get('target', '')}/{item.get('protocol', 'tcp')}"
        text = _text(item, where)
        if not _PORT.fullmatch(text):
            raise not_allowed(where, f"{text[:40]!r}: use HOSTPORT:CONTAINERPORT[/tcp|udp] (no host address, no range)")
        ports.append(text)
    return tuple(ports)


def _volumes(value: Any, path: str, volumes: Mapping[str, str]) -> tuple[str, ...]:
    """Mounts of the project's named volumes only: a bind mount, a tmpfs or
    a volume not declared at the top level is refused."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidValue(f"{path}: must be a list")
    mounts = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, dict):
            item = _mapping(item, where, ("type", "source", "target", "read_only"))
            if item.get("type") != "volume":
                raise not_allowed(join(where, "type"), f"{str(item.get('type'))[:20]!r}: only named volumes")
            source, target, mode = item.get("source"), item.get("target"), "ro" if item.get("read_only") else "rw"
        else:
            parts = _text(item, where).split(":")
            source, target, mode = parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "rw"
            if len(parts) < 2 or len(parts) > 3 or mode not in ("ro", "rw"):
                raise not_allowed(where, "use VOLUME:/path[:ro] with a volume of the top-level volumes")
        source = _text(source, where)
        if source.startswith(("/", ".", "~")) or "/" in source:
            raise not_allowed(where, "bind mounts are not allowed, use a named volume")
        if source not in volumes:
            raise InvalidValue(f"{where}: volume {source[:40]!r} is not declared in the top-level volumes")
        mounts.append(f"{volumes[source]}:{_text(target, where)}:{mode}")
    return tuple(mounts)


def _depends_on(value: Any, path: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple((_text(item, f"{path}[{index}]"), "service_started") for index, item in enumerate(value))
    if not isinstance(value, dict):
        raise InvalidValue(f"{path}: must be a list or a mapping")
    pairs = []
    for name, item in value.items():
        item = _mapping(item or {}, join(path, name), ("condition", "restart", "required"))
        condition = item.get("condition", "service_started")
        if condition not in CONDITIONS:
            raise InvalidValue(f"{join(path, name)}.condition: use one of {', '.join(CONDITIONS)}")
        pairs.append((str(name), condition))
    return tuple(pairs)


def _absolute(value: Any, path: str) -> str:
    if value is None:
        return ""
    text = _text(value, path)
    if not text.startswith("/") or len(text) > 255 or not text.isprintable():
        raise InvalidValue(f"{path}: an absolute path inside the container")
    return text


def _match(value: Any, pattern: re.Pattern, path: str, what: str) -> str:
    if value is None:
        return ""
    text = _text(value, path)
    if not pattern.fullmatch(text):
        raise InvalidValue(f"{path}: invalid value {text[:40]!r}: use {what}")
    return text


def _labels(value: Any, path: str, reserved: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        value = dict(_text(item, path).partition("=")[::2] for item in value)
    if not isinstance(value, dict):
        raise InvalidValue(f"{path}: must be a list or a mapping")
    labels = []
    for key, text in value.items():
        key = str(key)
        if key.startswith((*reserved, COMPOSE_LABEL)):
            raise not_allowed(join(path, key), "a reserved label prefix")
        if not _LABEL.fullmatch(key):
            raise InvalidValue(f"{join(path, key)}: invalid label name")
        text = "" if text is None else str(text)
        if len(text) > 4096 or "\x00" in text:
            raise InvalidValue(f"{join(path, key)}: at most 4 KiB, no NUL bytes")
        labels.append((key, text))
    return tuple(sorted(labels))


def _seconds(value: Any, path: str) -> float:
    try:
        return parse_duration(_text(value, path))
    except InvalidValue as exc:
        raise InvalidValue(f"{path}: {exc.message}") from None


def _grace(value: Any, path: str) -> int | None:
    if value is None:
        return None
    seconds = _seconds(value, path)
    if seconds > 3600:
        raise InvalidValue(f"{path}: at most 1h")
    return max(1, round(seconds))


def _flag(data: dict, key: str, path: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise InvalidValue(f"{join(path, key)}: must be true or false")
    return value


def _healthcheck(value: Any, path: str) -> Healthcheck | None:
    if value is None:
        return None
    value = _mapping(value, path, ("test", "interval", "timeout", "retries", "start_period", "disable"))
    if value.get("disable") is True:
        return Healthcheck(("NONE",))
    test = value.get("test")
    if isinstance(test, str):
        argv = ("CMD-SHELL", test)
    elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE"):
        argv = tuple(_text(item, f"{path}.test[{index}]") for index, item in enumerate(test))
    else:
        raise InvalidValue(f"{path}.test: a string, or a list starting with CMD, CMD-SHELL or NONE")
    retries = value.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise InvalidValue(f"{path}.retries: a number of 0-100")
    timing = {key: _seconds(value[key], join(path, key)) for key in ("interval", "timeout", "start_period")
              if key in value}
    return Healthcheck(argv, retries=retries, **timing)
