"""Provides the translation of a `ContainerSpec` into Docker create arguments.

This is an allow-list: the returned mapping is built here field by field and
nothing from the user passes through unchecked
(docs/ARCHITECTURE.md invariant 2). The hardening follows the CIS Docker
Benchmark v1.6 section 5:
- 5.25 `no-new-privileges` always on;
- 5.3 a reduced capability set: `NET_RAW` (ARP/ICMP spoofing on the shared
  bridge), `MKNOD`, `AUDIT_WRITE`, `SETFCAP` and `SETPCAP` are dropped from
  Docker's default set; nothing is ever added;
- 5.10/5.11 memory and CPU limits always set; swap is not granted on top of
  memory (`memswap_limit` = memory);
- 5.28 a pids limit always set;
- log files bounded so one container cannot fill the host's disk.
"""

from __future__ import annotations

from typing import Any

from sshpanel.access.names import docker_container_name, docker_volume_name, network_name, project_network_name
from sshpanel.access.spec import ContainerSpec, Healthcheck, ServiceOptions

DROPPED_CAPABILITIES = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SETPCAP")
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
COMPOSE_LABEL = "com.docker.compose."
"""Compose's own label prefix: set by the server on a project's containers,
refused in users' labels (`sshpanel.access.compose_service`)."""


def owner_labels(label_prefix: str, owner: str, name: str) -> dict[str, str]:
    """Returns the labels the server sets on every container it creates.

    They override any label of the same key inherited from the image
    (docs/PITFALLS.md "Docker": image labels can fake ownership otherwise).
    """
    return {f"{label_prefix}owner": owner, f"{label_prefix}name": name}


def container_network(spec: ContainerSpec, owner: str, namespace: str) -> str:
    """Returns the one network a container of `spec` is on: its Compose
    project's (`project_network_name`), else the owner's bridge network."""
    if spec.options.project:
        return project_network_name(namespace, owner, spec.options.project)
    return network_name(namespace, owner)


def compose_labels(options: ServiceOptions) -> dict[str, str]:
    """Returns Compose's labels of a project's container (the keys `docker
    compose` reads: project, service, config hash, container number), or {}
    for a lone container."""
    if not options.project:
        return {}
    return {
        f"{COMPOSE_LABEL}project": options.project,
        f"{COMPOSE_LABEL}service": options.service,
        f"{COMPOSE_LABEL}config-hash": options.config_hash,
        f"{COMPOSE_LABEL}container-number": "1",
        f"{COMPOSE_LABEL}oneoff": "False",
    }


def health_config(check: Healthcheck) -> dict[str, Any]:
    """Returns the SDK's `healthcheck` argument (durations in nanoseconds,
    as the Engine API's `HealthConfig`)."""
    config: dict[str, Any] = {"test": list(check.test)}
    for key in ("interval", "timeout", "start_period"):
        if getattr(check, key):
            config[key] = int(getattr(check, key) * 1e9)
    if check.retries:
        config["retries"] = check.retries
    return config


def create_arguments(
    spec: ContainerSpec,
    owner: str,
    namespace: str,
    image_id: str,
    pids_limit: int,
    publish_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """Returns keyword arguments for `docker.client.containers.create`.

    Args:
        spec: The validated request.
        owner: The owning user's name.
        namespace: The panel's namespace (`Settings.namespace`).
        image_id: Full image ID the reference resolved to on the engine.
        pids_limit: Process limit.
        publish_address: Host address every published port binds to
            (`Settings.publish_address`); the user never chooses it.

    Returns:
        A dict for the Docker SDK; it never contains privileged, devices,
        cap_add, binds, volumes_from, host namespace modes, sysctls,
        cgroup_parent or runtime, and `ports` only when the spec publishes
        some (their range was checked by the caller); `mounts` only of type
        `volume`, each the owner's named volume (never a bind). The
        owner labels are set last, over the user's and Compose's labels.
        A project's container joins the project's network
        (`project_network_name`) instead of the user's.
    """
    options = spec.options
    restart: dict[str, Any] = {"Name": "" if spec.restart == "no" else spec.restart}
    if spec.restart == "on-failure":
        restart["MaximumRetryCount"] = spec.restart_retries
    arguments: dict[str, Any] = {
        "image": image_id,
        "command": list(spec.command) or None,
        "name": docker_container_name(namespace, owner, spec.name),
        "hostname": options.hostname or spec.name[:63],
        "environment": dict(spec.env),
        "labels": {**dict(options.labels), **compose_labels(options),
                   **owner_labels(f"io.{namespace}.", owner, spec.name)},
        "mem_limit": spec.memory,
        "memswap_limit": spec.memory,
        "nano_cpus": int(spec.cpus * 1e9),
        "pids_limit": min(pids_limit, options.pids) if options.pids else pids_limit,
        "restart_policy": restart,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": list(DROPPED_CAPABILITIES),
        "network": container_network(spec, owner, namespace),
        "log_config": LOG_CONFIG,
        "detach": True,
    }
    arguments.update(_service_arguments(options))
    if spec.ports:
        ports: dict[str, list[tuple[str, int]]] = {}
        for mapping in spec.ports:
            ports.setdefault(f"{mapping.container}/{mapping.protocol}", []).append((publish_address, mapping.host))
        arguments["ports"] = ports
    if spec.volumes:
        arguments["mounts"] = [
            {"Type": "volume", "Source": docker_volume_name(namespace, owner, mount.name),
             "Target": mount.target, "ReadOnly": mount.read_only}
            for mount in spec.volumes
        ]
    return arguments


def _service_arguments(options: ServiceOptions) -> dict[str, Any]:
    """The create arguments of Compose's further settings, only those set
    (a container made by `run` gets none of them)."""
    arguments: dict[str, Any] = {}
    if options.entrypoint:
        arguments["entrypoint"] = list(options.entrypoint)
    for key in ("working_dir", "user", "stop_signal"):
        if getattr(options, key):
            arguments[key] = getattr(options, key)
    for key in ("init", "tty", "stdin_open"):
        if getattr(options, key):
            arguments[key] = True
    if options.stop_timeout is not None:
        arguments["stop_timeout"] = options.stop_timeout
    if options.healthcheck is not None:
        arguments["healthcheck"] = health_config(options.healthcheck)
    return arguments
