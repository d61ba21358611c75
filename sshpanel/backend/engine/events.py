"""Provides `EngineEvents`, the one Docker events listener per engine.

A single thread follows `/events` for containers carrying the panel's owner
label and fans each event out to subscribers (the dashboards of every
session), so N viewers cost one stream, not N, and hands it to the
`EventRecorder` that writes the history. After the engine goes away (a
`dockerd` restart) it reconnects with `since` set to the last event's time
in nanoseconds; Docker replays from that instant inclusive, and the events
already seen at that instant are skipped by their (id, action, timeNano)
key, so nothing is missed or doubled while the daemon kept it. Each
(re)connection also triggers a reconciliation of the records with the
engine, which covers what happened while no daemon was there to tell.

Several panel hosts on one PostgreSQL database (`Store.shared`) each
listen, for their own dashboards, but only one records (issue 19): the
process holding the `recorder` lock of `Store.locks`, an advisory lock
PostgreSQL frees when its holder's connection ends. The others try to take
it every `ELECTION_INTERVAL` seconds, keeping the events of the last
`REPLAY_SECONDS` meanwhile; the one that takes it over replays them (the
recorder skips what the previous holder already wrote) and reconciles, so
the events around a holder's death are recorded once. The holder checks
every `ELECTION_INTERVAL` seconds that its lock connection still stands;
when it broke (a database restart) it keeps recording, its events waiting
in memory for the database as on one host, and takes the lock again; if
another process took it first, it stops recording (that one replays).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.states import ContainerStates
from sshpanel.backend.engine.recorder import EventRecorder, ReconcileReport
from sshpanel.config import Settings
from sshpanel.errors import DatabaseUnavailable, EngineUnavailable
from sshpanel.store import Store

Subscriber = Callable[[str, str, str], None]
"""Called as `subscriber(owner, container_id, action)` from the listener thread."""

WATCHED_ACTIONS = frozenset(
    {"create", "start", "stop", "die", "kill", "oom", "restart", "destroy", "pause", "unpause", "rename", "update"}
)
DISCONNECTED = "disconnected"
"""The action published (with no owner or container) when the listener loses
the engine."""
SEEN_KEYS = 1024
"""Event keys remembered to skip the ones Docker replays after a reconnect."""
RECORDER_LOCK = "recorder"
"""The lock of `Store.locks` held by the one recording process."""
ELECTION_INTERVAL = 2.0
"""Seconds between two tries at the recorder lock (and two checks that it
is still held): a holder that died is replaced within about this time."""
REPLAY_SECONDS = 30.0
"""Seconds of events a process that does not record keeps, to replay them
if it takes the recording over."""

log = logging.getLogger("sshpanel.events")


class EngineEvents:
    """Shared Docker events listener.

    Args:
        engine: The engine to follow.
        settings: For the owner label key.
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._subscribers: dict[int, Subscriber] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream = None
        self.connected = threading.Event()
        self.recorder: EventRecorder | None = None
        self._standby: collections.deque[tuple[float, dict]] | None = None
        """Recent events, while another process records (see the module docstring)."""
        self._election: threading.Thread | None = None
        self.reconnects = 0
        self.states = ContainerStates(engine, settings.label_owner)
        """The panel's containers on this engine, kept from these events:
        what every session reads (`Workspace.containers`)."""

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Adds a subscriber; returns the function that removes it again."""
        with self._lock:
            key = self._next
            self._next += 1
            self._subscribers[key] = subscriber

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    @property
    def subscriber_count(self) -> int:
        """Number of live subscriptions (a leak shows here)."""
        with self._lock:
            return len(self._subscribers)

    def start(self, store: Store | None = None) -> None:
        """Starts the listener thread (idempotent).

        Args:
            store: When given, lifecycle events are recorded into the history
                and records are reconciled with the engine on every
                (re)connection (`EventRecorder`); on a database several
                hosts share, only while this process holds the recorder
                lock (module docstring).
        """
        if store is not None and self.recorder is None and self._election is None:
            if store.shared:
                self._standby = collections.deque()
                self._election = threading.Thread(target=self._elect, args=(store,), name="sshpanel-election",
                                                  daemon=True)
                self._election.start()
            else:
                self.recorder = EventRecorder(store, self.engine, self.settings)
                self.recorder.start()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sshpanel-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops the listener and waits briefly for its thread."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # the stream may already be broken; closing is best effort
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._election is not None:
            self._election.join(timeout=5)
        if self.recorder is not None:
            self.recorder.stop()

    def _elect(self, store: Store) -> None:
        """The election thread: takes the recorder lock when free and
        records from then on, takes it again after its connection broke,
        stops recording when another process holds it (module docstring)."""
        held = None
        while not self._stop.is_set():
            if held is not None and not held.still_held():
                log.warning("the recorder lock went with its database connection; recording goes on while "
                            "this process takes it again")
                held = None
            if held is None:
                try:
                    held = store.locks.try_lock(RECORDER_LOCK)
                except DatabaseUnavailable:
                    pass  # nobody else can take it meanwhile
                else:
                    if held is not None and self.recorder is None:
                        self._take_over(store)
                    elif held is None and self.recorder is not None:
                        log.warning("another process took the recorder lock; recording stops here")
                        self._stand_down()
            self._stop.wait(ELECTION_INTERVAL)
        if held is not None:
            held.release()

    def _take_over(self, store: Store) -> None:
        """Starts recording, first the events kept meanwhile."""
        recorder = EventRecorder(store, self.engine, self.settings)
        recorder.start()
        with self._lock:
            kept = list(self._standby or ())
            self._standby = None
            for _arrived, event in kept:
                recorder.offer(event, replay=True)
            self.recorder = recorder
        recorder.request_reconcile()
        log.info("recording Docker events (this process holds the recorder lock; %d recent event(s) replayed)",
                 len(kept))

    def _stand_down(self) -> None:
        """Stops recording (another process holds the lock) and keeps
        events again; the events still waiting here are dropped, the new
        holder replays its own."""
        with self._lock:
            recorder, self.recorder = self.recorder, None
            self._standby = collections.deque()
        if recorder is not None:
            recorder.stop()

    def _keep_or_record(self, event: dict) -> None:
        """Hands an event to the recorder, or keeps it while another
        process records (the last `REPLAY_SECONDS`)."""
        with self._lock:
            recorder, standby = self.recorder, self._standby
            if recorder is None and standby is not None:
                now = time.monotonic()
                standby.append((now, event))
                while standby and now - standby[0][0] > REPLAY_SECONDS:
                    standby.popleft()
        if recorder is not None:
            recorder.offer(event)

    def reconcile(self) -> ReconcileReport:
        """Reconciles records with the engine now (see `EventRecorder.reconcile`).

        Returns:
            Records marked removed and labelled containers nobody claims.

        Raises:
            EngineUnavailable: Also when the listener was started without a store.
            EngineError: Docker refused.
        """
        if self.recorder is None:
            raise EngineUnavailable("events are recorded by another panel host" if self._standby is not None
                                    else "the events recorder is not running")
        return self.recorder.reconcile()

    def publish(self, owner: str, container_id: str, action: str) -> None:
        """Delivers one event to every subscriber; a failing one is dropped."""
        with self._lock:
            subscribers = list(self._subscribers.items())
        for key, subscriber in subscribers:
            try:
                subscriber(owner, container_id, action)
            except Exception:
                with self._lock:
                    self._subscribers.pop(key, None)

    def _run(self) -> None:
        since = f"{time.time():.9f}"
        seen: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        delay = 0.5
        label = self.settings.label_owner
        while not self._stop.is_set():
            try:
                self._stream = self.engine.events(since, {"type": "container", "label": label})
                self.states.lost()  # what happened while not following: read afresh
                self.connected.set()
                if self.recorder is not None:
                    self.recorder.request_reconcile()
                delay = 0.5
                for event in self._stream:
                    stamp = int(event.get("timeNano") or 0)
                    key = (event.get("id"), event.get("Action"), stamp)
                    if key in seen:
                        continue
                    seen[key] = None
                    if len(seen) > SEEN_KEYS:
                        seen.popitem(last=False)
                    if stamp:
                        since = f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d}"
                    self._keep_or_record(event)
                    action = str(event.get("Action", "")).split(":")[0]
                    if action not in WATCHED_ACTIONS:
                        continue
                    self.states.changed(str(event.get("id") or ""))
                    attributes = event.get("Actor", {}).get("Attributes", {})
                    self.publish(attributes.get(label, ""), event.get("id", ""), action)
                    if self._stop.is_set():
                        break
            except Exception:  # engine gone or stream broken: reconnect below
                pass
            self.connected.clear()
            self.states.lost()
            self.reconnects += 1
            self.publish("", "", DISCONNECTED)
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)
