"""Provides `StatsCollector`, the one shared resource sampler per engine and
panel process (each worker of `serve --workers` has its own), and
`WorkspaceStats`, one user's view of it.

Tools that open one Docker stats stream per container and per viewer keep
the daemon busy (moby#21837: 80 idle containers, 50-60 % CPU). Here one
thread samples every running container that at least one viewer watches,
at most once per interval, and every viewer reads the same sample. A sample
comes from the container's cgroup files when the panel sees the host's
cgroups (`cgroups.CgroupReader`, no daemon work at all), else from one
`GET /containers/ID/stats?stream=false&one-shot=true` (about 2 s without
one-shot: docs/PITFALLS.md "Docker"), all containers' requests at once because
Docker 20.10 answers them at the next tick of its 1-second collector
(`API_WORKERS`). Figures are in
benchmarks/README.md. Nobody watching means no sampling at all. The
records viewers get (`ContainerStats`, `StatsRound`) are in
`sshpanel.backend.engine.samples`.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

from sshpanel.backend.engine.cgroups import CgroupReader
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.backend.engine.samples import CollectorCounters, ContainerStats, RawSample, StatsRound, derive, from_api
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import Settings
from sshpanel.errors import ConfigError, PanelError

SOURCES = ("auto", "cgroup", "api")
API_WORKERS = 64
"""Concurrent one-shot stats requests. Docker 20.10 answers a one-shot
request at the next tick of its 1-second stats collector, so requests made
one after the other take up to a second each; made together, they are all
answered at the same tick."""
RELIST = 30.0
"""Seconds between two lists of the running containers while the events
listener reports no change (without a listener: every round)."""
LIMIT_TTL = 30.0
"""Seconds a container's CPU limit read through the API is reused (it only
changes with `update`)."""
SPREAD = 0.5
"""Share of the interval over which a round's viewers are called, one after
the other at even gaps. Called all at once, 100 dashboards repainted in one
burst and a keystroke arriving then waited behind all of them (p99 190 ms
against a 6 ms p50: issue 8, benchmarks/RESULTS.md)."""


Callback = Callable[[StatsRound], None]
"""Called as `callback(round)` from the collector thread after each round."""


@dataclass(frozen=True)
class _Subscription:
    callback: Callback
    owner: str | None
    ids: frozenset[str] | None

    def matches(self, owner: str, docker_id: str) -> bool:
        return (self.owner is None or self.owner == owner) and (self.ids is None or docker_id in self.ids)


@dataclass(frozen=True)
class _Running:
    id: str
    owner: str
    name: str


class StatsCollector:
    """The one stats sampler of an engine, shared by every session.

    Args:
        engine: The Docker engine.
        settings: Label keys; `stats_interval` (seconds between rounds) and
            `stats_source` (`auto`: cgroup files, else the API; `cgroup`; `api`).
        history: Samples kept per container (150 at 2 s = 5 minutes).
        reader: The cgroup reader (a default one reads /sys/fs/cgroup and /proc).
        events: The engine's events listener: the running containers are then
            listed again only after an event (or every `RELIST` seconds),
            not every round.

    Raises:
        ConfigError: Unknown source or an interval under 0.2 s.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        history: int = 150,
        reader: CgroupReader | None = None,
        events: EngineEvents | None = None,
    ) -> None:
        if settings.stats_source not in SOURCES:
            raise ConfigError(f"stats source must be one of {', '.join(SOURCES)}, not {settings.stats_source!r}")
        if settings.stats_interval < 0.2:
            raise ConfigError("the stats interval must be at least 0.2 seconds")
        self.engine = engine
        self.settings = settings
        self.interval = settings.stats_interval
        self.source = settings.stats_source
        self.reader = reader or CgroupReader()
        self._use_cgroups = self.source != "api" and self.reader.available()
        self._history = history
        self._cond = threading.Condition()
        self._subs: dict[int, _Subscription] = {}
        self._quiet: dict[int, str] = {}
        """Viewers whose last round was empty: the error message then ("" for none)."""
        self._next = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._buffers: dict[str, collections.deque[ContainerStats]] = {}
        self._previous: dict[str, RawSample] = {}
        self._limits: dict[str, tuple[float, float | None]] = {}
        self._counts = {"rounds": 0, "docker_calls": 0, "cgroup_samples": 0, "api_samples": 0}
        self._listed: list[_Running] = []
        self._pool: ThreadPoolExecutor | None = None
        self._sampler: Engine | None = None
        self._listed_at = 0.0
        self._stale = True
        self._follows_events = events is not None
        if events is not None:
            events.subscribe(self._on_engine_event)

    # Viewers -------------------------------------------------------------

    def subscribe(
        self, callback: Callback, owner: str | None, ids: Iterable[str] | None = None
    ) -> Callable[[], None]:
        """Adds a viewer; sampling starts with the first one.

        Args:
            callback: Called after every round with the viewer's containers;
                it runs in the collector thread, must be quick, and is dropped
                if it raises.
            owner: Only this user's containers; None for every user's (admin
                views only: callers gate this).
            ids: Only these full container IDs; None for all of `owner`'s.

        Returns:
            The function that removes the viewer again (no I/O: safe to call
            on the event loop).
        """
        subscription = _Subscription(callback, owner, None if ids is None else frozenset(ids))
        with self._cond:
            key = self._next
            self._next += 1
            self._subs[key] = subscription
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="sshpanel-stats", daemon=True)
                self._thread.start()
            self._cond.notify_all()

        def unsubscribe() -> None:
            with self._cond:
                self._subs.pop(key, None)
                self._quiet.pop(key, None)

        return unsubscribe

    @property
    def viewer_count(self) -> int:
        """Number of live subscriptions (a leak shows here)."""
        with self._cond:
            return len(self._subs)

    def history(self, docker_id: str) -> list[ContainerStats]:
        """Returns the kept samples of one container, oldest first (empty when
        nobody watches it)."""
        with self._cond:
            return list(self._buffers.get(docker_id, ()))

    def counters(self) -> CollectorCounters:
        """Returns the work done so far."""
        with self._cond:
            return CollectorCounters(**self._counts)

    def stop(self) -> None:
        """Stops the sampling thread for good and waits briefly for it."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    # Sampling ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._subs:
                    self._buffers.clear()
                    self._previous.clear()
                    self._limits.clear()
                    self._stale = True
                    self._release()
                while not self._subs and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    self._release()
                    return
            started = time.monotonic()
            self._round()
            with self._cond:
                while not self._stopped and (left := started + self.interval - time.monotonic()) > 0:
                    self._cond.wait(left)

    def _round(self) -> None:
        with self._cond:
            subscriptions = list(self._subs.items())
            self._counts["rounds"] += 1
        error: PanelError | None = None
        try:
            running = self._running_now()
        except PanelError as exc:
            error, running = exc, []
        wanted = [c for c in running if any(s.matches(c.owner, c.id) for _, s in subscriptions)]
        samples = self._sample_all([c.id for c in wanted])
        fresh = {c.id: self._derive(c, samples[c.id]) for c in wanted if c.id in samples}
        now = dt.datetime.now(dt.timezone.utc)
        with self._cond:
            for gone in set(self._buffers) - set(fresh):
                del self._buffers[gone]
            for gone in set(self._previous) - set(fresh):
                del self._previous[gone]
            for docker_id, stats in fresh.items():
                self._buffers.setdefault(docker_id, collections.deque(maxlen=self._history)).append(stats)
        self.reader.retain(set(fresh))
        self._deliver(subscriptions, lambda s: StatsRound(now, {
            i: stats for i, stats in fresh.items() if s.matches(stats.owner, i)}, error))

    def _deliver(self, subscriptions: list[tuple[int, _Subscription]],
                 round_for: Callable[[_Subscription], StatsRound]) -> None:
        """Calls each viewer still subscribed with its round, spread evenly
        over `SPREAD` of the interval (returns early when stopped).

        A round without samples is passed on once, not again while the
        viewer's rounds stay empty with the same error (or none): with no
        container running, 100 idle dashboards were otherwise woken every
        round for nothing (issue 8, idle CPU).
        """
        gap = self.interval * SPREAD / max(len(subscriptions), 1)
        first = time.monotonic()
        for index, (key, subscription) in enumerate(subscriptions):
            stats_round = round_for(subscription)
            quiet = None if stats_round.stats else (stats_round.error.message if stats_round.error else "")
            with self._cond:
                if quiet is not None and self._quiet.get(key) == quiet:
                    continue
                while not self._stopped and (left := first + index * gap - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopped:
                    return
                if key not in self._subs:
                    continue
                if quiet is None:
                    self._quiet.pop(key, None)
                else:
                    self._quiet[key] = quiet
            try:
                subscription.callback(stats_round)
            except Exception:  # a broken viewer must not stop the others
                with self._cond:
                    self._subs.pop(key, None)
                    self._quiet.pop(key, None)

    def _release(self) -> None:
        """Ends the request threads and closes the collector's connections
        (called with the lock held, when nobody watches or on stop)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def _count(self, name: str) -> None:
        with self._cond:
            self._counts[name] += 1

    def _on_engine_event(self, owner: str, docker_id: str, action: str) -> None:
        """Events listener callback: a container changed (or the listener lost
        the engine), so list the running containers again next round."""
        self._stale = True

    def _running_now(self) -> list[_Running]:
        """The running containers: listed again when an event said something
        changed, after `RELIST` seconds, or every round without a listener."""
        now = time.monotonic()
        if self._stale or not self._follows_events or now - self._listed_at >= RELIST:
            self._stale = False
            try:
                self._listed = self._running()
            except PanelError:
                self._stale = True
                raise
            self._listed_at = now
        return self._listed

    def _running(self) -> list[_Running]:
        """Lists the panel's running containers (one Docker call)."""
        owner_label = self.settings.label_owner
        name_label = f"{self.settings.label_prefix}name"
        self._count("docker_calls")
        items = self.engine.containers(filters={"label": owner_label, "status": "running"})
        return [
            _Running(item["Id"], item["Labels"].get(owner_label, ""), item["Labels"].get(name_label, ""))
            for item in items
        ]

    def _sample_all(self, docker_ids: list[str]) -> dict[str, RawSample]:
        """Samples containers: cgroup files where readable, the API for the
        rest (all requests at once, see `API_WORKERS`). Containers that
        stopped meanwhile are left out."""
        samples: dict[str, RawSample] = {}
        remote = []
        for docker_id in docker_ids:
            raw = self.reader.sample(docker_id) if self._use_cgroups else None
            if raw is not None:
                self._count("cgroup_samples")
                samples[docker_id] = raw
            elif self.source != "cgroup":
                remote.append(docker_id)
        if remote:
            with self._cond:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(API_WORKERS, thread_name_prefix="sshpanel-stats-api")
                pool = self._pool
            futures = {docker_id: pool.submit(self._api_sample, docker_id) for docker_id in remote}
            for docker_id, future in futures.items():
                try:
                    raw = future.result()
                except PanelError:
                    continue  # it stopped or went away between the list and the sample
                if raw is not None:
                    samples[docker_id] = raw
        return samples

    def _api(self) -> Engine:
        """The collector's own engine connection: a pool as large as the
        number of concurrent requests, apart from the sessions' pool."""
        with self._cond:
            if self._sampler is None:
                self._sampler = self.engine.pool(API_WORKERS)
            return self._sampler

    def _api_sample(self, docker_id: str) -> RawSample | None:
        """One `one_shot` stats request (runs in the request pool)."""
        self._count("docker_calls")
        data = self._api().stats(docker_id)
        self._count("api_samples")
        if not (data.get("cpu_stats") or {}).get("system_cpu_usage"):
            return None  # not running
        return from_api(data, self._cpu_limit(docker_id))

    def _cpu_limit(self, docker_id: str) -> float | None:
        """The container's CPU limit in CPUs, from a cached inspect."""
        with self._cond:
            cached = self._limits.get(docker_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        self._count("docker_calls")
        host = self._api().inspect_container(docker_id).get("HostConfig") or {}
        limit: float | None = None
        if host.get("NanoCpus"):
            limit = host["NanoCpus"] / 1e9
        elif host.get("CpuQuota", 0) > 0 and host.get("CpuPeriod"):
            limit = host["CpuQuota"] / host["CpuPeriod"]
        with self._cond:
            self._limits[docker_id] = (time.monotonic() + LIMIT_TTL, limit)
        return limit

    def _derive(self, container: _Running, raw: RawSample) -> ContainerStats:
        with self._cond:
            previous = self._previous.get(container.id)
            self._previous[container.id] = raw
        return derive(container.id, container.name, container.owner, previous, raw)


class WorkspaceStats:
    """One user's view of the shared collector: only their own containers.

    Args:
        workspace: The user's Workspace (resolves names among their containers).
        collector: The engine's shared collector.
    """

    def __init__(self, workspace: Workspace, collector: StatsCollector) -> None:
        self.workspace = workspace
        self.collector = collector

    def watch(self, callback: Callback, refs: Iterable[str] | None = None) -> Callable[[], None]:
        """Calls `callback(round)` after every sampling round, from the
        collector thread, with the user's running containers.

        Args:
            callback: Receives a `StatsRound`; keep it quick (post a message).
            refs: Names or ID prefixes to watch; None watches every running
                container of the user, including ones started later.

        Returns:
            The function that stops the calls (no I/O).

        Raises:
            NotFound: A ref names none of the user's containers (this
                resolves names in the database: call it in a thread when refs
                are given).
        """
        ids = None if refs is None else self._resolve(refs)
        return self.collector.subscribe(callback, self.workspace.principal.name, ids)

    def snapshot(self, refs: Iterable[str] | None = None, timeout: float | None = None) -> StatsRound:
        """Returns one round with rates (`docker stats --no-stream`).

        Waits for the next round, or for two when a container has no previous
        sample yet; with other viewers already watching this costs no extra
        sampling. Blocks: call it in a thread.

        Args:
            refs: Names or ID prefixes; None for every running container.
            timeout: Seconds to wait at most (default: two intervals + 5 s);
                then the last round is returned as it is.

        Raises:
            NotFound: A ref names none of the user's containers.
            EngineUnavailable, EngineError: The engine could not be asked.
        """
        ids = None if refs is None else self._resolve(refs)
        done = threading.Event()
        last: list[StatsRound] = []

        def on_round(stats_round: StatsRound) -> None:
            last[:] = [stats_round]
            if stats_round.error is not None or all(s.has_rates for s in stats_round.stats.values()):
                done.set()

        unsubscribe = self.collector.subscribe(on_round, self.workspace.principal.name, ids)
        try:
            done.wait(timeout if timeout is not None else 2 * self.collector.interval + 5)
        finally:
            unsubscribe()
        if not last:
            return StatsRound(dt.datetime.now(dt.timezone.utc), {})
        if last[0].error is not None:
            raise last[0].error
        return last[0]

    def history(self, ref: str) -> list[ContainerStats]:
        """Returns the kept samples of one of the user's containers, oldest
        first (for graphs; empty while nobody watches it).

        Raises:
            NotFound: No such container among the user's.
        """
        return self.collector.history(self.workspace.resolve(ref).docker_id)

    def _resolve(self, refs: Iterable[str]) -> frozenset[str]:
        return frozenset(self.workspace.resolve(ref).docker_id for ref in refs)
