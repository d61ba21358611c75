"""Provides `Settings`, the typed configuration passed down to every layer.

Settings come from command-line flags, then `SSHPANEL_*` environment
variables, then the defaults below. Nothing reads them from a global: the
`Settings` object is built once in `cli.py` and passed through constructors.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from sshpanel.errors import ConfigError

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Settings:
    """Server settings.

    Attributes:
        listen: Address the SSH server binds to.
        port: TCP port of the SSH server.
        data_dir: Folder for the SQLite database and per-user data.
        host_keys_dir: Folder holding the ed25519 host key (created once).
        database_url: Peewee database URL; empty means SQLite in `data_dir`.
        database_max_connections: PostgreSQL connections one process opens
            at most (its pool; a connection is held only for one statement
            or one transaction, a thread over the maximum waits for one).
        docker_host: Docker engine address (`unix:///var/run/docker.sock`);
            empty means the Docker SDK's default from the environment.
        namespace: Prefix of Docker names, labels and networks the panel owns.
        default_memory: Memory limit of a container when none is given, bytes.
        default_cpus: CPU limit of a container when none is given, in CPUs
            (0.5 = half a core).
        default_pids: Process limit of every container (CIS Docker 5.28).
        quota_containers: Default maximum number of containers per user.
        quota_memory: Default total memory of a user's containers, bytes.
        quota_cpus: Default total CPUs of a user's containers.
        publish_address: Host address published ports bind to.
        login_grace_time: Seconds an unauthenticated connection may stay.
        max_auth_tries: Authentication attempts per connection (OpenSSH
            `MaxAuthTries`).
        max_sessions_per_connection: Session channels one connection may
            hold open (OpenSSH `MaxSessions`, 10), started or not.
        max_sessions_per_user: Session channels one user may hold open
            across all their connections.
        idle_timeout: Seconds without keyboard input after which a dashboard
            session is closed (0 = never); screen updates do not count.
        provision_timeout: Seconds a provisioning script may run before it is
            killed (default 10 minutes, issue 5).
        initial_admin_keys: OpenSSH public key lines that create the `admin`
            user on start when no admin exists yet.
        password_auth: Accept password logins (bcrypt, set with `passwd`) in
            addition to keys; off by default.
        stats_interval: Seconds between two samples of a watched container
            (issue 4; one shared collector whatever the number of viewers).
        disk_interval: Seconds between two measurements of every user's
            disk usage (volumes, build layers, containers' writable layers;
            issue 21), at least 1.
        stats_source: Where samples come from: `auto` (cgroup files when
            visible, else the Docker API), `cgroup` or `api`.
        deploy_settle: Seconds a deployed container must keep running before
            the deployment counts as good; one that exits sooner is replaced
            by the previous container again (issue 6).
        build_network: Network of a build's `RUN` steps: `none` (default) or
            `bridge` (Docker's default bridge, needed by the python
            template's `pip install`); never `host` (issue 6 "no host
            network"), checked at load by `build_network`.
        max_startups: OpenSSH `MaxStartups start:rate:full` for
            unauthenticated connections (`SSHPANEL_MAX_STARTUPS=10:30:100`,
            OpenSSH's default): raise it for a class that logs in at once.
        workers: Panel processes serving connections (`serve --workers N`,
            1 to `MAX_WORKERS`): with more than one, a supervisor process
            accepts every connection, applies the admission limits and
            hands the connection to the least busy worker (issue 8;
            docs/ARCHITECTURE.md "Deployment").
        require_unprivileged: Refuse to start on an engine that does not
            remap user namespaces (`SSHPANEL_REQUIRE_UNPRIVILEGED=1`; issue
            21: root in a container must not be root on the host).
        user_ca_keys: File of the certificate authorities' public keys
            (`ssh-...` lines, as OpenSSH `TrustedUserCAKeys`) whose user
            certificates log users in; empty = certificates are refused
            (issue 24; `ssh.certificates`).
        revoked_keys: File of revoked public keys (one per line, as
            OpenSSH `RevokedKeys` in its plain form): a listed key, or a
            certificate whose key or CA is listed, never logs in; read
            again whenever it changes; empty = none.
        cert_auto_create: A valid certificate whose principal names no
            user creates that user with the role `user` (off: only
            existing users log in with a certificate).
        forwarding: Accept `ssh -L`/`-D`/`-W` to the user's own running
            containers (`SSHPANEL_FORWARDING=0` refuses every forwarding
            request, as before issue 25); nothing else is ever forwarded.
        max_forwards_per_user: Forwarded connections one user may hold open
            across all their connections (a browser behind `ssh -D` opens
            several per page).
    """

    listen: str = "0.0.0.0"
    port: int = 2222
    data_dir: Path = Path("data")
    host_keys_dir: Path = Path("hostkeys")
    database_url: str = ""
    database_max_connections: int = 10
    docker_host: str = ""
    namespace: str = "sshpanel"
    default_memory: int = 256 * MIB
    default_cpus: float = 0.5
    default_pids: int = 256
    quota_containers: int = 10
    quota_memory: int = 2 * GIB
    quota_cpus: float = 2.0
    publish_address: str = "127.0.0.1"
    login_grace_time: float = 30.0
    max_auth_tries: int = 6
    max_sessions_per_connection: int = 10
    max_sessions_per_user: int = 20
    provision_timeout: float = 600.0
    idle_timeout: float = 3600.0
    initial_admin_keys: tuple[str, ...] = field(default_factory=tuple)
    password_auth: bool = False
    stats_interval: float = 2.0
    disk_interval: float = 60.0
    stats_source: str = "auto"
    quota_disk: int = 1 * GIB
    build_memory: int = 1 * GIB
    build_timeout: float = 900.0
    deploy_settle: float = 5.0
    build_network: str = "none"
    max_startups: tuple[int, int, int] = (10, 30, 100)
    workers: int = 1
    require_unprivileged: bool = False
    user_ca_keys: str = ""
    revoked_keys: str = ""
    cert_auto_create: bool = False
    forwarding: bool = True
    max_forwards_per_user: int = 32

    @property
    def database_path(self) -> Path:
        """Path of the embedded SQLite database file."""
        return self.data_dir / "sshpanel.db"

    @property
    def label_owner(self) -> str:
        """Docker label key whose value is the owning user's name."""
        return f"io.{self.namespace}.owner"

    @property
    def label_prefix(self) -> str:
        """Reserved label prefix: users can never set labels under it."""
        return f"io.{self.namespace}."


MAX_WORKERS = 64
"""Most worker processes `serve --workers` starts."""


def boolean(text: str) -> bool:
    """Parses a yes/no setting (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`).

    Raises:
        ValueError: Any other text.
    """
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


BUILD_NETWORKS = ("none", "bridge")
"""The values of `SSHPANEL_BUILD_NETWORK`: never `host` (issue 6)."""


def build_network(text: str) -> str:
    """Parses `SSHPANEL_BUILD_NETWORK`: `none` or `bridge`.

    Raises:
        ValueError: Any other text (`host`, a network name, `container:...`).
    """
    if text not in BUILD_NETWORKS:
        raise ValueError(text)
    return text


def max_startups(text: str) -> tuple[int, int, int]:
    """Parses `SSHPANEL_MAX_STARTUPS` as OpenSSH's `MaxStartups`:
    `start:rate:full` (1 <= start <= full, 0 <= rate <= 100), or a single
    number `full` (refuse every connection past it).

    Raises:
        ValueError: Anything else.
    """
    parts = [int(part) for part in text.split(":")]
    if len(parts) == 1:
        parts = [parts[0], 100, parts[0]]
    if len(parts) != 3:
        raise ValueError(text)
    start, rate, full = parts
    if not (1 <= start <= full and 0 <= rate <= 100):
        raise ValueError(text)
    return start, rate, full


_ENV_FIELDS: dict[str, Callable[[str], object]] = {
    "listen": str,
    "port": int,
    "data_dir": Path,
    "host_keys_dir": Path,
    "database_url": str,
    "database_max_connections": int,
    "docker_host": str,
    "namespace": str,
    "default_memory": int,
    "default_cpus": float,
    "default_pids": int,
    "quota_containers": int,
    "quota_memory": int,
    "quota_cpus": float,
    "publish_address": str,
    "login_grace_time": float,
    "max_auth_tries": int,
    "max_sessions_per_connection": int,
    "max_sessions_per_user": int,
    "provision_timeout": float,
    "idle_timeout": float,
    "password_auth": boolean,
    "stats_interval": float,
    "disk_interval": float,
    "stats_source": str,
    "quota_disk": int,
    "build_memory": int,
    "build_timeout": float,
    "deploy_settle": float,
    "build_network": build_network,
    "max_startups": max_startups,
    "workers": int,
    "require_unprivileged": boolean,
    "user_ca_keys": str,
    "revoked_keys": str,
    "cert_auto_create": boolean,
    "forwarding": boolean,
    "max_forwards_per_user": int,
}


def load_settings(
    overrides: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Builds `Settings` from flags, then `SSHPANEL_*` variables, then defaults.

    Args:
        overrides: Values given on the command line (None values are ignored).
        environ: Environment to read (defaults to `os.environ`).

    Returns:
        The settings.

    Raises:
        ConfigError: An environment variable does not parse as its type.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name, kind in _ENV_FIELDS.items():
        var = f"SSHPANEL_{name.upper()}"
        if var in env and env[var] != "":
            try:
                values[name] = kind(env[var])
            except ValueError:
                raise ConfigError(f"{var}={env[var]!r} is not a valid {kind.__name__}") from None
    if env.get("SSHPANEL_INITIAL_ADMIN_KEYS"):
        lines = env["SSHPANEL_INITIAL_ADMIN_KEYS"].splitlines()
        values["initial_admin_keys"] = tuple(line.strip() for line in lines if line.strip())
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    return dataclasses.replace(Settings(), **values)


def settings_to_json(settings: Settings) -> str:
    """Serializes `settings` for a worker process (`settings_from_json`)."""
    return json.dumps(dataclasses.asdict(settings), default=str)


def settings_from_json(text: str) -> Settings:
    """Rebuilds the `Settings` written by `settings_to_json`.

    Raises:
        ValueError, TypeError: Not such a text.
    """
    values = json.loads(text)
    defaults = Settings()
    for name, value in values.items():
        default = getattr(defaults, name, None)
        if isinstance(default, (Path, tuple)):
            values[name] = type(default)(value)
    return Settings(**values)
