"""Profiles where a dashboard login's server time goes (figure 1 of issue 8).

Starts the helper server (`panel_server.py`), logs in once to warm it up,
then runs N logins one after the other with cProfile enabled on the
server's event-loop thread from just before the connection until the first
frame arrived (logouts are not profiled), and prints the functions with the
most cumulative and own time over all N:

    .venv/bin/python benchmarks/profile_login.py [--logins 10] [--top 40] [--save FILE] [--patch NAME]

Only the loop thread is profiled: Docker and database calls made in worker
threads show up as the time the loop waits, not as their own functions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import TuiClient  # noqa: E402
from experiments import PATCHES  # noqa: E402
from harness import Bench  # noqa: E402


async def profile(bench: Bench, logins: int) -> tuple[pstats.Stats, list[float], float]:
    user = bench.user("prof00")
    key = bench.keys[user]
    panel = bench.panel(helper=True, generous=True)
    stats: pstats.Stats | None = None
    frames, cpu = [], 0.0
    try:
        client, _ = await TuiClient.open(panel.port, user, key)
        await client.close()
        for index in range(logins):
            await asyncio.sleep(0.3)
            path = bench.tmp / f"login{index}.prof"
            panel.command("profile-start")
            before = panel.cpu()
            start = time.perf_counter()
            client, framed = await TuiClient.open(panel.port, user, key)
            frames.append(framed - start)
            panel.command(f"profile-stop {path}")
            cpu += panel.cpu() - before
            await client.close()
            if stats is None:
                stats = pstats.Stats(str(path))
            else:
                stats.add(str(path))
    finally:
        panel.stop()
    assert stats is not None
    return stats, frames, cpu / logins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path, help="also write the merged profile (pstats) here")
    parser.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES),
                        help="profile a server with this experimental patch (experiments.py)")
    args = parser.parse_args()
    bench = Bench(tuple(args.patch))
    try:
        stats, frames, cpu = asyncio.run(profile(bench, args.logins))
    finally:
        bench.close()
    frames.sort()
    print(f"{args.logins} logins; first frame min {frames[0] * 1000:.0f} ms, median "
          f"{frames[len(frames) // 2] * 1000:.0f} ms (profiled, so slower); server CPU per login "
          f"{cpu * 1000:.0f} ms (profiler included)")
    if args.save:
        stats.dump_stats(str(args.save))
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        stats.stream = out
        stats.sort_stats(order).print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
