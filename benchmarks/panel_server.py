"""Provides the benchmark's helper server: sshpanel's `PanelServer`, as
`sshpanel serve` runs it, plus a control pipe (stdin/stdout, one JSON line
per command) to count live objects and to profile, and optionally
admission limits that never refuse (`--generous`), and experimental
patches (`--patch NAME`, see `experiments.py`).

Settings come from the `SSHPANEL_*` environment, as for `sshpanel serve`.
Logs go to stderr. Commands, one per line on stdin:

- `probe`: full `gc.collect()`, then `{"apps": live Textual apps, "tasks":
  asyncio tasks, "threads": threads}`.
- `profile-start` / `profile-stop PATH`: cProfile of the event-loop thread
  (where Textual and asyncssh run), written to PATH (pstats format).
- `trace-start [FRAMES]` / `trace-diff PATH`: `tracemalloc` from now on;
  the 40 allocation sites that grew most since the start, with their
  tracebacks, written to PATH (to find what a slow RSS growth is).

EOF on stdin stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import logging
import sys
import threading
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from textual.app import App  # noqa: E402

from sshpanel.config import load_settings  # noqa: E402
from sshpanel.ssh.limits import LimitSettings, Limits  # noqa: E402
from sshpanel.ssh.server import PanelServer  # noqa: E402
from sshpanel.store import open_store  # noqa: E402

from experiments import PATCHES  # noqa: E402

GENEROUS = LimitSettings(startups=(100_000, 100, 100_000), per_source_unauthenticated=100_000,
                         sessions_per_user=100_000, sessions_per_connection=10)
"""Limits that never refuse a connection or a session of the benchmark."""


def probe() -> dict:
    gc.collect()
    apps = sum(1 for obj in gc.get_objects() if isinstance(obj, App))
    return {"apps": apps, "tasks": len(asyncio.all_tasks()), "threads": threading.active_count()}


async def serve(generous: bool) -> None:
    settings = load_settings()
    server = PanelServer(settings, open_store(settings))
    if generous:
        server.limits = Limits(GENEROUS)
    await server.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    profiler: cProfile.Profile | None = None
    traced: tracemalloc.Snapshot | None = None
    while line := (await reader.readline()).decode().strip():
        verb, _, argument = line.partition(" ")
        answer: dict = {"ok": True}
        if verb == "probe":
            answer = probe()
        elif verb == "profile-start":
            profiler = cProfile.Profile()
            profiler.enable()
        elif verb == "trace-start":
            tracemalloc.start(int(argument or 1))
            gc.collect()
            traced = tracemalloc.take_snapshot()
        elif verb == "trace-diff" and tracemalloc.is_tracing():
            gc.collect()
            grown = tracemalloc.take_snapshot().compare_to(traced, "traceback")
            with open(argument, "w") as out:
                for stat in grown[:40]:
                    out.write(f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks\n")
                    out.write("".join(f"    {line}\n" for line in stat.traceback.format()[-12:]))
        elif verb == "profile-stop" and profiler is not None:
            profiler.disable()
            profiler.dump_stats(argument)
            profiler = None
        else:
            answer = {"ok": False, "error": f"unknown command {line!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    await server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generous", action="store_true", help="admission limits that never refuse")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES),
                        help="apply an experimental patch (repeatable)")
    args = parser.parse_args()
    for name in args.patch:
        PATCHES[name]()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(serve(args.generous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
