"""Provides figures 4 and 6 of issue 8, timed as a user types them in a
shell (OpenSSH client processes, wall time): `ssh panel ps -a` against
`ssh host docker ps -a` through Debian's OpenSSH `sshd`, and `ssh panel run`
against `docker run -d` of the same image and limits."""

from __future__ import annotations

import subprocess
import time

from harness import IMAGE, SSH, Bench, Result, Row, Sshd, median, verdict

CONTAINERS = 5
"""Containers both `ps` list."""


def timed(command: list[str]) -> tuple[float, str]:
    """Runs a command; returns (wall seconds, stdout). Raises when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{command[-1]!r} failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return elapsed, done.stdout


def ps_vs_docker(bench: Bench, quick: bool) -> Result:
    """Figure 4: the same user's containers listed by the panel, and by the
    docker CLI run through OpenSSH's sshd (ed25519 keys on both sides)."""
    runs = 5 if quick else 20
    user = bench.user("cli00")
    panel = bench.panel()
    sshd = None
    try:
        ssh_panel = bench.ssh(panel.port, user)
        _, listed = timed([*ssh_panel, "--", "ps -a -q"])
        for index in range(len(listed.split()), CONTAINERS):
            timed([*ssh_panel, "--", f"create --name c{index} -m 16m --cpus 0.1 {IMAGE} sleep 1d"])
        sshd = Sshd(bench.tmp / "sshd", bench.keys[user].export_public_key().decode())
        ours = [*ssh_panel, "--", "ps -a"]
        theirs = [*SSH, "-i", str(bench.key_file(user)), "-p", str(sshd.port), "root@127.0.0.1", "--",
                  f"docker ps -a --filter label=io.{bench.namespace}.owner={user}"]
        _, our_text = timed(ours)
        _, their_text = timed(theirs)
        lines = (len(our_text.strip().splitlines()), len(their_text.strip().splitlines()))
        if lines != (CONTAINERS + 1, CONTAINERS + 1):
            raise RuntimeError(f"the two listings differ: {lines} lines\n{our_text}\n{their_text}")
        our_times, their_times = [], []
        for index in range(runs):
            pair = [(ours, our_times), (theirs, their_times)]
            for command, times in pair if index % 2 == 0 else reversed(pair):
                times.append(timed(command)[0])
    finally:
        if sshd is not None:
            sshd.stop()
        panel.stop()
    ours_s, theirs_s = median(our_times), median(their_times)
    ratio = ours_s / theirs_s
    return Result(
        [Row("4 `ps` vs sshd + `docker ps`", f"{ours_s * 1000:.0f} ms", "ratio ≤ 0.3",
             f"OpenSSH + docker CLI {theirs_s * 1000:.0f} ms", f"{ratio:.2f}", verdict(ratio <= 0.3))],
        [f"4: {runs} runs each, alternating, {CONTAINERS} containers listed by both, medians; "
         f"panel min {min(our_times) * 1000:.0f} ms, sshd + docker min {min(their_times) * 1000:.0f} ms"],
    )


def docker_flags(bench: Bench, container_name: str) -> list[str]:
    """`docker run` flags that give a container what the panel gave `container_name`:
    limits, hardening, the user's network with the short name as alias, log settings."""
    attrs = bench.docker.containers.get(container_name).attrs
    host = attrs["HostConfig"]
    flags = ["--memory", str(host["Memory"]), "--memory-swap", str(host["MemorySwap"]),
             "--cpus", f"{host['NanoCpus'] / 1e9:g}", "--pids-limit", str(host["PidsLimit"]),
             "--network", host["NetworkMode"], "--log-driver", host["LogConfig"]["Type"]]
    for option in host.get("SecurityOpt") or []:
        flags += ["--security-opt", option]
    for capability in host.get("CapDrop") or []:
        flags += ["--cap-drop", capability]
    for key, value in (host["LogConfig"].get("Config") or {}).items():
        flags += ["--log-opt", f"{key}={value}"]
    return flags


def run_vs_docker(bench: Bench, quick: bool) -> Result:
    """Figure 6: `ssh panel run` (create + start) against `docker run -d`
    with the same image, limits, hardening and network; both removed after
    each run (not timed)."""
    runs = 3 if quick else 10
    user = bench.user("run00")
    panel = bench.panel()
    try:
        ssh_panel = bench.ssh(panel.port, user)
        limits = f"-m 64m --cpus 0.5 {IMAGE} sleep 1d"
        timed([*ssh_panel, "--", f"run --name warm {limits}"])
        flags = docker_flags(bench, f"{bench.namespace}.{user}.warm")
        timed([*ssh_panel, "--", "rm -f warm"])
        our_times, their_times = [], []
        for index in range(runs):
            name = f"{bench.namespace}.bench.run{index}"
            ours = [*ssh_panel, "--", f"run --name r{index} {limits}"]
            theirs = ["docker", "run", "-d", "--name", name, "--hostname", f"d{index}",
                      "--label", f"io.{bench.namespace}.bench=1", "--network-alias", f"d{index}",
                      *flags, IMAGE, "sleep", "1d"]
            pair = [(ours, our_times), (theirs, their_times)]
            for command, times in pair if index % 2 == 0 else reversed(pair):
                times.append(timed(command)[0])
            timed([*ssh_panel, "--", f"rm -f r{index}"])
            bench.docker.containers.get(name).remove(force=True)
    finally:
        panel.stop()
    ours_s, theirs_s = median(our_times), median(their_times)
    ratio = ours_s / theirs_s
    return Result(
        [Row("6 `run` vs `docker run -d`", f"{ours_s * 1000:.0f} ms", "ratio ≤ 1.2",
             f"docker run -d {theirs_s * 1000:.0f} ms", f"{ratio:.2f}", verdict(ratio <= 1.2))],
        [f"6: {runs} runs each, alternating, medians; panel min {min(our_times) * 1000:.0f} ms, "
         f"docker min {min(their_times) * 1000:.0f} ms; `docker run` flags copied from the panel's container: "
         f"{' '.join(flags)}"],
    )
