"""Provides figures 5 and 7 of issue 8, which share one set-up (10 users
with 2 containers each, 100 dashboard sessions held by a separate client
process): idle CPU of the panel while nothing changes, and keystroke →
screen update latency while every session shows live stats."""

from __future__ import annotations

import asyncio
import json
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

from clients import TuiClient, exec_once
from harness import HERE, IMAGE, Bench, PanelProcess, Result, Row, percentile, verdict

USERS = 10
SESSIONS = 100
NAMES = ("alpha1", "bravo2")
"""The containers of every user; the dashboard lists them by name."""
DOWN, UP = "\x1b[B", "\x1b[A"
KEY_TIMEOUT = 5.0
"""Seconds a keystroke may wait for its answer before it counts as a timeout."""
KEYS_BUDGET = 180.0
"""Seconds one series of keystrokes may take at most."""


class Holder:
    """A client process holding dashboard sessions (clients.py `hold`), so
    that draining their output does not delay the measuring session."""

    def __init__(self, bench: Bench, port: int, users: list[str], count: int, first_index: int = 100) -> None:
        command = [sys.executable, str(HERE / "clients.py"), "hold", "--port", str(port), "--keys",
                   str(bench.keys_dir), "--users", ",".join(users), "--per-user", str(SESSIONS // len(users)),
                   "--count", str(count), "--first-index", str(first_index)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    async def ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 300)
        if not line.startswith("ready"):
            raise RuntimeError(f"the holder failed: {line!r} (exit {self.process.poll()})")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def daemons() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("dockerd", "containerd")]


async def cpu_over(panel: PanelProcess, seconds: float) -> tuple[float, float]:
    """CPU of the panel and of dockerd + containerd over `seconds`, as
    percent of one core."""
    watched = daemons()
    before = panel.cpu(), sum(sum(p.cpu_times()[:2]) for p in watched)
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - start
    after = panel.cpu(), sum(sum(p.cpu_times()[:2]) for p in watched)
    return (after[0] - before[0]) / elapsed * 100, (after[1] - before[1]) / elapsed * 100


def selected(name: str) -> bytes:
    """What the stats panel's border title shows for a selected running container."""
    return f"{name} · running".encode()


@dataclass
class Presses:
    """Latencies of a series of keystrokes, seconds.

    Attributes:
        first: Key sent → the first screen update it caused arrived (the
            table row of the newly selected container, drawn highlighted).
        panel: Key sent → the stats panel shows the newly selected
            container (its title), the last part of the answer.
        timeouts: Presses without an answer within `KEY_TIMEOUT`; they
            count as `KEY_TIMEOUT` in both lists (a lower bound).
    """

    first: list[float] = field(default_factory=list)
    panel: list[float] = field(default_factory=list)
    timeouts: int = 0


def highlighted(client: TuiClient) -> tuple[bytes, bytes]:
    """How the table draws the cursor's row, learnt from the screen: the
    text around a container's name in it, as (prefix, suffix). The cursor's
    style covers the cell's padding too, which rows without the cursor
    draw apart from the name; so, with the 5-s refresh redrawing every row,
    only the cursor's arrival on a row matches.

    Raises:
        RuntimeError: The screen shows no row with the cursor.
    """
    names = b"|".join(re.escape(name.encode()) for name in NAMES)
    match = re.search(rb"(\x1b\[[0-9;]*m )(?:" + names + rb")( \x1b\[0m)", bytes(client.recent))
    if match is None:
        raise RuntimeError("cannot find the table's cursor in the output")
    return match.group(1), match.group(2)


async def keystrokes(client: TuiClient, count: int, budget: float) -> Presses:
    """Moves the table's cursor to the other container (Down or Up) `count`
    times or for `budget` seconds, 30-100 ms after each answer.

    The key follows the selection last seen on the screen, so a late
    answer never leaves the benchmark pressing a key that changes nothing.
    Neither a stats round (it repaints the panel with the *old* selection)
    nor the 5-s refresh (it repaints the rows as they are) is mistaken for
    the answer.
    """
    presses = Presses()
    prefix, suffix = highlighted(client)
    rows = [prefix + name.encode() + suffix for name in NAMES]
    titles = [selected(name) for name in NAMES]
    client.track(*titles)
    deadline = time.perf_counter() + budget
    for _ in range(count):
        if time.perf_counter() > deadline:
            break
        target = 1 if client.last_seen != titles[1] else 0
        first, panel = client.expect_all(rows[target], titles[target])
        start = time.perf_counter()
        client.send(DOWN if target == 1 else UP)
        try:
            presses.panel.append(await asyncio.wait_for(panel, KEY_TIMEOUT) - start)
            presses.first.append((first.result() if first.done() else presses.panel[-1] + start) - start)
        except asyncio.TimeoutError:
            presses.timeouts += 1
            presses.panel.append(KEY_TIMEOUT)
            presses.first.append(first.result() - start if first.done() else KEY_TIMEOUT)
        await asyncio.sleep(random.uniform(0.03, 0.1))
    return presses


QUIET_WINDOW = 61.0
"""Seconds of the idle-CPU window: more than the dashboard's quiet refresh
period (`sshpanel.tui.screens.dashboard.QUIET_REFRESH`, 60 s)."""
AGED = 65.0
"""Seconds after their creation when the table's CREATED column (`42s ago`)
stops changing at every refresh; from then on it changes once a minute."""


async def prepare(bench: Bench, port: int, users: list[str]) -> float:
    """Gives every user the two containers, created but not started.

    Returns:
        The `perf_counter()` when the last one was created.
    """
    created = 0.0
    for user in users:
        key = bench.keys[user]
        listed = await exec_once(port, user, key, "ps -a --format json")
        have = {json.loads(line)["Names"] for line in listed.splitlines() if line.strip()}
        for name in NAMES:
            if name not in have:
                await exec_once(port, user, key, f"create --name {name} -m 16m --cpus 0.1 {IMAGE} sleep 1d")
                created = time.perf_counter()
    return created


async def live(bench: Bench, quick: bool, idle: bool = True, keys: bool = True) -> Result:
    """Figures 7 (idle CPU, containers stopped, nothing changing) and 5
    (keystroke latency, containers running, live stats); against `serve
    --workers N` when the run has `--workers N`."""
    seconds = 10.0 if quick else 30.0
    presses = 30 if quick else 200
    users = bench.users("l", USERS)
    workers = {"SSHPANEL_WORKERS": str(bench.workers)} if bench.workers > 1 else None
    panel = bench.panel(extra_env=workers)
    where = f", `--workers {bench.workers}`" if workers else ""
    result = Result()
    holder: Holder | None = None
    try:
        created = await prepare(bench, panel.port, users)
        await asyncio.sleep(3.0)
        if idle:
            base, base_daemons = await cpu_over(panel, seconds)
            holder = Holder(bench, panel.port, users, SESSIONS)
            await holder.ready()
            await asyncio.sleep(max(5.0, created + AGED - time.perf_counter()))
            # A whole dashboard refresh period at least: every session refreshes once a
            # minute (all at nearly the same moment here), so a shorter window may miss it.
            idle_window = max(seconds, QUIET_WINDOW)
            busy, busy_daemons = await cpu_over(panel, idle_window)
            holder.close()
            holder = None
            result.rows.append(Row(f"7 idle CPU, 100 sessions{where}", f"{busy:.1f} % of a core", "≤ 2 %",
                                   f"0 sessions {base:.1f} %", f"{busy / base:.0f}" if base > 0.05 else "",
                                   verdict(busy <= 2.0)))
            result.details.append(
                f"7: containers created, not started, over a minute old (nothing changing), {idle_window:.0f} s "
                f"window ({seconds:.0f} s without sessions); dockerd + containerd "
                f"{busy_daemons:.1f} % of a core with the 100 sessions, {base_daemons:.1f} % without")
        if keys:
            for user in users:
                await exec_once(panel.port, user, bench.keys[user], "start " + " ".join(NAMES))
            user = users[0]
            client, _ = await TuiClient.open(panel.port, user, bench.keys[user], index=0)
            try:
                await asyncio.wait_for(client.expect(selected(NAMES[0])), 30)
                await asyncio.wait_for(client.expect(b"CPU "), 30)  # the first stats round arrived
                alone = await keystrokes(client, presses, KEYS_BUDGET)
                holder = Holder(bench, panel.port, users, SESSIONS - 1)
                await holder.ready()
                await asyncio.sleep(5.0)
                cpu_task = asyncio.create_task(cpu_over(panel, seconds))
                loaded = await keystrokes(client, presses, KEYS_BUDGET)
                live_cpu, live_daemons = await cpu_task
            finally:
                await client.close()

            def p(values: list[float], pct: float) -> str:
                return f"{percentile(values, pct) * 1000:.0f} ms"

            first99, panel99 = percentile(loaded.first, 99), percentile(loaded.panel, 99)
            result.rows.append(Row(f"5 keystroke p99 (first update), 100 live{where}",
                                   f"{p(loaded.first, 99)} (p50 {p(loaded.first, 50)})", "≤ 30 ms",
                                   f"1 session p99 {p(alone.first, 99)}",
                                   f"{first99 / percentile(alone.first, 99):.1f}",
                                   verdict(first99 <= 0.030 and not loaded.timeouts)))
            result.rows.append(Row(f"5 keystroke p99 (stats panel), 100 live{where}",
                                   f"{p(loaded.panel, 99)} (p50 {p(loaded.panel, 50)})", "≤ 30 ms",
                                   f"1 session p99 {p(alone.panel, 99)}",
                                   f"{panel99 / percentile(alone.panel, 99):.1f}",
                                   verdict(panel99 <= 0.030 and not loaded.timeouts)))
            result.details.append(
                f"5: {len(alone.first)} / {len(loaded.first)} presses (Down/Up on the table, 30-100 ms apart); "
                f"first update = the new row drawn highlighted, stats panel = its title shows the new container "
                f"(the same frame since 99b60f1, a second one before); 1 session p50 {p(alone.first, 50)} / {p(alone.panel, 50)}; timeouts "
                f"({KEY_TIMEOUT:.0f} s) {loaded.timeouts} loaded, {alone.timeouts} alone; panel CPU meanwhile "
                f"{live_cpu:.0f} % of a core (dockerd + containerd {live_daemons:.0f} %), 20 running containers "
                f"sampled every 2 s")
    finally:
        if holder is not None:
            holder.close()
        panel.stop()
    return result
