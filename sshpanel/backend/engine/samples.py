"""Provides the plain records of live stats (`ContainerStats`, `StatsRound`,
`CollectorCounters`, `RawSample`) and the arithmetic that turns two raw
samples of cumulative counters into usage and rates, the way `docker stats`
computes them."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Mapping

from sshpanel.errors import PanelError


@dataclass(frozen=True)
class RawSample:
    """Cumulative counters of one container at one instant.

    Attributes:
        mono: When the sample was taken, seconds, on a clock that only moves
            forward for samples of one source (for rates): `time.monotonic()`
            for cgroup samples, the daemon's read time for API samples.
        wall: When the sample was taken, seconds since the epoch.
        cpu_ns: CPU time the container used since it started, nanoseconds.
        clock_ns: A clock in nanoseconds per CPU against which `cpu_ns` is
            compared: `cpu_ns` delta / `clock_ns` delta = CPUs used. The
            monotonic clock for cgroup samples; Docker's `system_cpu_usage`
            divided by `online_cpus` for API samples (Docker's own formula).
        online_cpus: CPUs of the host.
        memory: Memory used, bytes, without the inactive file cache (what
            `docker stats` shows).
        memory_limit: Memory limit, bytes (the host's memory when unlimited).
        cpu_limit: CPU limit in CPUs (0.5 = half a core), None when unlimited.
        net_rx: Bytes received on every interface but `lo`.
        net_tx: Bytes sent on every interface but `lo`.
        block_read: Bytes read from block devices.
        block_write: Bytes written to block devices.
        pids: Number of processes and threads.
        source: `cgroup` or `api`.
    """

    mono: float
    wall: float
    cpu_ns: int
    clock_ns: int
    online_cpus: int
    memory: int
    memory_limit: int
    cpu_limit: float | None
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int
    pids: int
    source: str


@dataclass(frozen=True)
class ContainerStats:
    """Resource use of one running container at one sample.

    Rates are averages since the previous sample of the same container; they
    are 0 and `has_rates` is False on a container's first sample.

    Attributes:
        id: Full Docker container ID.
        name: The owner's short name of the container.
        owner: Owning user's name.
        time: When the sample was taken, UTC.
        cpu: CPUs in use (0.5 = half a core).
        cpu_limit: CPU limit in CPUs, None when unlimited.
        online_cpus: CPUs of the host.
        memory: Memory in use, bytes (without inactive file cache, as
            `docker stats`).
        memory_limit: Memory limit, bytes.
        net_rx: Bytes received since the container started.
        net_tx: Bytes sent since the container started.
        net_rx_rate: Bytes received per second.
        net_tx_rate: Bytes sent per second.
        block_read: Bytes read from block devices since the start.
        block_write: Bytes written to block devices since the start.
        block_read_rate: Bytes read per second.
        block_write_rate: Bytes written per second.
        pids: Processes and threads.
        source: `cgroup` or `api`.
        has_rates: False on the first sample (no previous one to compare).
    """

    id: str
    name: str
    owner: str
    time: dt.datetime
    cpu: float
    cpu_limit: float | None
    online_cpus: int
    memory: int
    memory_limit: int
    net_rx: int
    net_tx: int
    net_rx_rate: float
    net_tx_rate: float
    block_read: int
    block_write: int
    block_read_rate: float
    block_write_rate: float
    pids: int
    source: str
    has_rates: bool

    @property
    def short_id(self) -> str:
        """The 12-digit ID docker prints."""
        return self.id[:12]

    @property
    def cpu_percent(self) -> float:
        """CPU as `docker stats` shows it: 100 % = one full CPU."""
        return self.cpu * 100.0

    @property
    def cpu_host_percent(self) -> float:
        """CPU as a share of the whole host: 100 % = every CPU busy."""
        return self.cpu * 100.0 / max(1, self.online_cpus)

    @property
    def cpu_limit_percent(self) -> float | None:
        """CPU as a share of the container's limit; None when unlimited."""
        return None if not self.cpu_limit else self.cpu * 100.0 / self.cpu_limit

    @property
    def memory_percent(self) -> float:
        """Memory in use as a share of the limit, percent."""
        return self.memory * 100.0 / self.memory_limit if self.memory_limit else 0.0


@dataclass(frozen=True)
class StatsRound:
    """What a subscriber gets after each sampling round.

    Attributes:
        time: When the round ran, UTC.
        stats: The subscriber's running containers by full ID (containers
            that are not running do not appear).
        error: Set when the engine could not be asked this round.
    """

    time: dt.datetime
    stats: Mapping[str, ContainerStats]
    error: PanelError | None = None

    def by_name(self) -> list[ContainerStats]:
        """The samples sorted by container name."""
        return sorted(self.stats.values(), key=lambda s: s.name)


@dataclass(frozen=True)
class CollectorCounters:
    """Work done by a collector since it was made (what a benchmark or a test
    compares between one viewer and many).

    Attributes:
        rounds: Sampling rounds run.
        docker_calls: Docker API requests made (lists, stats, inspects).
        cgroup_samples: Container samples read from cgroup files.
        api_samples: Container samples read through the Docker API.
    """

    rounds: int
    docker_calls: int
    cgroup_samples: int
    api_samples: int


def derive(docker_id: str, name: str, owner: str, previous: RawSample | None, raw: RawSample) -> ContainerStats:
    """Turns a container's previous and current raw samples into usage and rates.

    Args:
        docker_id: Full container ID.
        name: The owner's short name.
        owner: Owning user's name.
        previous: The container's previous sample, None for the first one.
        raw: The current sample.

    Returns:
        The stats; rates are 0 and `has_rates` False when there is no usable
        previous sample (none yet, another source, or counters that went
        back because the container restarted).
    """
    valid = (
        previous is not None
        and previous.source == raw.source
        and raw.clock_ns > previous.clock_ns
        and raw.mono > previous.mono
        and raw.cpu_ns >= previous.cpu_ns
        and raw.net_rx >= previous.net_rx
        and raw.net_tx >= previous.net_tx
        and raw.block_read >= previous.block_read
        and raw.block_write >= previous.block_write
    )
    rates = (0.0, 0.0, 0.0, 0.0, 0.0)
    if valid:
        assert previous is not None
        seconds = raw.mono - previous.mono
        rates = (
            (raw.cpu_ns - previous.cpu_ns) / (raw.clock_ns - previous.clock_ns),
            (raw.net_rx - previous.net_rx) / seconds,
            (raw.net_tx - previous.net_tx) / seconds,
            (raw.block_read - previous.block_read) / seconds,
            (raw.block_write - previous.block_write) / seconds,
        )
    return ContainerStats(
        id=docker_id,
        name=name,
        owner=owner,
        time=dt.datetime.fromtimestamp(raw.wall, dt.timezone.utc),
        cpu=rates[0],
        cpu_limit=raw.cpu_limit,
        online_cpus=raw.online_cpus,
        memory=raw.memory,
        memory_limit=raw.memory_limit,
        net_rx=raw.net_rx,
        net_tx=raw.net_tx,
        net_rx_rate=rates[1],
        net_tx_rate=rates[2],
        block_read=raw.block_read,
        block_write=raw.block_write,
        block_read_rate=rates[3],
        block_write_rate=rates[4],
        pids=raw.pids,
        source=raw.source,
        has_rates=valid,
    )


def from_api(data: dict, cpu_limit: float | None) -> RawSample:
    """Reads Docker's `/containers/ID/stats` answer the way the docker CLI does.

    Args:
        data: The decoded answer of a running container (`one_shot`).
        cpu_limit: The container's CPU limit in CPUs (None when unlimited).

    Returns:
        The raw sample; its CPU clock is `system_cpu_usage / online_cpus`,
        so that CPUs used = CPU delta / clock delta (Docker's own formula),
        and its times (`mono` and `wall`) are the daemon's `read` time, when
        the daemon's collector took it.
    """
    wall = _read_time(str(data.get("read") or ""))
    cpu = data.get("cpu_stats") or {}
    online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or ()) or 1
    memory = data.get("memory_stats") or {}
    usage = int(memory.get("usage", 0))
    extra = memory.get("stats") or {}
    inactive = int(extra.get("total_inactive_file", extra.get("inactive_file", 0)))
    networks = (data.get("networks") or {}).values()
    blkio = (data.get("blkio_stats") or {}).get("io_service_bytes_recursive") or ()
    return RawSample(
        mono=wall,
        wall=wall,
        cpu_ns=int(cpu.get("cpu_usage", {}).get("total_usage", 0)),
        clock_ns=int(cpu.get("system_cpu_usage", 0)) // online,
        online_cpus=online,
        memory=usage - inactive if inactive < usage else usage,
        memory_limit=int(memory.get("limit", 0)),
        cpu_limit=cpu_limit,
        net_rx=sum(int(n.get("rx_bytes", 0)) for n in networks),
        net_tx=sum(int(n.get("tx_bytes", 0)) for n in networks),
        block_read=sum(int(e.get("value", 0)) for e in blkio if str(e.get("op", "")).lower() == "read"),
        block_write=sum(int(e.get("value", 0)) for e in blkio if str(e.get("op", "")).lower() == "write"),
        pids=int((data.get("pids_stats") or {}).get("current", 0)),
        source="api",
    )


def _read_time(text: str) -> float:
    """Parses Docker's RFC 3339 `read` time (nanoseconds) as seconds since the
    epoch; the current time when it is missing or malformed."""
    head, _, fraction = text.rstrip("Z").partition(".")
    try:
        moment = dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return time.time()
    return moment.timestamp() + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)
