"""Provides `ContainerSpec`, the typed request to create a container.

It is the only way to ask for a container (docs/ARCHITECTURE.md invariant 2):
there is no field for raw Docker options, so privileged mode, host namespaces,
devices, capabilities, bind mounts and the like cannot be requested.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass, field

from sshpanel.access.names import check_container_name
from sshpanel.access.units import parse_cpus, parse_size
from sshpanel.errors import InvalidValue

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9._/-]{0,199}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")
_IMAGE_ID = re.compile(r"(sha256:)?[a-f0-9]{12,64}")
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_PUBLISH = re.compile(r"(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?")
MAX_ENV = 128
MAX_ENV_VALUE = 32 * 1024
MAX_COMMAND = 64 * 1024


@dataclass(frozen=True)
class PortMapping:
    """One published port, as `docker run -p HOSTPORT:CONTAINERPORT/PROTOCOL`.

    Attributes:
        host: Port on the host (bound to `Settings.publish_address`).
        container: Port inside the container.
        protocol: `tcp` or `udp`.
    """

    host: int
    container: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class VolumeMount:
    """One named volume of the user's, as `docker run -v VOLUME:/path[:ro]`.

    Attributes:
        name: The user's volume name (never a host path: bind mounts are
            refused, CIS Docker 5.5 / issue 7).
        target: Absolute path inside the container.
        read_only: Mounted read-only.
    """

    name: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Healthcheck:
    """A container's health check, as Compose's `healthcheck` and the Engine
    API's `HealthConfig` have it.

    Attributes:
        test: `("CMD", arg, ...)`, `("CMD-SHELL", line)` or `("NONE",)`.
        interval: Seconds between two checks (0: Docker's default, 30 s).
        timeout: Seconds a check may take (0: Docker's default, 30 s).
        retries: Failures in a row that make it unhealthy (0: default, 3).
        start_period: Seconds after the start in which failures do not count.
    """

    test: tuple[str, ...]
    interval: float = 0.0
    timeout: float = 0.0
    retries: int = 0
    start_period: float = 0.0


@dataclass(frozen=True)
class ServiceOptions:
    """What a Compose service may set beyond `run`'s flags (issue 22), each
    field validated by `sshpanel.access.compose_service`; the defaults are
    what a container made by `run` has.

    Attributes:
        entrypoint: Replaces the image's entrypoint; () keeps it.
        working_dir: Absolute path; "" for the image's.
        user: `USER[:GROUP]` (names or numbers); "" for the image's.
        hostname: "" for the container's short name.
        labels: The user's labels (reserved prefixes were refused).
        stop_signal: `SIGTERM`-like name or number; "" for the image's.
        stop_timeout: Seconds between the stop signal and SIGKILL; None: 10.
        init: Run Docker's init as PID 1.
        tty: Allocate a terminal.
        stdin_open: Keep stdin open.
        pids: The service's own pids limit (capped at the user's); 0: the user's.
        healthcheck: None for the image's.
        project: The Compose project it belongs to; "" for a lone container.
        service: The service's name in that project.
        config_hash: Hash of the service's configuration (Compose's
            `com.docker.compose.config-hash`), to recreate only what changed.
        config_file: The compose file it came from, as the user named it.
    """

    entrypoint: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str = ""
    stop_timeout: int | None = None
    init: bool = False
    tty: bool = False
    stdin_open: bool = False
    pids: int = 0
    healthcheck: Healthcheck | None = None
    project: str = ""
    service: str = ""
    config_hash: str = ""
    config_file: str = ""

    @classmethod
    def from_dict(cls, data: dict | None) -> "ServiceOptions":
        """Rebuilds options stored by `ContainerSpec.to_json` (unknown keys
        ignored, missing ones defaulted)."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        known["entrypoint"] = tuple(known.get("entrypoint") or ())
        known["labels"] = tuple(tuple(pair) for pair in known.get("labels") or ())
        check = known.get("healthcheck")
        if check:
            known["healthcheck"] = Healthcheck(**dict(check, test=tuple(check.get("test") or ())))
        return cls(**known)


@dataclass(frozen=True)
class ContainerSpec:
    """What a user may configure on a container, validated.

    Attributes:
        name: Short name, unique among the user's containers.
        image: Image reference or ID as the user typed it.
        command: Command and arguments; empty for the image's default.
        env: Environment variables as (key, value) pairs.
        memory: Memory limit, bytes.
        cpus: CPU limit, in CPUs (0.5 = half a core).
        restart: Restart policy name (`no`, `always`, `unless-stopped`,
            `on-failure`).
        restart_retries: Maximum retries for `on-failure` (0 = unlimited).
        ports: Published ports; the host side is checked against the owner's
            port range at create (`sshpanel.access.quota.check_ports`).
        volumes: The user's named volumes to mount.
        options: Compose's further settings (`ServiceOptions`).
    """

    name: str
    image: str
    memory: int
    cpus: float
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    restart: str = "no"
    restart_retries: int = 0
    ports: tuple[PortMapping, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    options: ServiceOptions = ServiceOptions()

    def to_json(self) -> str:
        """Serialises the spec for the database (`Container.spec`)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ContainerSpec":
        """Rebuilds a spec stored by `to_json` (fields a newer panel added
        take their defaults; unknown keys are ignored).

        Raises:
            ValueError: The text is not a stored spec.
        """
        data = json.loads(text)
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        known["command"] = tuple(known.get("command") or ())
        known["env"] = tuple(tuple(pair) for pair in known.get("env") or ())
        known["ports"] = tuple(PortMapping(**port) for port in known.get("ports") or ())
        known["volumes"] = tuple(VolumeMount(**mount) for mount in known.get("volumes") or ())
        known["options"] = ServiceOptions.from_dict(known.get("options"))
        return cls(**known)


def check_image_ref(image: str) -> str:
    """Validates the syntax of an image reference (`repo[:tag][@digest]` or an ID).

    Raises:
        InvalidValue: The text cannot be an image reference.
    """
    if not isinstance(image, str) or not (_IMAGE_REF.fullmatch(image) or _IMAGE_ID.fullmatch(image)):
        raise InvalidValue("invalid image reference: use repository[:tag], e.g. busybox:latest")
    return image


def check_env_key(key: str) -> str:
    """Validates an environment variable name (letters, digits, `_`, not
    starting with a digit, at most 128).

    Raises:
        InvalidValue: The name is not valid.
    """
    if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
        raise InvalidValue(f"invalid environment variable name {str(key)[:40]!r}: use letters, digits, '_'")
    return key


def parse_env(item: str) -> tuple[str, str]:
    """Parses `KEY=VALUE` as `docker run -e` does (a bare `KEY` is refused).

    Raises:
        InvalidValue: Bad key, missing `=`, NUL byte or a value over 32 KiB.
    """
    key, sep, value = item.partition("=")
    if not sep or not _ENV_KEY.fullmatch(key):
        raise InvalidValue(f"invalid environment variable {item[:40]!r}: use KEY=VALUE with KEY of letters, digits, '_'")
    if "\x00" in value or len(value) > MAX_ENV_VALUE:
        raise InvalidValue(f"invalid value for {key}: no NUL bytes, at most 32 KiB")
    return key, value


def parse_restart(text: str) -> tuple[str, int]:
    """Parses a restart policy (`no`, `always`, `unless-stopped`, `on-failure[:N]`).

    Returns:
        (policy name, maximum retries).

    Raises:
        InvalidValue: Unknown policy or a bad retry count.
    """
    name, _, count = (text or "no").partition(":")
    if name not in RESTART_POLICIES or (count and name != "on-failure"):
        raise InvalidValue(f"invalid restart policy {text[:32]!r}: use no, always, unless-stopped or on-failure[:N]")
    if count and (not count.isdigit() or int(count) > 1000):
        raise InvalidValue(f"invalid restart retry count {count[:8]!r}")
    return name, int(count or 0)


def parse_publish(text: str) -> PortMapping:
    """Parses `-p HOSTPORT:CONTAINERPORT[/tcp|udp]` (the only form accepted:
    the host address is the server's `publish_address`, never the user's).

    Raises:
        InvalidValue: Another form, a port outside 1-65535 or an unknown protocol.
    """
    match = _PUBLISH.fullmatch(str(text).strip())
    if not match:
        raise InvalidValue(
            f"invalid published port {str(text)[:40]!r}: use HOSTPORT:CONTAINERPORT[/tcp|udp], e.g. 8080:80"
        )
    host, container = int(match.group(1)), int(match.group(2))
    if not (1 <= host <= 65535 and 1 <= container <= 65535):
        raise InvalidValue(f"invalid published port {str(text)[:40]!r}: ports are 1-65535")
    return PortMapping(host, container, match.group(3) or "tcp")


def parse_volume(text: str) -> VolumeMount:
    """Parses `docker run -v VOLUME:/path[:ro|rw]` for a named volume.

    Only the user's named volumes can be mounted: anything that reads as a
    host path (`/etc`, `./x`, `~/x`, `a/b`) is refused (bind mounts give the
    container the host's files; CIS Docker 5.5, issue 7).

    Raises:
        InvalidValue: A host path, a bad volume name or container path.
    """
    parts = str(text).split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise InvalidValue(f"invalid volume {str(text)[:60]!r}: use VOLUME:/path[:ro]")
    name, target = parts[0], parts[1]
    if name.startswith(("/", ".", "~")) or "/" in name or "\\" in name:
        raise InvalidValue(f"invalid volume {name[:60]!r}: host paths are not allowed, use a named volume")
    if not _VOLUME_NAME.fullmatch(name):
        raise InvalidValue(f"invalid volume name {name[:60]!r}: letters, digits, '_', '.', '-' (at most 63)")
    if (not target.startswith("/") or target == "/" or posixpath.normpath(target) != target
            or len(target) > 255 or not target.isprintable()):
        raise InvalidValue(f"invalid container path {target[:60]!r}: an absolute path without '..', not '/'")
    return VolumeMount(name, target, len(parts) == 3 and parts[2] == "ro")


def make_spec(
    name: str,
    image: str,
    memory: int,
    cpus: float,
    command: list[str] | tuple[str, ...] = (),
    env: list[str] | tuple[str, ...] = (),
    restart: str = "no",
    ports: list[str] | tuple[str, ...] = (),
    volumes: list[str] | tuple[str, ...] = (),
) -> ContainerSpec:
    """Builds a validated `ContainerSpec` from user input.

    Args:
        name: Short container name.
        image: Image reference.
        memory: Memory limit in bytes (already parsed).
        cpus: CPU limit in CPUs.
        command: Command and arguments.
        env: `KEY=VALUE` strings.
        restart: Restart policy text.
        ports: `HOSTPORT:CONTAINERPORT[/tcp|udp]` strings (`run -p`).
        volumes: `VOLUME:/path[:ro]` strings (`run -v`), named volumes only.

    Raises:
        InvalidValue: Any field is invalid; the message names which.
    """
    check_container_name(name)
    check_image_ref(image)
    if not isinstance(memory, int) or memory < 6 * 1024 * 1024:
        raise InvalidValue("memory limit must be at least 6m (Docker's minimum)")
    cpus = parse_cpus(cpus)
    if len(env) > MAX_ENV:
        raise InvalidValue(f"at most {MAX_ENV} environment variables")
    pairs = tuple(parse_env(item) for item in env)
    command = tuple(command)
    if any("\x00" in part for part in command) or sum(len(p) for p in command) > MAX_COMMAND:
        raise InvalidValue("invalid command: no NUL bytes, at most 64 KiB")
    policy, retries = parse_restart(restart)
    mappings = tuple(parse_publish(item) for item in ports)
    hosts = [(m.host, m.protocol) for m in mappings]
    if len(set(hosts)) != len(hosts):
        raise InvalidValue("invalid published ports: a host port is given twice")
    mounts = tuple(parse_volume(item) for item in volumes)
    targets = [mount.target for mount in mounts]
    if len(set(targets)) != len(targets):
        raise InvalidValue("invalid volumes: a container path is given twice")
    return ContainerSpec(name, image, memory, cpus, command, pairs, policy, retries, mappings, mounts)


@dataclass(frozen=True)
class CreateRequest:
    """A container as the user typed it, in `run`/`create` flags or the
    create form: text, parsed and validated only by `spec_from_request`, so
    both front-ends accept and refuse exactly the same (issue 18).

    Attributes:
        image: Image reference.
        name: Short name; "" to have one generated.
        command: Arguments (`run IMAGE ARG...`) or one shell line (the
            form), split as a POSIX shell would.
        env: `KEY=VALUE` items, or lines of them (each line stripped,
            blank lines skipped).
        memory: Memory limit (`256m`, `1g`, `256MiB`); "" for the default.
        cpus: CPU limit in CPUs (`0.5`); "" for the default.
        restart: Restart policy (`on-failure:3`); "" for `no`.
        publish: `HOSTPORT:CONTAINERPORT[/PROTO]` items, or one text of them
            separated by spaces or commas.
        volumes: `VOLUME:/path[:ro]` items, or one such text.
    """

    image: str
    name: str = ""
    command: tuple[str, ...] | str = ()
    env: tuple[str, ...] | str = ()
    memory: str = ""
    cpus: str = ""
    restart: str = ""
    publish: tuple[str, ...] | str = ()
    volumes: tuple[str, ...] | str = ()


UNNAMED = "unnamed"
"""A valid stand-in name, for checking a request whose name is generated later."""


def spec_from_request(request: CreateRequest, name: str, default_memory: int, default_cpus: float) -> ContainerSpec:
    """Parses and validates what the user typed (see `make_spec` for the
    rules of each field).

    Args:
        request: The typed fields.
        name: The container's name: `request.name`, or the generated one.
        default_memory: Bytes, when `request.memory` is empty.
        default_cpus: CPUs, when `request.cpus` is empty.

    Returns:
        The spec.

    Raises:
        InvalidValue: A field is invalid; the message says which and why.
    """
    if not request.image.strip():
        raise InvalidValue("choose an image")
    command = request.command
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise InvalidValue(f"invalid command: {exc}") from None
    env = request.env
    if isinstance(env, str):  # a text area: one item a line, blank lines skipped
        env = [line.strip() for line in env.splitlines() if line.strip()]
    return make_spec(
        name.strip(),
        request.image.strip(),
        parse_size(request.memory) if request.memory.strip() else default_memory,
        parse_cpus(request.cpus) if request.cpus.strip() else default_cpus,
        command=command,
        env=tuple(env),
        restart=request.restart.strip() or "no",
        ports=_items(request.publish),
        volumes=_items(request.volumes),
    )


def _items(value: tuple[str, ...] | str) -> tuple[str, ...]:
    """Items given one by one, or in one text separated by spaces or commas."""
    return tuple(value.replace(",", " ").split()) if isinstance(value, str) else tuple(value)
