"""Stopping and starting the machine's dockerd for the fault tests (issue 7).

dockerd is started detached (its own session): PID 1 on these machines does
not reap zombies, so a stopped dockerd may stay as state `Z`.
"""

from __future__ import annotations

import os
import subprocess
import time

RESTART_DOCKERD = os.environ.get("SSHPANEL_TEST_DOCKERD_RESTART") == "1"
"""Read at import: the autouse fixture clears SSHPANEL_* variables in tests."""


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    """Polls `check()` every 0.2 s until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    """True once `pid` has exited: no /proc entry, or a zombie nobody reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stop_dockerd() -> list[str]:
    """Stops dockerd with SIGTERM; returns its command line (for `start_dockerd`)."""
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=True).stdout.split()
    pid = next(int(p) for p in found if not gone(int(p)))
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        argv = [part.decode() for part in handle.read().split(b"\0") if part]
    os.kill(pid, 15)
    wait_for(lambda: gone(pid), timeout=60, what="dockerd to stop")
    return argv


def start_dockerd(argv: list[str]) -> None:
    """Starts dockerd detached with `argv` and waits until it answers."""
    with open("/var/log/sshpanel-dockerd.log", "ab") as log:
        subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    wait_for(
        lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, timeout=60, what="dockerd"
    )


def engine_remaps() -> bool:
    """True when the engine remaps user namespaces (`docker info` lists
    `name=userns` among its security options)."""
    result = subprocess.run(["docker", "info", "--format", "{{json .SecurityOptions}}"],
                            capture_output=True, text=True, check=True)
    return "name=userns" in result.stdout


def restart_dockerd() -> None:
    """Stops dockerd and starts it again with the same command line; the
    restarted engine remaps user namespaces exactly when the old one did
    (`/etc/docker/daemon.json` is read again, issue 21)."""
    remapped = engine_remaps()
    start_dockerd(stop_dockerd())
    assert engine_remaps() == remapped, "the restarted dockerd changed its user-namespace remapping"
