"""Runs the benchmarks of issues 8 and 26 and prints their figures as one table.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME[,NAME...]]

Figures (names for `--only`):

1. `first-frame` — connect → first complete frame of the dashboard (the
   footer arrived), one session at a time, p50/p95; baseline: the same
   login running `whoami`. Once with the asyncssh client, once with
   OpenSSH's `ssh -tt` in a pseudo-terminal.
2. `burst` — 100 simultaneous dashboard logins (100 users, key auth, PTY,
   each from its own loopback address), until all have a frame; once with
   the production admission limits (refused clients retry), once with
   limits that never refuse (helper server); baseline: 100 simultaneous
   exec logins.
3. `memory` — RSS per idle session at 100 sessions; RSS and live `App`
   count after 1000 connect/disconnect cycles (helper server, which can
   count objects).
4. `ps` — `ssh panel ps -a` against `ssh host docker ps -a` through
   Debian's OpenSSH sshd on a spare port, same containers: wall-time ratio.
5. `keystroke` — Down/Up → updated screen, p50/p99, with 100 sessions open
   and showing live stats; baseline: the same with one session.
6. `run` — `ssh panel run` against `docker run -d`, same image, limits,
   hardening and network: wall-time ratio.
7. `idle-cpu` — panel CPU with 100 sessions open and nothing changing;
   baseline: no sessions.
8. `neighbour-home` (issue 26) — another user's `ps -a` p99 while 8 SFTP
   sessions open files in a home of 30,000 folders; baseline: the same
   `ps` alone.
9. `neighbour-logs` (issue 26) — another user's `ps -a` p99 while 4 log
   viewers follow containers flooding 60 KB lines; baseline: alone. The
   server's RSS before, at the peak and after the viewers closed.

Everything runs on loopback with its own data folder, namespace and
kernel-chosen ports, and is removed at the end. Each figure is bounded
(`LIMIT` seconds) and a failing figure is reported, not fatal. `--quick`
makes fewer repetitions (first frame 20, `ps` 5, `run` 3, keystrokes 30,
CPU windows 10 s (61 s for idle CPU: one dashboard refresh period),
memory cycles 100). `--patch NAME` runs every server with an
experimental patch of `experiments.py` (to measure a direction before
changing the code); `--workers N` adds bursts against `sshpanel serve
--workers N` (production limits, and `MaxStartups` raised) and measures
keystrokes and idle CPU against it.
Run as root, through scripts/bench.sh (it sets up the Docker engine, the test image and Debian's OpenSSH server).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Awaitable, Callable, Union

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fig_cli import ps_vs_docker, run_vs_docker  # noqa: E402
from fig_live import live  # noqa: E402
from fig_logins import burst, first_frame, memory  # noqa: E402
from fig_neighbours import home_neighbour, logs_neighbour  # noqa: E402
from experiments import PATCHES  # noqa: E402
from harness import ROOT, Bench, Result, Row  # noqa: E402

Figure = Callable[[Bench, bool], Union[Result, Awaitable[Result]]]
LIMIT = 900.0
"""Seconds one figure may take before it is abandoned."""


def _live_keys(bench: Bench, quick: bool) -> Awaitable[Result]:
    return live(bench, quick, idle=False, keys=True)


def _live_idle(bench: Bench, quick: bool) -> Awaitable[Result]:
    return live(bench, quick, idle=True, keys=False)


def _live_both(bench: Bench, quick: bool) -> Awaitable[Result]:
    return live(bench, quick, idle=True, keys=True)


FIGURES: dict[str, Figure] = {
    "ps": ps_vs_docker,
    "run": run_vs_docker,
    "first-frame": first_frame,
    "burst": burst,
    "keystroke": _live_keys,
    "idle-cpu": _live_idle,
    "memory": memory,
    "neighbour-home": home_neighbour,
    "neighbour-logs": logs_neighbour,
}
"""Every figure by name, in the order they run."""


def machine_line() -> str:
    """nproc, CPU model, RAM and the versions the figures depend on."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in ("textual", "asyncssh", "docker"))
    return f"{os.cpu_count()} CPUs ({model}), {ram:.0f} GiB RAM, Python {platform.python_version()}, {versions}"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return done.stdout.strip() + (" + uncommitted changes" if dirty else "")


def run_figure(name: str, bench: Bench, quick: bool) -> Result:
    """Runs one figure within `LIMIT`; a failure becomes a row saying so."""
    started = time.monotonic()
    try:
        outcome = FIGURES[name](bench, quick)
        if asyncio.iscoroutine(outcome):
            outcome = asyncio.run(asyncio.wait_for(outcome, LIMIT))
        result = outcome
    except Exception as exc:  # a benchmark failing is a figure too
        traceback.print_exc(file=sys.stderr)
        result = Result([Row(name, f"FAILED: {type(exc).__name__}: {str(exc)[:120]}", "")])
    result.details.append(f"({name}: {time.monotonic() - started:.0f} s)")
    return result


def print_table(rows: list[Row]) -> None:
    header = Row("figure", "measured", "goal", "baseline (same run)", "ratio", "goal met")
    fields = ("figure", "measured", "goal", "baseline", "ratio", "met")
    widths = [max(len(getattr(row, f)) for row in [header, *rows]) for f in fields]
    for index, row in enumerate([header, *rows]):
        print("| " + " | ".join(getattr(row, f).ljust(w) for f, w in zip(fields, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default="", help=f"comma-separated figures: {', '.join(FIGURES)}")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES),
                        help="run every server with this experimental patch (experiments.py; repeatable)")
    parser.add_argument("--workers", type=int, default=1,
                        help="also run the burst, and run the keystroke and idle figures, against `sshpanel serve --workers N`")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    if "keystroke" in names and "idle-cpu" in names:  # one set-up serves both
        names = [n for n in names if n != "idle-cpu"]
        FIGURES["keystroke"] = _live_both
    print(f"sshpanel {commit()}; {machine_line()}; load average {os.getloadavg()[0]:.2f} at start"
          f"{'; --quick' if args.quick else ''}{'; patches: ' + ', '.join(args.patch) if args.patch else ''}",
          flush=True)
    bench = Bench(tuple(args.patch), args.workers)
    results: list[Result] = []
    try:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.append(run_figure(name, bench, args.quick))
    finally:
        bench.close()
    rows = sorted((row for result in results for row in result.rows), key=lambda row: row.figure)
    print_table(rows)
    for result in results:
        for line in result.details:
            print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end (the machine may be shared)")
    return 0 if all("FAILED" not in row.measured for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
