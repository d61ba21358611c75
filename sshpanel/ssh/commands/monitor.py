"""Provides the monitoring commands: `stats`, `logs` and `history`.

`stats` and `logs -f` stream until the client leaves: they run on the event
loop, take their data from the backend's threads without blocking, and
release the shared collector subscription or the Docker log stream as soon
as the client disconnects (or presses Ctrl-C / `q` in a terminal).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncssh

from sshpanel.access.text import visible
from sshpanel.access.units import format_bytes, parse_since
from sshpanel.backend.user.history import MAX_DAYS, DailyCount, HistoryEntry, WorkspaceHistory
from sshpanel.backend.user.logs import LogLine, WorkspaceLogs
from sshpanel.backend.engine.samples import ContainerStats, StatsRound
from sshpanel.backend.engine.stats import WorkspaceStats
from sshpanel.errors import UsageError
from sshpanel.ssh.commands.base import Context, Handler, table

LOG_BUFFER = 2000
"""Lines a `logs` command buffers; when the client reads slower, Docker waits."""
STATS_HEADERS = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
STATS_KEYS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
CLEAR_SCREEN = "\x1b[2J\x1b[H"


def register(sub) -> dict[str, Handler]:
    """Adds `stats`, `logs` and `history` to the parser; returns their handlers."""
    stats = sub.add_parser("stats", help="show resource usage of your running containers")
    stats.add_argument("--no-stream", action="store_true", help="print one snapshot, do not refresh")
    stats.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    stats.add_argument("containers", nargs="*", metavar="CONTAINER")
    logs = sub.add_parser("logs", help="print the log of a container")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", default="all", metavar="N", help="only the last N lines (default all)")
    logs.add_argument("--since", metavar="DURATION", help="only lines since a duration ago (10m) or a time")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    logs.add_argument("--tui", action="store_true",
                      help="open the dashboard's log view of the container (needs a terminal: ssh -t)")
    logs.add_argument("container", metavar="CONTAINER")
    dashboard = sub.add_parser("dashboard", help="open the dashboard, on one container if named (needs ssh -t)")
    dashboard.add_argument("container", nargs="?", metavar="CONTAINER")
    history = sub.add_parser("history", help="show the history of deployments and failures")
    history.add_argument("container", nargs="?", metavar="CONTAINER", help="one container (removed ones too)")
    history.add_argument("--days", type=int, default=30, help=f"how many days back (1-{MAX_DAYS}, default 30)")
    history.add_argument("--daily", action="store_true", help="deployments and failures per day")
    history.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    return {"stats": _stats, "logs": _logs, "history": _history, "dashboard": _needs_terminal}


# stats -------------------------------------------------------------------


async def _stats(ctx: Context, args: argparse.Namespace) -> int:
    monitor = WorkspaceStats(ctx.workspace, ctx.stats)
    refs = args.containers or None
    named = await asyncio.to_thread(_named, ctx, refs)
    terminal = ctx.process.get_terminal_type() is not None
    if args.no_stream or not terminal:
        stats_round = await asyncio.to_thread(monitor.snapshot, refs)
        ctx.write(_render(stats_round, named, args.format, "\r\n" if terminal else "\n"))
        return 0
    latest: asyncio.Queue[StatsRound] = asyncio.Queue(maxsize=1)

    def on_round(stats_round: StatsRound) -> None:
        ctx.loop.call_soon_threadsafe(_keep_latest, latest, stats_round)

    unsubscribe = await asyncio.to_thread(monitor.watch, on_round, refs)
    quit_task = asyncio.ensure_future(wait_for_quit(ctx.process, "q\x03"))
    try:
        while True:
            getter = asyncio.ensure_future(latest.get())
            done, _ = await asyncio.wait({getter, quit_task}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            stats_round = getter.result()
            screen = _render(stats_round, named, args.format, "\r\n")
            if stats_round.error is not None:
                screen += f"Error: {stats_round.error.message}\r\n"
            ctx.process.stdout.write(CLEAR_SCREEN + screen)
            await ctx.process.stdout.drain()
    finally:
        unsubscribe()
        quit_task.cancel()
    return 0


def _keep_latest(queue: asyncio.Queue, item: StatsRound) -> None:
    """Replaces what the screen has not drawn yet: only the newest round counts."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


def _named(ctx: Context, refs: list[str] | None) -> list[tuple[str, str]] | None:
    """Resolves the named containers to (name, full ID), in the order given."""
    if refs is None:
        return None
    return [(row.name, row.docker_id) for row in (ctx.workspace.resolve(ref) for ref in refs)]


def _render(stats_round: StatsRound, named: list[tuple[str, str]] | None, form: str, newline: str) -> str:
    """Formats one round as `docker stats` does: every running container, or
    the named ones in order (zeros for those not running)."""
    if named is None:
        rows = [stats_fields(s.name, s.id, s) for s in stats_round.by_name()]
    else:
        rows = [stats_fields(name, docker_id, stats_round.stats.get(docker_id)) for name, docker_id in named]
    if form == "json":
        return "".join(json.dumps(row) + newline for row in rows)
    text = table(STATS_HEADERS, [tuple(row[key] for key in STATS_KEYS) for row in rows])
    return text.replace("\n", newline) + newline


def stats_fields(name: str, docker_id: str, stats: ContainerStats | None) -> dict[str, str]:
    """Returns one `docker stats --format json` object (docker's keys and
    formats; zeros for a container that is not running)."""
    if stats is None:
        return dict(zip(STATS_KEYS, (docker_id[:12], name, "0.00%", "0B / 0B", "0.00%", "0B / 0B", "0B / 0B", "0")))
    return {
        "ID": stats.short_id,
        "Name": name,
        "CPUPerc": f"{stats.cpu_percent:.2f}%",
        "MemUsage": f"{format_bytes(stats.memory)} / {format_bytes(stats.memory_limit)}",
        "MemPerc": f"{stats.memory_percent:.2f}%",
        "NetIO": f"{decimal_size(stats.net_rx)} / {decimal_size(stats.net_tx)}",
        "BlockIO": f"{decimal_size(stats.block_read)} / {decimal_size(stats.block_write)}",
        "PIDs": str(stats.pids),
    }


def decimal_size(value: float) -> str:
    """Formats bytes in decimal units with 3 significant digits, as `docker
    stats` prints network and block I/O (go-units `HumanSizeWithPrecision`)."""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.3g}{unit}"
        size /= 1000
    return f"{size:.3g}PB"


# logs --------------------------------------------------------------------


def _needs_terminal(ctx: Context, args: argparse.Namespace) -> int:
    """`dashboard` and `logs --tui` reach a handler only without a terminal
    (with one, the session opens the dashboard: `sshpanel.ssh.session`)."""
    named = f" {args.container}" if args.container else ""
    verb = "logs --tui" if args.verb == "logs" else "dashboard"
    raise UsageError(f"{verb} needs a terminal: ssh -t panel.host {verb}{named}")


async def _logs(ctx: Context, args: argparse.Namespace) -> int:
    if args.tui:
        return _needs_terminal(ctx, args)
    tail = _parse_tail(args.tail)
    since = parse_since(args.since) if args.since else None
    follower = await asyncio.to_thread(
        WorkspaceLogs(ctx.workspace).open,
        args.container,
        follow=args.follow,
        tail=tail,
        since=since,
        max_lines=LOG_BUFFER,
        drop_oldest=False,
    )
    wake = asyncio.Event()
    unsubscribe = follower.subscribe(lambda: ctx.loop.call_soon_threadsafe(wake.set))
    quit_task = asyncio.ensure_future(wait_for_quit(ctx.process, "\x03"))
    newline = "\r\n" if ctx.process.get_terminal_type() is not None else "\n"
    try:
        while True:
            wake.clear()
            lines = follower.take(500)
            if lines:
                await _print_lines(ctx, lines, args.timestamps, newline)
                continue
            if follower.ended:
                break
            if not await woken(wake, quit_task):
                break
    finally:
        unsubscribe()
        follower.close()
        quit_task.cancel()
    if follower.error is not None:
        raise follower.error
    return 0


def _parse_tail(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise UsageError(f"logs: invalid --tail {text[:32]!r}: use a number of lines or 'all'")
    return int(text)


async def _print_lines(ctx: Context, lines: list[LogLine], timestamps: bool, newline: str) -> None:
    """Writes lines to stdout or stderr, then waits until the client took
    them (so a slow client slows Docker down).

    Without a terminal and without `-t` the lines are data and keep their
    bytes, as `docker logs` passes them through; on a terminal or with
    timestamps they are made `visible` first (docs/ARCHITECTURE.md
    "Invariants")."""
    process = ctx.process
    raw = not timestamps and newline == "\n"
    for line in lines:
        stream = process.stderr if line.stream == "stderr" else process.stdout
        prefix = f"{line.timestamp} " if timestamps and line.timestamp else ""
        stream.write(prefix + (line.text if raw else visible(line.text)) + newline)
    await process.stdout.drain()
    await process.stderr.drain()


async def woken(wake: asyncio.Event, quit_task: asyncio.Future) -> bool:
    """Waits until `wake` is set (True: more to print) or the user quit
    (`quit_task`, from `wait_for_quit`, ended: False)."""
    waiter = asyncio.ensure_future(wake.wait())
    done, _ = await asyncio.wait({waiter, quit_task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        return False
    return True


async def wait_for_quit(process: asyncssh.SSHServerProcess, keys: str) -> None:
    """Returns when the client disconnects, or, with a terminal, when it
    presses one of `keys` (or sends a break or a signal).

    Without a terminal, end of input does not count: `ssh host logs -f web
    </dev/null` follows until the connection closes, like `docker logs -f`.
    """
    terminal = process.get_terminal_type() is not None
    while True:
        try:
            data = await process.stdin.read(1024)
        except asyncssh.TerminalSizeChanged:
            continue
        except Exception:  # break, signal, or the connection is gone
            return
        if not data:
            if not terminal:
                await process.channel.wait_closed()
            return
        if terminal and any(key in data for key in keys):
            return


# history -----------------------------------------------------------------


def _history(ctx: Context, args: argparse.Namespace) -> int:
    if not 1 <= args.days <= MAX_DAYS:
        raise UsageError(f"history: --days must be between 1 and {MAX_DAYS}")
    history = WorkspaceHistory(ctx.workspace)
    if args.daily:
        counts = history.daily(args.days, args.container)
        if args.format == "json":
            for count in counts:
                ctx.out(json.dumps(daily_json(count)))
        else:
            rows = [(c.date.isoformat(), c.deployments, c.failures, _bar(c)) for c in counts]
            ctx.out(table(("DATE", "DEPLOYMENTS", "FAILURES", ""), rows))
        return 0
    entries = history.events(args.container, args.days)
    if args.format == "json":
        for entry in entries:
            ctx.out(json.dumps(event_json(entry)))
    else:
        rows = [
            (
                e.time.strftime("%Y-%m-%d %H:%M:%S"),
                e.container,
                e.kind,
                "yes" if e.ok else "no",
                "" if e.exit_code is None else e.exit_code,
                e.detail.splitlines()[0][:60] if e.detail else "",
            )
            for e in entries
        ]
        ctx.out(table(("TIME (UTC)", "CONTAINER", "KIND", "OK", "EXIT CODE", "DETAIL"), rows))
    return 0


def event_json(entry: HistoryEntry) -> dict:
    """Returns one `history --format json` object."""
    return {
        "Time": entry.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Container": entry.container,
        "Kind": entry.kind,
        "OK": entry.ok,
        "ExitCode": entry.exit_code,
        "Detail": entry.detail,
    }


def daily_json(count: DailyCount) -> dict:
    """Returns one `history --daily --format json` object."""
    return {"Date": count.date.isoformat(), "Deployments": count.deployments, "Failures": count.failures}


def _bar(count: DailyCount) -> str:
    """A small text bar: `+` per deployment, `x` per failure (at most 20 each)."""
    return "+" * min(count.deployments, 20) + "x" * min(count.failures, 20)
