"""Provides the benchmark harness of `run.py`: a temporary data folder with
users and keys, panel server processes (`sshpanel serve` or the helper
`panel_server.py`), an OpenSSH `sshd` on loopback, CPU/RSS readings and the
clean-up of everything the run created.

Not part of the server: it imports the Docker SDK, psutil and sshpanel's
store directly, as `stats_cost.py` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import docker
import psutil

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
IMAGE = "sshpanel-test/busybox:latest"
SSH = ["ssh", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
START_TIMEOUT = 30.0
"""Seconds a server process may take to listen."""


@dataclass
class Row:
    """One line of the result table.

    Attributes:
        figure: Figure number and name (`1 first frame p50`).
        measured: The figure, with its unit.
        goal: The issue's goal.
        baseline: What it is compared with, measured in the same run.
        ratio: measured / baseline (empty when there is none).
        met: `yes`, `no` or `-` (no goal for this row).
    """

    figure: str
    measured: str
    goal: str
    baseline: str = ""
    ratio: str = ""
    met: str = "-"


@dataclass
class Result:
    """What one figure produced: table rows and detail lines."""

    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile (0-100) of `values`, linear between samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "yes" if ok else "no"


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process and its running
    children (the workers of `serve --workers`) have used so far."""
    process = psutil.Process(pid)
    total = 0.0
    for item in [process, *process.children(recursive=True)]:
        try:
            times = item.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, bytes."""
    return psutil.Process(pid).memory_info().rss


class PanelProcess:
    """A panel server process on a kernel-chosen loopback port.

    Args:
        bench: The run (data folder, environment).
        helper: Run `benchmarks/panel_server.py` (control pipe; generous
            limits when `generous`) instead of `python -m sshpanel serve`;
            always when the run has patches.
        generous: With `helper`: admission limits that never refuse.
        extra_env: More `SSHPANEL_*` settings.
        patches: More experimental patches for this process (implies `helper`).
    """

    def __init__(self, bench: Bench, helper: bool = False, generous: bool = False,
                 extra_env: dict[str, str] | None = None, patches: tuple[str, ...] = ()) -> None:
        self.log_path = bench.tmp / f"serve-{len(bench.panels)}.log"
        env = {**bench.env, **(extra_env or {})}
        patches = bench.patches + patches
        helper = helper or bool(patches)
        if helper:
            command = [sys.executable, str(HERE / "panel_server.py")] + (["--generous"] if generous else [])
            command += [f"--patch={name}" for name in patches]
        else:
            command = [sys.executable, "-m", "sshpanel", "serve"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE if helper else log,
                                            stdin=subprocess.PIPE if helper else subprocess.DEVNULL,
                                            stderr=log, cwd=bench.tmp, text=True)
        bench.panels.append(self)
        self.helper = helper
        self.port = self._wait_listening()

    def _wait_listening(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(r"listening on [^:]+:(\d+)", self.log_path.read_text())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"the panel did not start:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        """CPU seconds the server has used so far."""
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        """The server's resident set size, bytes."""
        return rss_bytes(self.pid)

    def probe(self) -> dict:
        """Asks the helper to collect garbage and count live objects.

        Returns:
            `{"apps": live Textual App instances, "tasks": asyncio tasks,
            "threads": threads}`, read after a full `gc.collect()`.
        """
        return self.command("probe")

    def command(self, line: str) -> dict:
        """Sends one control line to the helper and returns its JSON answer."""
        assert self.helper and self.process.stdin and self.process.stdout
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Sshd:
    """Debian's OpenSSH server on a spare loopback port with a temporary
    configuration: an ed25519 host key and `authorized_keys` in a folder of
    its own, `UsePAM no`, key logins only.

    Args:
        folder: Where the configuration, host key and keys go.
        public_key: The OpenSSH public key line allowed to log in as root.
    """

    BINARY = "/usr/sbin/sshd"

    def __init__(self, folder: Path, public_key: str) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        host_key = folder / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        (folder / "authorized_keys").write_text(public_key.strip() + "\n")
        self.port = spare_port()
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", "UsePAM no", "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "StrictModes no",
            "PrintMotd no", "PrintLastLog no", f"PidFile {folder / 'sshd.pid'}", "LogLevel ERROR", "",
        ]))
        # Privilege separation needs this folder; the package creates it only
        # when its service starts.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.process = subprocess.Popen([self.BINARY, "-D", "-e", "-f", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "w"))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"sshd did not start:\n{(folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def spare_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released: the kernel will not
    hand it out again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Bench:
    """One benchmark run: a temporary data folder and namespace shared by
    its panel processes, users with ed25519 keys, and the clean-up.

    Users are added straight into the database (as `sshpanel user add`
    does), which takes milliseconds instead of a process per user.
    """

    def __init__(self, patches: tuple[str, ...] = (), workers: int = 1) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sshpanel-bench-"))
        self.namespace = f"spbench{os.getpid()}"
        self.env = dict(os.environ)
        self.env.update({
            "SSHPANEL_DATA_DIR": str(self.tmp / "data"), "SSHPANEL_HOST_KEYS_DIR": str(self.tmp / "hostkeys"),
            "SSHPANEL_NAMESPACE": self.namespace, "SSHPANEL_PORT": "0", "SSHPANEL_LISTEN": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
        })
        self.patches = patches
        """Experimental patches (`experiments.py`): every server is then the helper."""
        self.workers = workers
        """Server processes of the experimental burst variant (1: not run)."""
        self.keys_dir = self.tmp / "keys"
        self.keys_dir.mkdir()
        self.keys: dict[str, asyncssh.SSHKey] = {}
        self.panels: list[PanelProcess] = []
        self.docker = docker.from_env(version="auto")
        self._accounts = None

    def users(self, prefix: str, count: int) -> list[str]:
        """Makes sure users `{prefix}{i:02d}` exist (with a key each); returns their names."""
        names = [f"{prefix}{i:02d}" for i in range(count)]
        for name in names:
            self.user(name)
        return names

    def user(self, name: str) -> str:
        """Makes sure user `name` exists with an ed25519 key in `keys_dir/name`."""
        if name in self.keys:
            return name
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{name}@bench")
        key.write_private_key(str(self.keys_dir / name))
        os.chmod(self.keys_dir / name, 0o600)  # OpenSSH refuses a readable private key
        key.write_public_key(str(self.keys_dir / f"{name}.pub"))
        self.accounts().add_user(name, [key.export_public_key().decode()])
        self.keys[name] = key
        return name

    def accounts(self):
        if self._accounts is None:
            sys.path.insert(0, str(ROOT))
            from sshpanel.backend.admin.accounts import Accounts
            from sshpanel.config import load_settings
            from sshpanel.store import open_store

            settings = load_settings(environ=self.env)
            self._accounts = Accounts(open_store(settings), settings)
        return self._accounts

    def key_file(self, name: str) -> Path:
        return self.keys_dir / name

    def ssh(self, port: int, user: str) -> list[str]:
        """The OpenSSH client command line for `user` on a panel port."""
        return [*SSH, "-i", str(self.key_file(user)), "-p", str(port), f"{user}@127.0.0.1"]

    def panel(self, **kwargs) -> PanelProcess:
        """Starts a panel server process (see `PanelProcess`)."""
        return PanelProcess(self, **kwargs)

    def close(self) -> None:
        """Stops every server process and removes the containers and networks of the namespace."""
        for panel in self.panels:
            panel.stop()
        self.remove_containers()
        self.docker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def remove_containers(self) -> None:
        label = f"io.{self.namespace}.owner"
        for container in self.docker.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for container in self.docker.containers.list(all=True, filters={"label": f"io.{self.namespace}.bench"}):
            container.remove(force=True)
        for network in self.docker.networks.list(filters={"label": label}):
            network.remove()
