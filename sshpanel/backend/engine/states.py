"""Provides `ContainerStates`, the one copy per engine and process of the
state of every container the panel made, kept up to date from the engine's
events stream, which every session reads (docs/ARCHITECTURE.md "The engine
seam"): N dashboards cost one inspect per event, not N listings per event
or per timer.

The copy holds what `docker inspect` says of each container; the `STATUS`
words are made when read (`Up 5 minutes`, `Exited (0) 2 hours ago`), with
docker's wording (moby `container.State.String`), so they never go stale
between two events.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from sshpanel.access.units import human_duration
from sshpanel.backend.engine.client import Engine, Json
from sshpanel.errors import NotFound

@dataclass(frozen=True)
class ContainerState:
    """One container as the engine last reported it.

    Attributes:
        id: Full Docker ID.
        owner: The owner label's value (a user name).
        state: `created`, `running`, `paused`, `restarting`, `removing`,
            `exited` or `dead` (docker's `State.Status`).
        created: When it was created (aware, UTC).
        started: When it last started (None: never).
        finished: When it last stopped (None: never).
        exit_code: Its last exit code.
        health: `healthy`, `unhealthy`, `starting` or "" (no health check).
        ports: Published ports as `/containers/json` lists them
            (`IP`, `PrivatePort`, `PublicPort`, `Type`).
        listed_status: Docker's own `STATUS` words when the state came from
            a listing (fixed at that moment), else "".
    """

    id: str
    owner: str
    state: str
    created: dt.datetime
    started: dt.datetime | None
    finished: dt.datetime | None
    exit_code: int
    health: str
    ports: tuple[dict, ...]
    listed_status: str = ""

    @property
    def running(self) -> bool:
        """True while it runs (also paused or restarting, as docker counts)."""
        return self.state in ("running", "paused", "restarting")

    def status(self, now: dt.datetime | None = None) -> str:
        """The `STATUS` column of `docker ps` (moby `State.String`):
        `Up 5 minutes`, `Up 2 hours (healthy)`, `Up 3 seconds (Paused)`,
        `Restarting (1) 4 seconds ago`, `Exited (0) 2 hours ago`, `Created`,
        `Removal In Progress`, `Dead`.

        Args:
            now: The time to measure from (default: now, UTC).
        """
        if self.listed_status:
            return self.listed_status
        now = now or dt.datetime.now(dt.timezone.utc)
        if self.state in ("running", "paused", "restarting"):
            if self.state == "paused":
                return f"Up {_since(self.started, now)} (Paused)"
            if self.state == "restarting":
                return f"Restarting ({self.exit_code}) {_since(self.finished, now)} ago"
            health = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}
            return f"Up {_since(self.started, now)}{health.get(self.health, '')}"
        if self.state == "removing":
            return "Removal In Progress"
        if self.state == "dead":
            return "Dead"
        if self.started is None:
            return "Created"
        if self.finished is None:
            return ""
        return f"Exited ({self.exit_code}) {_since(self.finished, now)} ago"


def state_from_inspect(data: Json, owner_label: str) -> ContainerState:
    """Builds a `ContainerState` from `docker inspect` data.

    Raises:
        KeyError: The data has no `Id`.
    """
    state = data.get("State") or {}
    ports = []
    for private, bindings in sorted(((data.get("NetworkSettings") or {}).get("Ports") or {}).items()):
        number, _, kind = private.partition("/")
        for binding in bindings or [None]:
            entry: dict = {"PrivatePort": int(number), "Type": kind or "tcp"}
            if binding and binding.get("HostPort"):
                entry.update(IP=binding.get("HostIp") or "0.0.0.0", PublicPort=int(binding["HostPort"]))
            ports.append(entry)
    return ContainerState(
        id=data["Id"],
        owner=((data.get("Config") or {}).get("Labels") or {}).get(owner_label, ""),
        state=str(state.get("Status") or ""),
        created=_time(data.get("Created")) or dt.datetime.fromtimestamp(0, dt.timezone.utc),
        started=_time(state.get("StartedAt")),
        finished=_time(state.get("FinishedAt")),
        exit_code=int(state.get("ExitCode") or 0),
        health=str((state.get("Health") or {}).get("Status") or ""),
        ports=tuple(ports),
    )


def state_from_list(item: Json, owner_label: str) -> ContainerState:
    """Builds a `ContainerState` from one `/containers/json` entry (`docker
    ps`): its `STATUS` words are Docker's, fixed at the listing."""
    return ContainerState(
        id=item["Id"],
        owner=(item.get("Labels") or {}).get(owner_label, ""),
        state=str(item.get("State") or ""),
        created=dt.datetime.fromtimestamp(item.get("Created", 0), dt.timezone.utc),
        started=None,
        finished=None,
        exit_code=0,
        health="",
        ports=tuple(item.get("Ports") or ()),
        listed_status=str(item.get("Status") or ""),
    )


class ContainerStates:
    """The panel's containers on one engine, kept from its events.

    Args:
        engine: The engine.
        owner_label: The label key that marks the panel's containers and
            names their owner.

    The events listener calls `changed` for every container event and
    `lost` when it loses the engine; until the next read fills it again
    the copy is stale and a read lists the engine itself. Thread-safe.
    """

    def __init__(self, engine: Engine, owner_label: str) -> None:
        self.engine = engine
        self.owner_label = owner_label
        self._states: dict[str, ContainerState] = {}
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()
        self._filled = False
        self._ticket = 0
        self._written: dict[str, int] = {}
        """The ticket of the reading stored for each container: two readings
        that overlap (an event's and the user's own action's) keep the one
        begun later."""
        self._filling = False
        self._stamps: set[str] = set()
        """The containers `refresh` read while a fill ran."""
        self.inspects = 0
        """Engine calls made to keep the copy (for the benchmarks)."""

    def of_owner(self, owner: str, following: bool) -> list[ContainerState]:
        """Returns the containers of one owner.

        Args:
            owner: The owner label's value.
            following: Whether the events listener follows the engine now;
                without it the copy cannot be trusted and the engine is
                listed for this read.

        Raises:
            EngineUnavailable: The engine had to be asked and did not answer.
        """
        if not following:
            self.inspects += 1
            return list_owner(self.engine, self.owner_label, owner)
        self._fill()
        with self._lock:
            return [state for state in self._states.values() if state.owner == owner]

    def refresh(self, container_id: str) -> None:
        """Reads one container again from the engine (after an event or the
        panel's own action); a container that is gone is dropped.

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        with self._lock:
            self._ticket += 1
            ticket = self._ticket
        self.inspects += 1
        try:
            state = state_from_inspect(self.engine.inspect_container(container_id), self.owner_label)
        except NotFound:
            state = None
        with self._lock:
            if ticket < self._written.get(container_id, 0):
                return  # a reading begun later was stored already: this one is older
            if self._filling:
                self._stamps.add(container_id)
            self._written[container_id] = ticket  # also for a removal: an older reading must not bring it back
            if state is None or not state.owner:
                self._states.pop(container_id, None)
            else:
                self._states[container_id] = state

    def read(self, container_id: str) -> ContainerState | None:
        """Reads one container from the engine into the copy and returns it
        (None: it is gone). For a container the copy does not hold yet: the
        events of another panel process's create may not have arrived.

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        self.refresh(container_id)
        with self._lock:
            return self._states.get(container_id)

    def changed(self, container_id: str) -> None:
        """The events listener saw an event of this container."""
        if container_id:
            try:
                self.refresh(container_id)
            except Exception:  # the engine went away: `lost` follows
                self.lost()

    def lost(self) -> None:
        """The events listener lost the engine: the copy is stale."""
        with self._lock:
            self._filled = False

    def _fill(self) -> None:
        """Lists and inspects every panel container once after a (re)start
        of the listener. A container `refresh` read while the fill ran keeps
        that reading (the fill's listing may predate it: a container the
        user just created would otherwise vanish from the copy)."""
        with self._fill_lock:
            with self._lock:
                if self._filled:
                    return
                self._filling = True
            try:
                fresh = {}
                self.inspects += 1
                for item in self.engine.containers(all=True, filters={"label": self.owner_label}):
                    try:
                        self.inspects += 1
                        inspected = self.engine.inspect_container(item["Id"])
                    except NotFound:
                        continue
                    fresh[item["Id"]] = state_from_inspect(inspected, self.owner_label)
                with self._lock:
                    for container_id in self._stamps:
                        if container_id in self._states:
                            fresh[container_id] = self._states[container_id]
                        else:
                            fresh.pop(container_id, None)
                    self._states = fresh
                    self._written = {key: value for key, value in self._written.items() if key in fresh}
                    self._filled = True
            finally:
                with self._lock:
                    self._stamps.clear()
                    self._filling = False


def list_owner(engine: Engine, owner_label: str, owner: str) -> list[ContainerState]:
    """Lists one owner's containers on the engine now (one call; `STATUS`
    as Docker words it at this moment).

    Raises:
        EngineUnavailable: The engine does not answer.
    """
    listed = engine.containers(all=True, filters={"label": f"{owner_label}={owner}"})
    return [state_from_list(item, owner_label) for item in listed]


def _time(text: str | None) -> dt.datetime | None:
    """Parses Docker's RFC 3339 UTC time with nanoseconds (`...:05.123456789Z`,
    cut to microseconds); None for its zero time (`0001-01-01T00:00:00Z`)."""
    if not text or text.startswith("0001-01-01"):
        return None
    head, _, rest = text.rstrip("Z").partition(".")
    micros = rest[:6].ljust(6, "0") if rest else "000000"
    return dt.datetime.fromisoformat(f"{head}.{micros}").replace(tzinfo=dt.timezone.utc)


def _since(moment: dt.datetime | None, now: dt.datetime) -> str:
    """docker's `HumanDuration` of the time since `moment`."""
    return human_duration(0 if moment is None else (now - moment).total_seconds())
