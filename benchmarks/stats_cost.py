"""Measures what live stats cost: sshpanel's shared collector against `docker stats`.

Starts a panel server of its own (temporary data folder, port chosen by the
kernel), creates N idle containers through it (`sleep`), then measures the
CPU seconds per minute spent by

- the panel process, and the SSH clients of the viewers,
- `dockerd`, `containerd` and the containerd shims,
- the `docker stats` CLI processes,

in five phases of the same run: nobody watching (the baseline), one and then
ten SSH sessions running `stats` in a terminal, and one and then ten
`docker stats` processes watching the same containers. It prints the figures
and the ratio panel / docker stats, net of the baseline (target: <= 0.25).

Run as root on a machine with the Docker engine and the test image
(scripts/test.sh makes it):

    .venv/bin/python benchmarks/stats_cost.py [--containers 50] [--seconds 60]
        [--interval 1] [--source auto|cgroup|api] [--rounds 1] [--json]

`--interval 1` is `docker stats`' own sampling rate (the daemon's collector
samples every second), so both sides refresh equally often.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import psutil

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "sshpanel-test/busybox:latest"
SSH = ["ssh", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
WARM_UP = 5.0
"""Seconds every phase runs before it is measured (viewers connect, streams open)."""


@dataclass
class Phase:
    """CPU seconds per minute of each group of processes in one phase."""

    name: str
    panel: float
    daemons: float
    shims: float
    clients: float


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each live process, by PID."""
    used = {}
    for process in processes:
        try:
            times = process.cpu_times()
            used[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return used


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes alive at both
    (a process that exits in between, e.g. the shim of another user's
    container, is left out rather than counted negative)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def named(*names: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def shims() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("containerd-shim")]


def measure(name: str, panel: psutil.Process, clients: list[subprocess.Popen], seconds: float) -> Phase:
    """Measures one phase: CPU seconds per minute of each group over `seconds`."""
    time.sleep(WARM_UP)
    groups = {
        "panel": [panel],
        "daemons": named("dockerd", "containerd"),
        "shims": shims(),
        "clients": [psutil.Process(c.pid) for c in clients],
    }
    before = {key: cpu_seconds(procs) for key, procs in groups.items()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    after = {key: cpu_seconds(procs) for key, procs in groups.items()}
    per_minute = {key: delta(before[key], after[key]) * 60.0 / elapsed for key in groups}
    return Phase(name, **per_minute)


def start_panel(tmp: Path, interval: float, source: str, containers: int) -> tuple[subprocess.Popen, int, dict]:
    env = dict(os.environ)
    env.update({
        "SSHPANEL_DATA_DIR": str(tmp / "data"), "SSHPANEL_HOST_KEYS_DIR": str(tmp / "hostkeys"),
        "SSHPANEL_NAMESPACE": f"spbench{os.getpid()}", "SSHPANEL_PORT": "0", "SSHPANEL_LISTEN": "127.0.0.1",
        "SSHPANEL_STATS_INTERVAL": str(interval), "SSHPANEL_STATS_SOURCE": source,
        "SSHPANEL_QUOTA_CONTAINERS": str(containers + 10), "SSHPANEL_QUOTA_MEMORY": str(64 * 2**30),
        "SSHPANEL_QUOTA_CPUS": str(containers + 10),
    })
    log = open(tmp / "serve.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "sshpanel", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"listening on [^:]+:(\d+)", (tmp / "serve.log").read_text())
        if match:
            return process, int(match.group(1)), env
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the panel did not start:\n{(tmp / 'serve.log').read_text()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=50, help="idle containers (1-100, default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per phase (default 60)")
    parser.add_argument("--interval", type=float, default=1.0, help="panel sampling interval (default 1 s)")
    parser.add_argument("--source", choices=("auto", "cgroup", "api"), default="auto", help="panel stats source")
    parser.add_argument("--viewers", default="1,10", help="viewer counts to measure (default 1,10)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every phase; report medians (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not 1 <= args.containers <= 100:
        parser.error("--containers must be between 1 and 100")
    viewer_counts = [int(v) for v in args.viewers.split(",")]
    client = docker.from_env(version="auto")
    tmp = Path(tempfile.mkdtemp(prefix="sshpanel-bench-"))
    panel, port, env = start_panel(tmp, args.interval, args.source, args.containers)
    namespace = env["SSHPANEL_NAMESPACE"]
    try:
        key = tmp / "bench"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        subprocess.run([sys.executable, "-m", "sshpanel", "user", "add", "bench", "--key", f"{key}.pub"],
                       env=env, check=True, capture_output=True)
        ssh = [*SSH, "-i", str(key), "-p", str(port)]
        for index in range(args.containers):
            subprocess.run([*ssh, "bench@127.0.0.1", "--", "run", "--name", f"idle{index}", "-m", "16m",
                            "--cpus", "0.1", IMAGE, "sleep", "1d"], check=True, capture_output=True)
        docker_names = [f"{namespace}.bench.idle{i}" for i in range(args.containers)]
        panel_process = psutil.Process(panel.pid)
        commands = {"sshpanel": [*ssh, "-tt", "bench@127.0.0.1", "--", "stats"],
                    "docker stats": ["docker", "stats", *docker_names]}
        runs: list[list[Phase]] = []
        for _ in range(args.rounds):
            phases = [measure("nobody watching", panel_process, [], args.seconds)]
            for tool, command in commands.items():
                for count in viewer_counts:
                    viewers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL) for _ in range(count)]
                    phases.append(measure(f"{tool} x{count}", panel_process, viewers, args.seconds))
                    for viewer in viewers:
                        viewer.kill()
                        viewer.wait()
            runs.append(phases)
    finally:
        panel.terminate()
        panel.wait(timeout=30)
        for container in client.containers.list(all=True, filters={"label": f"io.{namespace}.owner"}):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": f"io.{namespace}.owner"}):
            network.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    report(median_phases(runs), viewer_counts, args)
    return 0


def median_phases(runs: list[list[Phase]]) -> list[Phase]:
    """The median of each figure of each phase over the rounds (other work on
    a shared machine shows up as outliers in single rounds)."""
    result = []
    for index, phase in enumerate(runs[0]):
        figures = {}
        for field in ("panel", "daemons", "shims", "clients"):
            figures[field] = statistics.median(getattr(run[index], field) for run in runs)
        result.append(Phase(phase.name, **figures))
    return result


def report(phases: list[Phase], viewer_counts: list[int], args: argparse.Namespace) -> None:
    """Prints the phases and, per viewer count, the ratio of the net costs."""
    base = phases[0]
    ratios = {}
    for count in viewer_counts:
        ours = next(p for p in phases if p.name == f"sshpanel x{count}")
        theirs = next(p for p in phases if p.name == f"docker stats x{count}")
        # Net of the baseline: the panel's extra work, against the CLI's work
        # (the CLI is the `docker stats` side's equivalent of the panel) plus
        # the daemons' extra work on each side. A group that measured below
        # its baseline (noise on a shared machine) counts as zero extra work,
        # which can only make the panel look worse.
        our_cost = sum(max(0.0, getattr(ours, g) - getattr(base, g)) for g in ("panel", "daemons", "shims"))
        their_cost = theirs.clients + sum(max(0.0, getattr(theirs, g) - getattr(base, g)) for g in ("daemons", "shims"))
        ratios[count] = our_cost / their_cost if their_cost > 0 else float("nan")
    if args.json:
        print(json.dumps({
            "containers": args.containers, "seconds": args.seconds, "interval": args.interval, "rounds": args.rounds,
            "source": args.source, "phases": [vars(p) for p in phases],
            "ratios": {str(k): v for k, v in ratios.items()},
        }, indent=2))
        return
    print(f"{args.containers} idle containers, {args.seconds:.0f} s per phase, {args.rounds} round(s), panel "
          f"interval {args.interval:g} s, source {args.source}; CPU seconds per minute (medians):")
    print(f"{'phase':<20}{'panel':>8}{'dockerd+containerd':>20}{'shims':>8}{'viewers':>9}")
    for p in phases:
        print(f"{p.name:<20}{p.panel:>8.2f}{p.daemons:>20.2f}{p.shims:>8.2f}{p.clients:>9.2f}")
    for count, ratio in ratios.items():
        print(f"ratio sshpanel / docker stats, {count} viewer(s), net of the baseline: {ratio:.3f}")


if __name__ == "__main__":
    sys.exit(main())
