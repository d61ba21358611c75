"""Serving `ssh panel.host` on port 22 (issue 24): the systemd unit in
`contrib/` passes `systemd-analyze verify` and holds what the README
promises; `sshpanel hostkey` prints the fingerprint, `known_hosts` line and
SSHFP records exactly as OpenSSH's `ssh-keygen` does; `sshpanel user add`
prints the user's `~/.ssh/config` entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "sshpanel.service"
INSTALLED = "/opt/sshpanel/.venv/bin/sshpanel"
SSHPANEL = str(Path(sys.executable).with_name("sshpanel"))


def settings(unit: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (scripts/test.sh installs Debian's systemd)")
    text = UNIT.read_text()
    assert INSTALLED in text
    # verify checks that ExecStart exists: the installed path is this venv's here.
    unit = tmp_path / "sshpanel.service"
    unit.write_text(text.replace(INSTALLED, SSHPANEL))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_serves_port_22_without_root_and_stops_gently():
    unit = settings(UNIT.read_text())
    assert unit["User"] == ["sshpanel"] and unit["SupplementaryGroups"] == ["docker"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["ProtectSystem"] == ["strict"] and unit["ReadWritePaths"] == ["/var/lib/sshpanel"]
    environment = " ".join(unit["Environment"])
    for setting in ("SSHPANEL_PORT=22", "SSHPANEL_DATA_DIR=/var/lib/sshpanel/", "SSHPANEL_HOST_KEYS_DIR=/var/lib/sshpanel/"):
        assert setting in environment
    assert unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    from sshpanel.ssh.server import SHUTDOWN_GRACE

    assert int(unit["TimeoutStopSec"][0]) >= SHUTDOWN_GRACE + 10


def run_cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SSHPANEL_")}
    return subprocess.run([SSHPANEL, *args], capture_output=True, text=True, cwd=cwd, input=stdin, env=env,
                          timeout=60)


def test_hostkey_prints_what_ssh_keygen_prints(tmp_path):
    done = run_cli("hostkey", "--host", "panel.example.org", "--port", "22", "--host-keys", "hk", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    public = tmp_path / "hk" / "ssh_host_ed25519_key.pub"
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True).stdout.split()[1]
    records = subprocess.run(["ssh-keygen", "-r", "panel.example.org.", "-f", str(public)], capture_output=True,
                             text=True).stdout.splitlines()
    lines = done.stdout.splitlines()
    assert f"fingerprint: {fingerprint}" in lines
    assert [line for line in lines if " IN SSHFP " in line] == records
    key_type, blob = public.read_text().split()[:2]
    assert f"panel.example.org {key_type} {blob}" in lines
    again = run_cli("hostkey", "--host", "panel.example.org", "--port", "2222", "--host-keys", "hk", cwd=tmp_path)
    assert f"[panel.example.org]:2222 {key_type} {blob}" in again.stdout.splitlines()  # the key is kept


def test_user_add_prints_the_users_ssh_config(tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    done = run_cli("user", "add", "alice", "--key", str(tmp_path / "k.pub"), "--host", "panel.example.org",
                   "--port", "22", "--data-dir", "data", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Host panel\n    HostName panel.example.org\n    Port 22\n    User alice\n" in done.stdout
