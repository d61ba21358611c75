"""Runs `sshpanel serve` for the load test and, on SIGUSR1, writes what the
server process holds to the JSON file named by `LOAD_PROBE_FILE`: live
Textual apps, asyncio tasks and threads (a leak is any of them staying up
after every session closed)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading

from textual.app import App

from sshpanel.cli import main


def report(signum: int, frame: object) -> None:
    """Writes `{"apps": N, "tasks": N, "threads": N}` (replaced atomically)."""
    gc.collect()
    try:
        tasks = len(asyncio.all_tasks(asyncio.get_running_loop()))
    except RuntimeError:  # between loop iterations: no loop is running
        tasks = -1
    figures = {"apps": sum(1 for item in gc.get_objects() if isinstance(item, App)), "tasks": tasks,
               "threads": threading.active_count()}
    path = os.environ["LOAD_PROBE_FILE"]
    with open(path + ".tmp", "w") as out:
        json.dump(figures, out)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, report)
    sys.exit(main(sys.argv[1:]))
