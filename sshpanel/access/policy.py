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

from sshpanel.access.names import docker_container_name, docker_volume_name, network_name
from sshpanel.access.spec import ContainerSpec

DROPPED_CAPABILITIES = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP", "SETPCAP")
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}


def owner_labels(label_prefix: str, owner: str, name: str) -> dict[str, str]:
    """Returns the labels the server sets on every container it creates.

    They override any label of the same key inherited from the image
    (docs/PITFALLS.md "Docker": image labels can fake ownership otherwise).
    """
    return {f"{label_prefix}owner": owner, f"{label_prefix}name": name}


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
        `volume`, each the owner's named volume (never a bind).
    """
    restart: dict[str, Any] = {"Name": "" if spec.restart == "no" else spec.restart}
    if spec.restart == "on-failure":
        restart["MaximumRetryCount"] = spec.restart_retries
    arguments: dict[str, Any] = {
        "image": image_id,
        "command": list(spec.command) or None,
        "name": docker_container_name(namespace, owner, spec.name),
        "hostname": spec.name[:63],
        "environment": dict(spec.env),
        "labels": owner_labels(f"io.{namespace}.", owner, spec.name),
        "mem_limit": spec.memory,
        "memswap_limit": spec.memory,
        "nano_cpus": int(spec.cpus * 1e9),
        "pids_limit": pids_limit,
        "restart_policy": restart,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": list(DROPPED_CAPABILITIES),
        "network": network_name(namespace, owner),
        "log_config": LOG_CONFIG,
        "detach": True,
    }
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
