"""Fake session services for TUI rendering tests (allowed for rendering only):
scripts and provisioning, logs, history and stats with fixed records, and a
shell that records what it was asked to open.

Behaviour against Docker and the database is tested through the real
backend and the real server elsewhere (tests/test_provision.py,
tests/test_logs.py, tests/test_history.py, tests/test_stats.py and the e2e
tests)."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import threading

from sshpanel.backend.engine import STDERR, STDOUT
from sshpanel.backend.user.history import DailyCount, HistoryEntry
from sshpanel.backend.user.logs import LogLine
from sshpanel.backend.user.provision import ProvisionResult, ScriptView
from sshpanel.backend.engine.samples import ContainerStats, StatsRound
from sshpanel.backend.user.scripts import check_script_body, check_script_name
from sshpanel.errors import NotFound, PanelError, TimedOut
from sshpanel.tui.services import PanelServices

NOW = dt.datetime.now(dt.timezone.utc)


def script_view(name: str, body: str) -> ScriptView:
    data = body.encode()
    return ScriptView(name, body, hashlib.sha256(data).hexdigest(), len(data), NOW.replace(tzinfo=None))


class FakeProvisioner:
    """Stands in for `Provisioner`: scripts in a dict, runs that write fixed output.

    A run writes `output` (stream, bytes) chunks from the worker thread; with
    `hold` set it then waits until `release` is set or the run is cancelled.
    """

    def __init__(self) -> None:
        self.bodies = {"install": "#!/bin/sh\necho 'hello \"world\"' $(date)\n", "setup": "apt-get update\n"}
        self.calls: list[tuple] = []
        self.threads: set[str] = set()
        self.output: list[tuple[int, bytes]] = [(STDOUT, b"step 1\nstep 2\n"), (STDERR, b"warning: sp\xc3"),
                                                (STDERR, b"\xa9cial\n"), (STDOUT, b"done")]
        self.exit_code = 0
        self.hold = False
        self.release = threading.Event()
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.fail_with: PanelError | None = None

    def _record(self, *call) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)

    def scripts(self) -> list[ScriptView]:
        self._record("scripts")
        return [script_view(name, body) for name, body in sorted(self.bodies.items())]

    def script(self, name: str) -> ScriptView:
        self._record("script", name)
        if name not in self.bodies:
            raise NotFound(f"no such script: {name}")
        return script_view(name, self.bodies[name])

    def save(self, name: str, body: str) -> tuple[ScriptView, bool]:
        self._record("save", name, body)
        check_script_name(name)
        check_script_body(body)
        created = name not in self.bodies
        self.bodies[name] = body
        return script_view(name, body), created

    def remove(self, name: str) -> None:
        self._record("remove", name)
        if self.bodies.pop(name, None) is None:
            raise NotFound(f"no such script: {name}")

    def run(self, ref, script=None, body=None, on_output=None, cancel=None, timeout=None) -> ProvisionResult:
        self._record("run", ref, script)
        self.started.set()
        if self.fail_with is not None:
            raise self.fail_with
        for stream, data in self.output:
            if on_output is not None:
                on_output(stream, data)
        if self.hold:
            while not self.release.wait(0.01):
                if cancel is not None and cancel.is_set():
                    self.cancelled.set()
                    raise TimedOut("provisioning cancelled; the script was killed")
        return ProvisionResult(script or "-", "0" * 64, ref, self.exit_code, 1.5, "done")


class FakeShell:
    """Stands in for `open_shell`: records the refs, returns `status` or raises."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.status = 0
        self.fail_with: PanelError | None = None

    async def __call__(self, ref: str) -> int:
        self.opened.append(ref)
        if self.fail_with is not None:
            raise self.fail_with
        return self.status


def entry(container: str, kind: str, ok: bool = True, exit_code: int | None = None, detail: str = "",
          minutes: int = 5) -> HistoryEntry:
    return HistoryEntry(NOW - dt.timedelta(minutes=minutes), container, (container.encode().hex() + "0" * 64)[:64],
                        kind, ok, exit_code, detail)


class FakeHistory:
    """Stands in for `WorkspaceHistory` with fixed events."""

    def __init__(self) -> None:
        self.entries = [
            entry("web", "provision", True, 0, "script install sha256:0123456789abcdef 3.2s exit 0\nstep 1\ndone", 2),
            entry("db", "die", False, 3, "exit code 3", 60),
            entry("web", "create", True, None, "sshpanel-test/busybox", 90),
        ]
        self.calls: list[tuple] = []
        self.threads: set[str] = set()

    def _record(self, *call) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)

    def events(self, ref=None, days=30, limit=500) -> list[HistoryEntry]:
        self._record("events", ref, days)
        return [e for e in self.entries if ref is None or e.container == ref][:limit]

    def daily(self, days=30, ref=None) -> list[DailyCount]:
        self._record("daily", days, ref)
        today = NOW.date()
        counts = []
        for offset in range(days - 1, -1, -1):
            day = today - dt.timedelta(days=offset)
            counts.append(DailyCount(day, offset % 3 if ref is None else 1, 1 if offset in (0, 4) else 0))
        return counts

    def last_record(self, ref=None) -> HistoryEntry | None:
        self._record("last_record", ref)
        return self.entries[0] if self.entries else None


def sample(view_id: str, name: str, cpu: float, memory: int, seconds: float = 0.0) -> ContainerStats:
    return ContainerStats(
        id=view_id, name=name, owner="alice", time=NOW + dt.timedelta(seconds=seconds), cpu=cpu, cpu_limit=0.5,
        online_cpus=4, memory=memory, memory_limit=256 * 1024 * 1024, net_rx=1000, net_tx=2000,
        net_rx_rate=1234.0, net_tx_rate=56.0, block_read=0, block_write=4096, block_read_rate=0.0,
        block_write_rate=2048.0, pids=3, source="cgroup", has_rates=True,
    )


class FakeCollector:
    interval = 2.0


class FakeStats:
    """Stands in for `WorkspaceStats`: `push` delivers a round from a thread,
    as the collector does."""

    def __init__(self) -> None:
        self.callbacks: dict[int, object] = {}
        self.collector = FakeCollector()
        self.kept: dict[str, list[ContainerStats]] = collections.defaultdict(list)
        self.subscribed = 0
        self.unsubscribed = 0

    def watch(self, callback, refs=None):
        assert refs is None  # resolving refs would read the database on the event loop
        key = self.subscribed
        self.subscribed += 1
        self.callbacks[key] = callback

        def unsubscribe() -> None:
            self.unsubscribed += 1
            self.callbacks.pop(key, None)

        return unsubscribe

    def history(self, ref: str) -> list[ContainerStats]:
        return list(self.kept.get(ref, ()))

    def push(self, *samples: ContainerStats, error: PanelError | None = None) -> None:
        stats_round = StatsRound(NOW, {s.id: s for s in samples}, error)
        thread = threading.Thread(target=lambda: [cb(stats_round) for cb in list(self.callbacks.values())])
        thread.start()
        thread.join()


class FakeFollower:
    """Stands in for `LogFollower`: `feed` adds lines from a thread."""

    def __init__(self, lines: list[LogLine]) -> None:
        self.lines = collections.deque(lines)
        self.subscribers: list = []
        self.closed = False
        self.error: PanelError | None = None
        self.done = False
        self.lock = threading.Lock()

    def subscribe(self, callback):
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def take(self, max_lines: int = 1000) -> list[LogLine]:
        with self.lock:
            count = min(max_lines, len(self.lines))
            return [self.lines.popleft() for _ in range(count)]

    @property
    def ended(self) -> bool:
        return self.done and not self.lines

    def close(self) -> None:
        self.closed = True

    def feed(self, lines: list[LogLine], end: bool = False) -> None:
        def run() -> None:
            with self.lock:
                self.lines.extend(lines)
                self.done = end
            for callback in list(self.subscribers):
                callback()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()


def log_line(text: str, stream: str = "stdout", second: int = 0) -> LogLine:
    return LogLine(stream, text, f"2026-11-22T03:00:{second % 60:02d}.123456789Z")


class FakeLogs:
    """Stands in for `WorkspaceLogs`: every `open` gives a new `FakeFollower`."""

    def __init__(self, lines: list[LogLine] | None = None) -> None:
        self.initial = lines if lines is not None else [
            log_line(f"out {i}", "stderr" if i % 5 == 0 else "stdout", i) for i in range(1, 41)
        ]
        self.followers: list[FakeFollower] = []
        self.opened: list[tuple] = []
        self.threads: set[str] = set()

    def open(self, ref, follow=True, tail=None, since=None, max_lines=10_000, drop_oldest=True,
             max_bytes=None, cut_at=None, max_rate=None) -> FakeFollower:
        self.threads.add(threading.current_thread().name)
        self.opened.append((ref, follow, tail))
        follower = FakeFollower(list(self.initial))
        self.followers.append(follower)
        return follower


def services(provisioner=None, shell=None, logs=None, history=None, stats=None) -> PanelServices:
    """Session services made of fakes."""
    return PanelServices(  # type: ignore[arg-type]
        provisioner or FakeProvisioner(), logs or FakeLogs(), history or FakeHistory(), stats or FakeStats(), shell
    )
