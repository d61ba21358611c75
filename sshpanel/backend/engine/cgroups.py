"""Provides `CgroupReader`, which reads a container's resource counters
straight from its cgroup files and its network namespace's `/proc/PID/net/dev`.

This is what the Docker daemon itself reads to answer `/containers/ID/stats`,
minus the HTTP round trip and the work in `dockerd`, `containerd` and the
shim; when the panel runs on the host (it sees the host's cgroup tree and
PIDs) this is the cheapest correct source (figures in benchmarks/README.md).
Both cgroup v1 (`cgroupfs` and `systemd` drivers) and the unified v2
hierarchy are understood. Inside a container (own cgroup and PID
namespaces) the files are not there: `sample` returns None and the caller
falls back to the Docker API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sshpanel.backend.engine.samples import RawSample

V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "pids", "blkio")
V1_FILES = {
    "cpu": "cpuacct/cpuacct.usage",
    "quota": "cpu/cpu.cfs_quota_us",
    "period": "cpu/cpu.cfs_period_us",
    "usage": "memory/memory.usage_in_bytes",
    "stat": "memory/memory.stat",
    "limit": "memory/memory.limit_in_bytes",
    "pids": "pids/pids.current",
    "io": "blkio/blkio.throttle.io_service_bytes_recursive",
    "procs": "memory/cgroup.procs",
}
"""Counter files of cgroup v1, as `controller/file`."""
V2_FILES = {
    "cpu": "cpu.stat",
    "cpumax": "cpu.max",
    "usage": "memory.current",
    "stat": "memory.stat",
    "limit": "memory.max",
    "pids": "pids.current",
    "io": "io.stat",
    "procs": "cgroup.procs",
}
"""Counter files of the unified (v2) hierarchy."""


class CgroupReader:
    """Reads container counters from the cgroup filesystem.

    Args:
        cgroup_root: Mount point of the cgroup filesystem.
        proc_root: Mount point of the host's procfs.

    The file paths of each container are found once and cached (`retain`
    drops the ones of containers no longer sampled). Meant for one thread
    (the stats collector's).
    """

    def __init__(self, cgroup_root: Path = Path("/sys/fs/cgroup"), proc_root: Path = Path("/proc")) -> None:
        self.cgroup_root = cgroup_root
        self.proc_root = proc_root
        self.unified = (cgroup_root / "cgroup.controllers").exists() and not (cgroup_root / "cpuacct").is_dir()
        self.host_memory = _host_memory(proc_root)
        self.online_cpus = os.cpu_count() or 1
        self._paths: dict[str, dict[str, str]] = {}

    def available(self) -> bool:
        """True when a cgroup hierarchy Docker uses is visible here."""
        if self.unified:
            return (self.cgroup_root / "docker").is_dir() or (self.cgroup_root / "system.slice").is_dir()
        return all((self.cgroup_root / name).is_dir() for name in V1_CONTROLLERS)

    def sample(self, docker_id: str) -> RawSample | None:
        """Reads one container's counters.

        Args:
            docker_id: Full container ID (64 hex digits).

        Returns:
            The counters, or None when the container's cgroup or its network
            namespace cannot be read here (not running, or the panel does not
            see the host's cgroups and PIDs).
        """
        files = self._paths.get(docker_id) or self._locate(docker_id)
        if files is None:
            return None
        try:
            sample = self._sample_v2(files) if self.unified else self._sample_v1(files)
        except (OSError, ValueError, IndexError):
            self._paths.pop(docker_id, None)
            return None
        self._paths[docker_id] = files
        return sample

    def retain(self, docker_ids: set[str]) -> None:
        """Forgets the cached paths of every container not in `docker_ids`."""
        for docker_id in set(self._paths) - docker_ids:
            del self._paths[docker_id]

    def _locate(self, docker_id: str) -> dict[str, str] | None:
        """Finds the container's cgroup (`cgroupfs` or `systemd` driver layout)."""
        for relative in (f"docker/{docker_id}", f"system.slice/docker-{docker_id}.scope"):
            if self.unified:
                base = self.cgroup_root / relative
                if base.is_dir():
                    return {key: str(base / name) for key, name in V2_FILES.items()}
            elif (self.cgroup_root / "memory" / relative).is_dir():
                root = self.cgroup_root
                return {
                    key: str(root / path.split("/")[0] / relative / path.split("/")[1]) for key, path in V1_FILES.items()
                }
        return None

    def _sample_v1(self, files: dict[str, str]) -> RawSample:
        now_ns, wall = time.monotonic_ns(), time.time()
        cpu_ns = int(_read(files["cpu"]))
        quota, period = int(_read(files["quota"])), int(_read(files["period"]))
        usage = int(_read(files["usage"]))
        inactive = _stat_value(_read(files["stat"]), b"total_inactive_file")
        limit = int(_read(files["limit"]))
        read, written = _blkio_v1(_read(files["io"]))
        rx, tx = self._net(files["procs"])
        return RawSample(
            mono=now_ns / 1e9,
            wall=wall,
            cpu_ns=cpu_ns,
            clock_ns=now_ns,
            online_cpus=self.online_cpus,
            memory=usage - inactive if inactive < usage else usage,
            memory_limit=min(limit, self.host_memory) if self.host_memory else limit,
            cpu_limit=quota / period if quota > 0 and period > 0 else None,
            net_rx=rx,
            net_tx=tx,
            block_read=read,
            block_write=written,
            pids=int(_read(files["pids"])),
            source="cgroup",
        )

    def _sample_v2(self, files: dict[str, str]) -> RawSample:
        now_ns, wall = time.monotonic_ns(), time.time()
        cpu_ns = _stat_value(_read(files["cpu"]), b"usage_usec") * 1000
        quota, period = _read(files["cpumax"]).split()
        usage = int(_read(files["usage"]))
        inactive = _stat_value(_read(files["stat"]), b"inactive_file")
        limit_text = _read(files["limit"]).strip()
        limit = self.host_memory if limit_text == b"max" else int(limit_text)
        read, written = _io_v2(_read(files["io"]))
        rx, tx = self._net(files["procs"])
        return RawSample(
            mono=now_ns / 1e9,
            wall=wall,
            cpu_ns=cpu_ns,
            clock_ns=now_ns,
            online_cpus=self.online_cpus,
            memory=usage - inactive if inactive < usage else usage,
            memory_limit=min(limit, self.host_memory) if self.host_memory else limit,
            cpu_limit=None if quota == b"max" else int(quota) / int(period),
            net_rx=rx,
            net_tx=tx,
            block_read=read,
            block_write=written,
            pids=int(_read(files["pids"])),
            source="cgroup",
        )

    def _net(self, procs: str) -> tuple[int, int]:
        """Reads rx/tx bytes of the network namespace of a process of the cgroup.

        Raises:
            IndexError: The cgroup has no process (the container just stopped).
            OSError: The process is not visible here (another PID namespace).
        """
        pid = int(_read(procs).split()[0])
        rx = tx = 0
        for line in _read(f"{self.proc_root}/{pid}/net/dev").splitlines()[2:]:
            name, _, counters = line.partition(b":")
            if name.strip() == b"lo":
                continue
            fields = counters.split()
            rx += int(fields[0])
            tx += int(fields[8])
        return rx, tx


def _read(path: str) -> bytes:
    """Reads a small kernel file in one system call."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _stat_value(text: bytes, key: bytes) -> int:
    """Returns the value of `key` in `key value` lines (memory.stat, cpu.stat), 0 if absent."""
    for line in text.splitlines():
        name, _, value = line.partition(b" ")
        if name == key:
            return int(value)
    return 0


def _blkio_v1(text: bytes) -> tuple[int, int]:
    """Sums `MAJ:MIN Read N` / `MAJ:MIN Write N` lines; returns (read, written) bytes."""
    read = written = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] == b"Read":
            read += int(fields[2])
        elif len(fields) == 3 and fields[1] == b"Write":
            written += int(fields[2])
    return read, written


def _io_v2(text: bytes) -> tuple[int, int]:
    """Sums `rbytes=`/`wbytes=` over the devices of io.stat; returns (read, written)."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition(b"=")
            if key == b"rbytes":
                read += int(value)
            elif key == b"wbytes":
                written += int(value)
    return read, written


def _host_memory(proc_root: Path) -> int:
    """Returns the host's memory in bytes from /proc/meminfo (0 if unreadable)."""
    try:
        for line in _read(str(proc_root / "meminfo")).splitlines():
            if line.startswith(b"MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
