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
from harness import IMAGE, Bench, Result, Row, percentile, verdict

FOLDERS = 30_000
OPENERS = 8
VIEWERS = 4
"""Log viewers (TUI sessions on the log screen), one flooding container each."""
FLOOD = "L=$(head -c 60000 /dev/zero | tr '\\0' x); while :; do echo \"$L\"; done"
"""A container writing 60 KB lines without pause (the issue's flood)."""


def _ps_times(command: list[str], runs: int) -> list[float]:
    return [timed(command)[0] for _ in range(runs)]


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
        ps = [*bench.ssh(panel.port, bob), "--", "ps -a"]
        timed(ps)
        baseline = _ps_times(ps, runs)
        with _Background(opens) as background:
            time.sleep(1)
            loaded = _ps_times(ps, runs)
        if background.error is not None:
            raise RuntimeError(f"the SFTP sessions failed: {background.error!r}")
    finally:
        panel.stop()
    return Result([_row("26.3 `ps` of bob, alice's 8 SFTP openers, 30k folders", baseline, loaded)],
                  [f"{opened[0]} files opened for writing meanwhile"])


def logs_neighbour(bench: Bench, quick: bool) -> Result:
    """bob's `ps` while alice's log viewers follow 4 containers flooding 60 KB lines."""
    runs = 20 if quick else 100
    alice, bob = bench.user("nlalice"), bench.user("nlbob")
    panel = bench.panel(extra_env={"SSHPANEL_MAX_STARTUPS": "40:30:100"})
    ssh_alice = bench.ssh(panel.port, alice)
    rss = [panel.rss(), 0]

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
            timed([*ssh_alice, "--", f"run --name flood{index} -m 64m --cpus 0.5 {IMAGE} sh -c '{FLOOD}'"])
        ps = [*bench.ssh(panel.port, bob), "--", "ps -a"]
        timed(ps)
        baseline = _ps_times(ps, runs)
        with _Background(view) as background:
            time.sleep(3)
            loaded = _ps_times(ps, runs)
        if background.error is not None:
            raise RuntimeError(f"the log viewers failed: {background.error!r}")
        with contextlib.suppress(Exception):
            for index in range(VIEWERS):
                timed([*ssh_alice, "--", f"rm -f flood{index}"])
        time.sleep(3)
        after = panel.rss()
    finally:
        panel.stop()
    return Result([_row(f"26.4 `ps` of bob, alice's {VIEWERS} log viewers of floods", baseline, loaded)],
                  [f"server RSS before the viewers {rss[0] / 2**20:.0f} MiB, peak {rss[1] / 2**20:.0f} MiB, "
                   f"after they closed {after / 2**20:.0f} MiB"])


async def _drain(process) -> None:
    """Reads a TUI session's output until it ends (a client that reads)."""
    with contextlib.suppress(Exception):
        while await process.stdout.read(65536):
            pass
