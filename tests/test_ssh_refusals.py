"""What the SSH transport refuses (issue 7): remote forwarding, unknown
subsystems, and client environment variables reaching containers."""

from __future__ import annotations

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
