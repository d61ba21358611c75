"""Provides the figures of issue 26 items 3 and 4: what one user's files and
one user's flooding log viewers cost another user. bob's `ssh panel ps -a`
(OpenSSH client, wall time) is timed alone, then while alice keeps 8 SFTP
sessions opening files in a home of 30,000 folders, then while alice's log
viewers follow containers writing as fast as they can; the goal is a p99
within 2 x the baseline's p99, measured in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import asyncssh

from fig_cli import timed
import psutil
from harness import IMAGE, Bench, Result, Row, cpu_seconds, median, percentile, verdict

FOLDERS = 30_000
OPENERS = 8
VIEWERS = 4
"""Log viewers (TUI sessions on the log screen), one flooding container each."""
FLOOD = "L=$(head -c 60000 /dev/zero | tr '\\0' x); while :; do echo \"$L\"; sleep 0.01; done"
"""A container writing 60 KB lines, up to 100 a second (6 MB/s each: an
unthrottled flood would fill the shared test machine's disk)."""


def _ps_times(command: list[str], runs: int) -> list[float]:
    return [timed(command)[0] for _ in range(runs)]


def _cpu(port: int) -> tuple[float, float]:
    """CPU seconds so far of the panel listening on `port` and of dockerd."""
    panel = next(c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                 and c.status == psutil.CONN_LISTEN)
    dockerd = next(p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "dockerd")
    return cpu_seconds(panel), cpu_seconds(dockerd)


def _compare(bench: Bench, port: int, user: str, runs: int, work,
             settle: float) -> tuple[list[float], list[float], tuple[float, ...]]:
    """Times `user`'s `ps -a` alone, then while `work` runs in the background
    (after `settle` seconds). Returns (alone, loaded) wall times, seconds,
    and the CPUs the panel and dockerd used while the loaded ones ran.

    Raises:
        RuntimeError: The background work failed.
    """
    ps = [*bench.ssh(port, user), "--", "ps -a"]
    timed(ps)
    baseline = _ps_times(ps, runs)
    with _Background(work) as background:
        time.sleep(settle)
        cpu = _cpu(port)
        started = time.monotonic()
        loaded = _ps_times(ps, runs)
        used = tuple((after - before) / (time.monotonic() - started) for before, after in zip(cpu, _cpu(port)))
    if background.error is not None:
        raise RuntimeError(f"the background load failed: {background.error!r}")
    return baseline, loaded, used


def _medians(baseline: list[float], loaded: list[float]) -> str:
    return f"p50 alone {median(baseline) * 1000:.0f} ms, loaded {median(loaded) * 1000:.0f} ms"


def _row(name: str, baseline: list[float], loaded: list[float]) -> Row:
    base, busy = percentile(baseline, 99), percentile(loaded, 99)
    ratio = busy / base
    return Row(name, f"{busy * 1000:.0f} ms", "p99 ≤ 2 × alone", f"{base * 1000:.0f} ms",
               f"{ratio:.2f}", verdict(ratio <= 2))


class _Background:
    """Runs an asyncio coroutine factory in its own thread and loop until stopped."""

    def __init__(self, work) -> None:
        self.work = work
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Background":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self.work(self.stop))
        except BaseException as exc:  # reported with the figure
            self.error = exc


def home_neighbour(bench: Bench, quick: bool) -> Result:
    """bob's `ps` while alice's 8 SFTP sessions open files among 30,000 folders."""
    runs = 20 if quick else 100
    alice, bob = bench.user("nbalice"), bench.user("nbbob")
    panel = bench.panel(extra_env={"SSHPANEL_MAX_STARTUPS": "40:30:100"})
    home = bench.tmp / "data" / "homes" / alice
    home.mkdir(parents=True, exist_ok=True)
    for index in range(FOLDERS):
        os.makedirs(home / f"d{index:05}", exist_ok=True)
    opened = [0]

    async def opens(stop: threading.Event) -> None:
        async with asyncssh.connect("127.0.0.1", panel.port, username=alice, client_keys=[bench.keys[alice]],
                                    known_hosts=None, agent_path=None) as conn:
            clients = [await conn.start_sftp_client() for _ in range(OPENERS)]

            async def loop(client, index: int) -> None:
                while not stop.is_set():
                    async with client.open(f"f{index}", "wb") as file:
                        await file.write(b"x" * 1000)
                    opened[0] += 1

            await asyncio.gather(*(loop(client, index) for index, client in enumerate(clients)))

    try:
        baseline, loaded, used = _compare(bench, panel.port, bob, runs, opens, 1)
    finally:
        panel.stop()
    return Result([_row("26.3 `ps` of bob, alice's 8 SFTP openers, 30k folders", baseline, loaded)],
                  [f"{_medians(baseline, loaded)}; {opened[0]} files opened for writing meanwhile; CPUs used then: panel {used[0]:.2f}, "
                   f"dockerd {used[1]:.2f}"])


def logs_neighbour(bench: Bench, quick: bool) -> Result:
    """bob's `ps` while alice's log viewers follow 4 containers flooding 60 KB lines."""
    runs = 20 if quick else 100
    alice, bob = bench.user("nlalice"), bench.user("nlbob")
    panel = bench.panel(extra_env={"SSHPANEL_MAX_STARTUPS": "40:30:100"})
    ssh_alice = bench.ssh(panel.port, alice)
    rss = [0, 0]

    async def view(stop: threading.Event) -> None:
        connections = []
        try:
            for index in range(VIEWERS):
                conn = await asyncssh.connect("127.0.0.1", panel.port, username=alice,
                                              client_keys=[bench.keys[alice]], known_hosts=None, agent_path=None)
                connections.append(conn)
                process = await conn.create_process(term_type="xterm-256color", term_size=(120, 40))
                seen = ""
                while "flood" not in seen:
                    seen += await asyncio.wait_for(process.stdout.read(65536), 30)
                for _ in range(index):  # the dashboard lists flood0..3: move to this one
                    process.stdin.write("\x1b[B")
                process.stdin.write("l")
                asyncio.ensure_future(_drain(process))
            while not stop.is_set():
                rss[1] = max(rss[1], panel.rss())
                await asyncio.sleep(0.2)
        finally:
            for conn in connections:
                conn.close()

    try:
        for index in range(VIEWERS):
            timed([*ssh_alice, "--", f"run --name flood{index} -m 64m --cpus 0.25 {IMAGE} sh -c '{FLOOD}'"])
        with _Background(view):  # warm-up: the first sessions' imports and caches stay
            time.sleep(8)
        time.sleep(3)
        rss[0], rss[1] = panel.rss(), 0
        baseline, loaded, used = _compare(bench, panel.port, bob, runs, view, 3)
        time.sleep(3)
        after = panel.rss()
    finally:
        with contextlib.suppress(Exception):
            timed([*ssh_alice, "--", "rm -f " + " ".join(f"flood{index}" for index in range(VIEWERS))])
        panel.stop()
    return Result([_row(f"26.4 `ps` of bob, alice's {VIEWERS} log viewers of floods", baseline, loaded)],
                  [f"{_medians(baseline, loaded)}; server RSS after a warm-up round of viewers {rss[0] / 2**20:.0f} MiB, peak {rss[1] / 2**20:.0f} MiB, "
                   f"after they closed {after / 2**20:.0f} MiB; CPUs used while viewed: panel {used[0]:.2f}, "
                   f"dockerd {used[1]:.2f}"])


async def _drain(process) -> None:
    """Reads a TUI session's output until it ends (a client that reads)."""
    with contextlib.suppress(Exception):
        while await process.stdout.read(65536):
            pass
