"""Provides the host overview an admin sees: CPU, memory, swap, the disk of
the Docker data root, load and uptime (psutil), and the engine's figures,
among them whether it remaps user namespaces (`remaps_user_namespaces`)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import psutil

from sshpanel.backend.engine import Engine

CPU_SAMPLE_SECONDS = 0.25
"""How long CPU usage is measured over for one overview."""


@dataclass(frozen=True)
class HostView:
    """The host and its Docker engine, now.

    Attributes:
        cpu_percent: Total CPU use over the sample, 0-100.
        cpu_per_core: CPU use of each logical core, 0-100 each.
        memory_total: Physical memory, bytes.
        memory_used: Memory in use (total minus available), bytes.
        swap_total: Swap size, bytes.
        swap_used: Swap in use, bytes.
        disk_path: The Docker data root (`docker info` `DockerRootDir`), or
            the nearest folder of it this process can see.
        disk_total: Size of the file system holding it, bytes.
        disk_used: Used on it, bytes.
        load: Load average over 1, 5 and 15 minutes.
        uptime: Seconds since the host booted.
        engine_version: Docker engine version (`20.10.24`).
        api_version: Docker API version the engine speaks.
        containers_running: Containers running on the engine (all of them,
            not only the panel's).
        containers_paused: Containers paused.
        containers_stopped: Containers stopped.
        containers_total: All containers.
        images: Images on the engine.
        unprivileged: Root in the engine's containers is an unprivileged
            uid on the host: it remaps user namespaces or runs rootless
            (`remaps_user_namespaces`).
    """

    cpu_percent: float
    cpu_per_core: tuple[float, ...]
    memory_total: int
    memory_used: int
    swap_total: int
    swap_used: int
    disk_path: str
    disk_total: int
    disk_used: int
    load: tuple[float, float, float]
    uptime: float
    engine_version: str
    api_version: str
    containers_running: int
    containers_paused: int
    containers_stopped: int
    containers_total: int
    images: int
    unprivileged: bool


def remaps_user_namespaces(info: Mapping[str, Any]) -> bool:
    """Tells whether root in an engine's containers is an unprivileged uid
    on the host: the engine remaps user namespaces (dockerd
    `--userns-remap`, `"userns-remap"` in daemon.json), or the engine itself
    runs rootless (root inside is then the unprivileged user that runs
    dockerd).

    Args:
        info: The engine's `docker info` (`/info`) answer. Its
            `SecurityOptions` list holds `name=userns` when the engine's root
            uid or gid is not 0 and `name=rootless` in rootless mode (moby
            `daemon/info.go`, `fillSecurityOptions`), beside entries such as
            `name=seccomp,profile=default`.

    Returns:
        True on such an engine.
    """
    names = {str(option).split(",")[0] for option in info.get("SecurityOptions") or []}
    return bool(names & {"name=userns", "name=rootless"})


def engine_unprivileged(engine: Engine) -> bool:
    """Asks the engine whether it remaps user namespaces
    (`remaps_user_namespaces` of its `info()`).

    Raises:
        EngineUnavailable: The engine does not answer.
    """
    return remaps_user_namespaces(engine.info())


def host_overview(engine: Engine, sample: float = CPU_SAMPLE_SECONDS) -> HostView:
    """Measures the host and asks the engine for its figures.

    Blocks for `sample` seconds (CPU measurement) plus two engine calls: run
    it in a thread. The TUI refreshes by calling it again.

    Args:
        engine: The Docker engine.
        sample: Seconds over which CPU use is measured.

    Raises:
        EngineUnavailable: The engine does not answer.
    """
    info = engine.info()
    version = engine.version()
    per_core = tuple(float(v) for v in psutil.cpu_percent(interval=sample, percpu=True))
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    disk_path = _visible(str(info.get("DockerRootDir") or "/var/lib/docker"))
    disk = psutil.disk_usage(disk_path)
    return HostView(
        cpu_percent=round(sum(per_core) / max(1, len(per_core)), 1),
        cpu_per_core=per_core,
        memory_total=int(memory.total),
        memory_used=int(memory.total - memory.available),
        swap_total=int(swap.total),
        swap_used=int(swap.used),
        disk_path=disk_path,
        disk_total=int(disk.total),
        disk_used=int(disk.used),
        load=tuple(round(v, 2) for v in os.getloadavg()),
        uptime=max(0.0, time.time() - psutil.boot_time()),
        engine_version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        containers_running=int(info.get("ContainersRunning", 0)),
        containers_paused=int(info.get("ContainersPaused", 0)),
        containers_stopped=int(info.get("ContainersStopped", 0)),
        containers_total=int(info.get("Containers", 0)),
        images=int(info.get("Images", 0)),
        unprivileged=remaps_user_namespaces(info),
    )


def _visible(path: str) -> str:
    """Returns `path` or its nearest existing parent: when the panel runs in a
    container, the engine's data root is usually not mounted in it."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path or "/"
