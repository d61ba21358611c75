"""What the SSH transport refuses (issue 7): remote forwarding, X11 and
agent forwarding, unknown subsystems, and client environment variables
reaching containers."""

from __future__ import annotations

import os
import re
import subprocess

from tests.conftest import TEST_IMAGE


def test_remote_forwarding_is_refused(panel):
    alice = panel.users["alice"]
    result = subprocess.run(
        [*panel.ssh_args(alice, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22"), "whoami"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 255


def test_unknown_subsystem_gets_a_message(panel):
    alice = panel.users["alice"]
    result = subprocess.run([*panel.ssh_args(alice, "-s"), "nosuch"], capture_output=True, text=True, timeout=30, input="")
    assert result.returncode == 1
    assert "unknown subsystem" in result.stderr


def test_client_environment_never_reaches_a_container(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "envprobe", TEST_IMAGE, "sleep", "600").returncode == 0
    try:
        result = subprocess.run(
            [*panel.ssh_args(alice, "-o", "SetEnv=LD_PRELOAD=/tmp/evil.so SSHPANEL_X=1"), "exec envprobe env"],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "LD_PRELOAD" not in result.stdout and "SSHPANEL_X" not in result.stdout
    finally:
        panel.run(alice, "rm", "-f", "envprobe")


def test_x11_forwarding_is_refused(panel):
    """`ssh -Y`: the server answers the x11-req with a failure (OpenSSH
    prints it with -v) and the session still runs."""
    alice = panel.users["alice"]
    env = {**os.environ, "DISPLAY": "127.0.0.1:99"}
    result = subprocess.run(
        [*panel.ssh_args(alice, "-v", "-Y"), "whoami"],
        capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert "Requesting X11 forwarding" in result.stderr
    assert "X11 forwarding request failed" in result.stderr


def test_agent_forwarding_is_refused(panel, tmp_path):
    """`ssh -A` with a running ssh-agent: the request is sent, the server
    refuses it (asyncssh `agent_forwarding=False`: no agent channel is ever
    opened towards the client) and the session still runs."""
    alice = panel.users["alice"]
    agent = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")],
                           capture_output=True, text=True, check=True)
    pid = re.search(r"SSH_AGENT_PID=(\d+)", agent.stdout).group(1)
    env = {**os.environ, "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
    try:
        result = subprocess.run([*panel.ssh_args(alice, "-v", "-A"), "whoami"],
                                capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["kill", pid], check=False)
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert "Requesting authentication agent forwarding" in result.stderr
    assert "agent" not in panel.log().lower()
