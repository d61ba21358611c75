"""Provides `EventRecorder`, which writes the Docker lifecycle events of the
panel's containers into the history (the `Event` table, attributed to the
owner of the `Container` record), and the reconciliation of records with
what the engine really has.

What is recorded, and why nothing is recorded twice:

- `die` (with the exit code; ok when 0, or when a kill signal was sent since
  the container's last start, i.e. a stop/restart/kill/rm -f asked for it),
  `oom` (a failure; when the OOM kill also ends the container, its `die` is
  folded into one `oom` record carrying the exit code; an exit by SIGKILL
  nobody asked for is also recorded as `oom` when Docker's
  `State.OOMKilled` says so, as Docker 20.10 sometimes loses the `oom`
  event of a process that dies at once), `kill` (the signal),
  `health` (each status change; ok unless `unhealthy`): the Workspace never
  records these.
- `create`, `start`, `stop`, `restart`: the Workspace records the ones it
  performs itself. The recorder handles each Docker event `GRACE` seconds
  after it arrives and skips it when the panel recorded a matching action
  (a Docker `start` matches a panel `start` or `restart`, a `stop` a `stop`
  or `restart`) for the same container from one second before it; the rest
  (restart policy, the docker CLI) are recorded with detail
  `outside the panel`.
- `destroy` becomes the record's `remove` event through
  `store.history.record_removal`, which marks a record once whoever comes
  first (the Workspace's own remove normally wins thanks to `GRACE`).

Events are handled in arrival order in one thread, so database writes never
slow down the listener's fan-out to the dashboards. While the database is
unavailable the thread retries the event at hand every `RETRY` seconds and
the later ones wait in memory behind it, so an outage loses none of them
(a `dockerd` restart is caught up by the listener, `events.py`).

Events replayed by a process taking the recording over from another host
(`events.py`) may already be written: a replayed `die`, `oom`, `kill` or
health change is skipped when the container has an event of its kind at
the same instant (the panel kinds and `destroy` are skipped as above).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass

from sshpanel.backend.engine import Engine
from sshpanel.config import Settings
from sshpanel.errors import DatabaseUnavailable, PanelError
from sshpanel.store import Store
from sshpanel.store import history as queries

log = logging.getLogger("sshpanel.events")

GRACE = 3.0
"""Seconds an event waits before it is recorded, so that the panel's own
record of the same action is already written (then it is skipped)."""
UNCLAIMED_AGE = 60.0
"""Seconds a labelled container may exist without a record before it is
reported (a create in flight gets its record a moment after Docker's)."""
PANEL_KINDS = {"create": ("create",), "start": ("start", "restart"), "stop": ("stop", "restart"), "restart": ("restart",)}
"""Docker action -> panel event kinds that already record it."""
RECORDED = frozenset({*PANEL_KINDS, "die", "oom", "kill", "destroy", "health_status"})
_RECONCILE = "reconcile"
RETRY = 1.0
"""Seconds between two attempts at an event while the database is unavailable."""
REPLAYED_KINDS = {"die": ("die", "oom"), "oom": ("oom",), "kill": ("kill",), "health_status": ("health",)}
"""Docker action -> history kinds a replayed event of it may already be written as."""
SAME_INSTANT = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class UnclaimedContainer:
    """A container carrying the panel's owner label that no record claims.

    Attributes:
        id: Full Docker ID.
        name: Docker name.
        owner: Value of the owner label.
        state: Docker state.
        created: Creation time, UTC.
    """

    id: str
    name: str
    owner: str
    state: str
    created: dt.datetime


@dataclass(frozen=True)
class ReconcileReport:
    """Outcome of one reconciliation.

    Attributes:
        time: When it ran, UTC.
        removed: `owner/name` of records marked removed now, because their
            container is gone from the engine.
        unclaimed: Labelled containers with no record (left alone).
    """

    time: dt.datetime
    removed: tuple[str, ...]
    unclaimed: tuple[UnclaimedContainer, ...]


class EventRecorder:
    """Records lifecycle events into the history, in its own thread.

    Args:
        store: The database repository.
        engine: The Docker engine (for reconciliation).
        settings: Label keys.
        grace: Seconds each event waits before it is handled (`GRACE`).
        unclaimed_age: Seconds a labelled container may have no record
            before it is reported (`UNCLAIMED_AGE`).
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        settings: Settings,
        grace: float = GRACE,
        unclaimed_age: float = UNCLAIMED_AGE,
    ) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings
        self.grace = grace
        self.unclaimed_age = unclaimed_age
        self.last_report: ReconcileReport | None = None
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ooms: dict[str, float] = {}
        self._dies: dict[str, float] = {}
        self._killed: dict[str, str] = {}
        self._reported: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Starts the recording thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sshpanel-recorder", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops the thread (events still waiting are dropped)."""
        self._stop.set()
        self._queue.put((0.0, None, False))
        if self._thread is not None:
            self._thread.join(timeout=5)

    def offer(self, event: dict, replay: bool = False) -> None:
        """Queues one raw Docker event (from the listener thread; no I/O).

        Args:
            event: The event as Docker sent it.
            replay: Another process may have recorded it already (module
                docstring).
        """
        action = str(event.get("Action", "")).split(":")[0]
        if action not in RECORDED:
            return
        docker_id = str(event.get("id", ""))
        when = int(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or time.time())
        with self._lock:
            if action == "oom":
                self._ooms[docker_id] = when
            elif action == "die":
                self._dies[docker_id] = when
        self._queue.put((time.monotonic() + self.grace, event, replay))

    def request_reconcile(self) -> None:
        """Queues a reconciliation (after the listener (re)connects)."""
        self._queue.put((0.0, _RECONCILE, False))

    def reconcile(self) -> ReconcileReport:
        """Compares the records with the engine, now (blocks; admins may call it).

        Records whose container is gone are marked removed with a `remove`
        event `removed outside the panel`. Labelled containers without a
        record are logged once and returned; they are left alone (never
        adopted: docs/ARCHITECTURE.md invariant 7).

        Raises:
            EngineUnavailable, EngineError: The engine could not be asked.
        """
        label = self.settings.label_owner
        # Records first: a create attaches its Docker ID only once Docker made
        # the container, so a record read before the listing whose container
        # is missing from it is really gone (read after, a create finishing
        # in between would look removed).
        rows = self.store.live_containers()
        listed = self.engine.containers(all=True, filters={"label": label})
        present = {item["Id"]: item for item in listed}
        removed = []
        claimed = set()
        for row in rows:
            if not row.docker_id:
                continue
            if row.docker_id in present:
                claimed.add(row.docker_id)
            elif queries.record_removal(self.store, row.id, "removed outside the panel"):
                removed.append(f"{row.user.name}/{row.name}")
        now = time.time()
        unclaimed = []
        for item in listed:
            if item["Id"] in claimed or now - item.get("Created", now) < self.unclaimed_age:
                continue
            names = item.get("Names") or [""]
            unclaimed.append(
                UnclaimedContainer(
                    id=item["Id"],
                    name=names[0].lstrip("/"),
                    owner=(item.get("Labels") or {}).get(label, ""),
                    state=item.get("State", ""),
                    created=dt.datetime.fromtimestamp(item.get("Created", 0), dt.timezone.utc),
                )
            )
        for name in removed:
            log.info("reconcile: %s was removed outside the panel", name)
        for container in unclaimed:
            if container.id not in self._reported:
                self._reported.add(container.id)
                log.warning(
                    "reconcile: container %s (%s) carries owner label %r but no record claims it; left alone",
                    container.name, container.id[:12], container.owner,
                )
        report = ReconcileReport(dt.datetime.now(dt.timezone.utc), tuple(removed), tuple(unclaimed))
        self.last_report = report
        return report

    def _run(self) -> None:
        while not self._stop.is_set():
            due, item, replay = self._queue.get()
            if item is None:
                continue
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                self._handle(item, replay)
            except PanelError as exc:
                log.warning("events recorder: %s", exc.message)
            except Exception:  # a bad event or a database hiccup must not stop the recorder
                log.exception("events recorder failed on one event")

    def _handle(self, item, replay: bool = False) -> None:
        """Records one event (or reconciles), again every `RETRY` seconds
        while the database is unavailable (until `stop`).

        Raises:
            PanelError: Any other failure of this item.
        """
        waited = False
        while True:
            try:
                if item == _RECONCILE:
                    self.reconcile()
                else:
                    self._record(item, replay)
                if waited:
                    log.warning("events recorder: the database answers again; waiting events are recorded")
                return
            except DatabaseUnavailable as exc:
                if not waited:
                    log.warning("events recorder: database unavailable (%s); events wait until it answers",
                                exc.reason)
                waited = True
                if self._stop.wait(RETRY):
                    return

    def _record(self, event: dict, replay: bool = False) -> None:
        action = str(event.get("Action", ""))
        kind = action.split(":")[0]
        docker_id = str(event.get("id", ""))
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        seconds = int(event.get("timeNano") or 0) / 1e9 or float(event.get("time") or time.time())
        when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)
        if kind in ("start", "destroy"):
            self._killed.pop(docker_id, None)
        elif kind == "kill":
            self._killed[docker_id] = str(attributes.get("signal", ""))
        if kind == "destroy":
            with self._lock:
                self._ooms.pop(docker_id, None)
                self._dies.pop(docker_id, None)
        row = self.store.container_by_docker_id(docker_id)
        if row is None:
            return
        if replay and kind in REPLAYED_KINDS and queries.has_event(
                row.id, REPLAYED_KINDS[kind], when - SAME_INSTANT, when + SAME_INSTANT):
            return
        add = self.store.add_event
        if kind == "destroy":
            queries.record_removal(self.store, row.id, "removed outside the panel", when)
        elif kind in PANEL_KINDS:
            start = when - dt.timedelta(seconds=1)
            end = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=1)
            if not queries.has_event(row.id, PANEL_KINDS[kind], start, end):
                add(row.user_id, row.id, kind, detail="outside the panel", time=when)
        elif kind == "kill":
            add(row.user_id, row.id, "kill", detail=f"signal {attributes.get('signal', '?')}", time=when)
        elif kind == "health_status":
            status = action.partition(":")[2].strip()
            add(row.user_id, row.id, "health", ok=status != "unhealthy", detail=status, time=when)
        elif kind == "oom":
            with self._lock:
                ended = self._dies.get(docker_id, 0.0)
            if not seconds <= ended <= seconds + self.grace:
                add(row.user_id, row.id, "oom", ok=False, detail="out of memory: a process was killed", time=when)
        elif kind == "die":
            self._record_die(row, docker_id, attributes, seconds, when)

    def _record_die(self, row, docker_id: str, attributes: dict, seconds: float, when: dt.datetime) -> None:
        try:
            code = int(attributes.get("exitCode", 0))
        except (TypeError, ValueError):
            code = None
        with self._lock:
            oom_at = self._ooms.get(docker_id, 0.0)
            self._dies.pop(docker_id, None)
        # Forgotten only once written: a write the database refused is
        # tried again with the same facts (`_handle`).
        signal = self._killed.get(docker_id)
        if seconds - self.grace <= oom_at <= seconds or (code == 137 and signal is None and self._oom_killed(docker_id)):
            with self._lock:
                self._ooms.pop(docker_id, None)
            self.store.add_event(
                row.user_id, row.id, "oom", ok=False, exit_code=code, detail="out of memory: the container was killed",
                time=when,
            )
        elif signal is not None:
            self.store.add_event(
                row.user_id, row.id, "die", ok=True, exit_code=code, detail=f"exited after signal {signal}", time=when
            )
        else:
            self.store.add_event(
                row.user_id, row.id, "die", ok=code == 0, exit_code=code, detail=f"exit code {code}", time=when
            )
        self._killed.pop(docker_id, None)

    def _oom_killed(self, docker_id: str) -> bool:
        """Asks Docker whether an unexplained SIGKILL exit was an OOM kill
        (Docker 20.10 sometimes emits no `oom` event when the killed process
        exits at once, yet sets `State.OOMKilled`)."""
        try:
            state = self.engine.inspect_container(docker_id).get("State") or {}
        except PanelError:
            return False  # removed meanwhile: record a plain exit
        return bool(state.get("OOMKilled"))
