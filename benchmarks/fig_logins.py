"""Provides figures 1-3 of issue 8: connect → first frame of one session,
a burst of 100 simultaneous logins, and memory per idle session and after
many connect/disconnect cycles."""

from __future__ import annotations

import asyncio
import os
import random
import time

import asyncssh
import psutil

from clients import TuiClient, exec_once, login_framed, open_many, openssh_frame
from harness import Bench, PanelProcess, Result, Row, median, percentile, verdict
from fig_cli import timed

MIB = 1024 * 1024


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def first_frame(bench: Bench, quick: bool) -> Result:
    """Figure 1: connect → first complete frame, sequential logins; the
    baseline is the same connection running `whoami` instead. Once with
    the benchmark's asyncssh client, once with OpenSSH's `ssh` in a
    pseudo-terminal (what users run; it leaves Nagle's algorithm on until
    it has a session, see `sshpanel.ssh.tcp`)."""
    count = 20 if quick else 40
    user = bench.user("ff00")
    key = bench.keys[user]
    panel = bench.panel()
    try:
        start = time.perf_counter()
        client, framed = await TuiClient.open(panel.port, user, key)
        cold = framed - start
        await client.close()
        frames, execs, tui_cpu, exec_cpu = [], [], 0.0, 0.0
        for _ in range(count):
            await asyncio.sleep(0.1)
            cpu = panel.cpu()
            start = time.perf_counter()
            await exec_once(panel.port, user, key, "whoami")
            execs.append(time.perf_counter() - start)
            await asyncio.sleep(0.1)
            exec_cpu += panel.cpu() - cpu
            cpu = panel.cpu()
            start = time.perf_counter()
            client, framed = await TuiClient.open(panel.port, user, key)
            frames.append(framed - start)
            await client.close()
            await asyncio.sleep(0.1)
            tui_cpu += panel.cpu() - cpu
        ssh = bench.ssh(panel.port, user)
        openssh_frames, openssh_execs = [], []
        for _ in range(count):
            await asyncio.sleep(0.1)
            openssh_execs.append((await asyncio.to_thread(timed, [*ssh, "--", "whoami"]))[0])
            await asyncio.sleep(0.1)
            openssh_frames.append(await openssh_frame([*ssh[:-1], "-tt", ssh[-1]]))
    finally:
        panel.stop()
    p50, p95, base = median(frames), percentile(frames, 95), median(execs)
    o50, o95, obase = median(openssh_frames), percentile(openssh_frames, 95), median(openssh_execs)
    return Result(
        [Row("1 first frame p50", f"{ms(p50)} (p95 {ms(p95)})", "≤ 100 ms", f"exec `whoami` {ms(base)}",
             f"{p50 / base:.1f}", verdict(p50 <= 0.100)),
         Row("1 first frame p50, OpenSSH `ssh -tt`", f"{ms(o50)} (p95 {ms(o95)})", "≤ 100 ms",
             f"`ssh … whoami` {ms(obase)}", f"{o50 / obase:.1f}", verdict(o50 <= 0.100))],
        [f"1: {count} logins after a cold one ({ms(cold)}: the server imports the TUI at the first login); "
         f"first frame min {ms(min(frames))} max {ms(max(frames))}; `whoami` p95 {ms(percentile(execs, 95))}",
         f"1: server CPU per login incl. logout: dashboard {tui_cpu / count * 1000:.0f} ms, "
         f"exec `whoami` {exec_cpu / count * 1000:.0f} ms"],
    )


async def exec_login(port: int, user: str, key: asyncssh.SSHKey, index: int, deadline: float) -> tuple[float, int, str]:
    """Runs `whoami`, retrying when refused; returns (end time, refusals, error)."""
    refusals = 0
    while True:
        try:
            await asyncio.wait_for(exec_once(port, user, key, "whoami", index), deadline - time.perf_counter())
            return time.perf_counter(), refusals, ""
        except asyncssh.DisconnectError as exc:
            if exc.code != asyncssh.DISC_TOO_MANY_CONNECTIONS:
                return 0.0, refusals, exc.reason
            refusals += 1
        except (asyncio.TimeoutError, OSError, asyncssh.Error) as exc:
            return 0.0, refusals, type(exc).__name__
        await asyncio.sleep(random.uniform(0.2, 1.0))


ROOMY_STARTUPS = "1000:30:2000"
"""`SSHPANEL_MAX_STARTUPS` of the `workers-roomy` variant: never refuses 100."""


def start_servers(bench: Bench, variant: str, workers: int) -> list[PanelProcess]:
    """The servers of one burst variant: `production` (`sshpanel serve`),
    `generous` (helper, no admission limits), `workers` (`sshpanel serve
    --workers N`, production limits) or `workers-roomy` (the same with
    `SSHPANEL_MAX_STARTUPS` raised, as an admin expecting a class would)."""
    if variant == "production":
        return [bench.panel()]
    if variant == "generous":
        return [bench.panel(helper=True, generous=True)]
    env = {"SSHPANEL_WORKERS": str(workers)}
    if variant == "workers-roomy":
        env["SSHPANEL_MAX_STARTUPS"] = ROOMY_STARTUPS
    return [bench.panel(extra_env=env)]


LABELS = {"production": "production limits", "generous": "no admission limits (helper)",
          "workers": "`serve --workers {}`, production limits",
          "workers-roomy": f"`serve --workers {{}}`, MaxStartups {ROOMY_STARTUPS}"}


async def one_burst(bench: Bench, users: list[str], variant: str, workers: int,
                    timeout: float) -> tuple[Row, list[str]]:
    label = LABELS[variant].format(workers)
    servers = start_servers(bench, variant, workers)
    port = servers[0].port
    me = psutil.Process(os.getpid())

    def server_cpu() -> float:
        return sum(server.cpu() for server in servers)

    try:
        for index in range(3 * max(workers, len(servers))):  # imports the TUI (in each process, most likely)
            client, _ = await TuiClient.open(port, users[index], bench.keys[users[index]], index)
            await client.close()
        await asyncio.sleep(1.0)
        start = time.perf_counter()
        done = await asyncio.gather(*(exec_login(port, u, bench.keys[u], i, start + timeout)
                                      for i, u in enumerate(users)))
        exec_all = max(end for end, _, _ in done) - start
        exec_refusals = sum(r for _, r, _ in done)
        await asyncio.sleep(2.0)
        cpu, mine = server_cpu(), sum(me.cpu_times()[:2])
        start = time.perf_counter()
        logins = await asyncio.gather(*(login_framed(port, u, bench.keys[u], i, start + timeout)
                                        for i, u in enumerate(users)))
        framed = [login.framed - start for login in logins if login.client is not None]
        all_framed = max(framed) if framed else float("nan")
        used, client_cpu = server_cpu() - cpu, sum(me.cpu_times()[:2]) - mine
        await asyncio.gather(*(login.client.close() for login in logins if login.client is not None))
    finally:
        for server in servers:
            server.stop()
    failed = [login.error for login in logins if login.client is None]
    first_refused = sum(1 for login in logins if login.refusals)
    refusals = sum(login.refusals for login in logins)
    ok = not failed and all_framed <= 5.0
    row = Row(f"2 {len(users)} logins all framed, {label}",
              f"{all_framed:.2f} s, {first_refused} refused first", "≤ 5 s",
              f"{len(users)} exec logins {exec_all:.2f} s", f"{all_framed / exec_all:.1f}", verdict(ok))
    details = [
        f"2 ({label}): framed {len(framed)}/{len(users)}, failed {len(failed)} {failed[:2]}; "
        f"{first_refused} refused at the first attempt, {refusals} refusals in all (refused clients retry "
        f"after 0.2-1 s); first frame p50 {median(framed):.2f} s; exec baseline {exec_refusals} refusals",
        f"2 ({label}): server CPU {used:.1f} s ({used / len(users) * 1000:.0f} ms per login), "
        f"benchmark client CPU {client_cpu:.1f} s (same 2 cores)",
    ]
    return row, details


async def burst(bench: Bench, quick: bool) -> Result:
    """Figure 2: 100 simultaneous dashboard logins from 100 loopback
    addresses, each a user of its own; the baseline is 100 simultaneous
    exec logins against the same server. With `bench.workers` > 1, also
    `serve --workers N`, with production limits and with a raised
    `MaxStartups`."""
    users = bench.users("s", 100)
    result = Result()
    variants = ["production", "generous"] + (["workers", "workers-roomy"] if bench.workers > 1 else [])
    for variant in variants:
        row, details = await one_burst(bench, users, variant, bench.workers, timeout=120.0)
        result.rows.append(row)
        result.details.extend(details)
    return result


async def memory(bench: Bench, quick: bool) -> Result:
    """Figure 3: RSS per idle session at 100 sessions, and RSS and live
    `App` count after many connect/disconnect cycles (every fourth one
    drops the TCP connection instead of closing), in the helper server."""
    cycles = 100 if quick else 1000
    users = bench.users("s", 100)
    panel = bench.panel(helper=True, generous=True)
    checkpoints: list[str] = []
    try:
        async def cycle(i: int) -> None:
            user = users[i % len(users)]
            client, _ = await TuiClient.open(panel.port, user, bench.keys[user], i % 100)
            await client.close(abrupt=i % 4 == 3)

        async def run_cycles(first: int, count: int, concurrency: int = 10) -> None:
            gate = asyncio.Semaphore(concurrency)

            async def gated(i: int) -> None:
                async with gate:
                    await cycle(i)

            await asyncio.gather(*(gated(i) for i in range(first, first + count)))

        async def settled() -> tuple[dict, int]:
            await asyncio.sleep(2.0)
            probe = panel.probe()
            return probe, panel.rss()

        await run_cycles(0, 20)
        _, base = await settled()
        step = cycles // 5
        trend = []
        for first in range(0, cycles, step):
            await run_cycles(first, step)
            probe, rss = await settled()
            trend.append(rss)
            checkpoints.append(f"{first + step}: {rss / MIB:.1f} MiB, {probe['apps']} apps")
        apps_after, rss_after = probe["apps"], rss
        clients = await open_many(panel.port, [(u, bench.keys[u]) for u in users], 0, concurrency=8)
        probe_open, rss_open = await settled()
        await asyncio.gather(*(client.close() for client in clients))
        probe_closed, rss_closed = await settled()
    finally:
        panel.stop()
    per_session = (rss_open - rss_after) / len(clients)
    ratio = rss_after / base
    return Result(
        [Row("3 RSS per idle session (100 open)", f"{per_session / MIB:.2f} MiB", "≤ 2 MiB",
             f"0 sessions {rss_after / MIB:.0f} MiB", f"{rss_open / rss_after:.2f}", verdict(per_session <= 2 * MIB)),
         Row(f"3 RSS after {cycles} cycles", f"{rss_after / MIB:.1f} MiB, {apps_after} apps alive",
             "baseline ± 10 %, 0 apps", f"after warm-up {base / MIB:.1f} MiB", f"{ratio:.2f}",
             verdict(abs(ratio - 1) <= 0.10 and apps_after == 0))],
        [f"3: RSS (after gc) by cycles: {'; '.join(checkpoints)}; growth over the last {cycles - step} cycles "
         f"{(trend[-1] - trend[0]) / MIB:+.1f} MiB ({(trend[-1] / trend[0] - 1) * 100:+.1f} %)",
         f"3: 100 open: {rss_open / MIB:.1f} MiB, {probe_open['apps']} apps, {probe_open['tasks']} tasks, "
         f"{probe_open['threads']} threads; all closed again: {rss_closed / MIB:.1f} MiB, "
         f"{probe_closed['apps']} apps, {probe_closed['tasks']} tasks"],
    )
