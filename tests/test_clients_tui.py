"""Every common client draws the dashboard and uploads files (issue 24
item 1): OpenSSH's `ssh`, Dropbear's `dbclient` and PuTTY's `plink` in a
tmux terminal (first screen, `q`, the terminal restored: main screen,
cursor shown), paramiko on a pseudo-terminal of its own; OpenSSH's `sftp`
and PuTTY's `psftp` upload into the user's home."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time

import pytest

from tests.conftest import SSH_BASE, ssh_available
from tests.test_clients import host_fingerprint
from tests.test_tui_e2e import Terminal

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

EXITED = "client-exited-with"
"""What the wrapper shell prints once the client has ended."""


def _dropbear_key(user, tmp_path):
    key = tmp_path / f"{user.name}.dropbear"
    if not key.exists():
        subprocess.run(["dropbearconvert", "openssh", "dropbear", str(user.key), str(key)], check=True,
                       capture_output=True)
    return key


def _putty_key(user, tmp_path):
    key = tmp_path / f"{user.name}.ppk"
    if not key.exists():
        subprocess.run(["puttygen", str(user.key), "-O", "private", "-o", str(key)], check=True, capture_output=True)
    return key


def _client_argv(client: str, panel, user, tmp_path) -> list[str]:
    """The interactive login of `client`, asking for a terminal."""
    if client == "openssh":
        return [*SSH_BASE[:-2], "-tt", "-i", str(user.key), "-p", str(panel.port), f"{user.name}@127.0.0.1"]
    if client == "dbclient":
        return ["dbclient", "-t", "-y", "-y", "-i", str(_dropbear_key(user, tmp_path)), "-p", str(panel.port),
                f"{user.name}@127.0.0.1"]
    return ["plink", "-ssh", "-batch", "-t", "-hostkey", host_fingerprint(panel), "-i", str(_putty_key(user, tmp_path)),
            "-P", str(panel.port), f"{user.name}@127.0.0.1"]


def _pane(term: Terminal, fmt: str) -> str:
    return subprocess.run(["tmux", "-L", term.socket, "display-message", "-p", "-t", "t", fmt],
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("client", ["openssh", "dbclient", "plink"])
def test_every_client_draws_the_dashboard_and_restores_the_terminal(panel, tmp_path, client):
    if client != "openssh" and not shutil.which(client):
        pytest.skip(f"{client} is not installed")
    alice = panel.users["alice"]
    argv = _client_argv(client, panel, alice, tmp_path)
    wrapped = ["sh", "-c", f'HOME={shlex.quote(str(tmp_path))} {shlex.join(argv)}; echo {EXITED} $?; sleep 60']
    term = Terminal(f"sshpanel-cl-{client}-{panel.namespace}", wrapped, 100, 30)
    try:
        term.wait_for("alice (user)", timeout=30)
        screen = term.wait_for("Quit", timeout=30)  # the footer: the first frame is complete
        assert "NAME" in screen, screen
        assert _pane(term, "#{alternate_on}") == "1"
        term.keys("q")
        screen = term.wait_for(EXITED, timeout=30)
        assert f"{EXITED} 0" in screen, screen
        assert "alice (user)" not in screen, screen  # the dashboard's screen is gone
        assert _pane(term, "#{alternate_on}") == "0", "still on the alternate screen"
        assert _pane(term, "#{cursor_flag}") == "1", "the cursor was left hidden"
        assert _pane(term, "#{mouse_any_flag}") == "0", "mouse reporting was left on"
    finally:
        term.close()


def test_paramiko_draws_the_dashboard_and_restores_the_terminal(panel):
    paramiko = pytest.importorskip("paramiko")
    alice = panel.users["alice"]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=panel.port, username=alice.name, key_filename=str(alice.key),
                   look_for_keys=False, allow_agent=False, timeout=30)
    try:
        channel = client.invoke_shell(term="xterm-256color", width=100, height=30)
        channel.settimeout(30)
        data = b""
        deadline = time.monotonic() + 30
        while b"alice (user)" not in data and time.monotonic() < deadline:
            data += channel.recv(1 << 16)
        assert b"alice (user)" in data
        channel.send(b"q")
        while not channel.exit_status_ready() or channel.recv_ready():
            chunk = channel.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        assert channel.recv_exit_status() == 0
        tail = data[data.rindex(b"alice (user)"):]
        assert b"\x1b[?1049l" in tail and b"\x1b[?25h" in tail, tail[-200:]
    finally:
        client.close()


def _home(panel, name: str):
    return panel.data_dir / "homes" / name


def test_openssh_sftp_uploads(panel, tmp_path):
    alice = panel.users["alice"]
    (tmp_path / "up.txt").write_text("from sftp\n")
    done = subprocess.run(["sftp", *SSH_BASE[1:-2], "-i", str(alice.key), "-P", str(panel.port), "-b", "-",
                           f"{alice.name}@127.0.0.1"], input="put up.txt sftp-up.txt\n", capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (_home(panel, "alice") / "sftp-up.txt").read_text() == "from sftp\n"


def test_psftp_uploads(panel, tmp_path):
    if not shutil.which("psftp"):
        pytest.skip("psftp is not installed")
    alice = panel.users["alice"]
    (tmp_path / "up.txt").write_text("from psftp\n")
    (tmp_path / "batch").write_text("put up.txt psftp-up.txt\n")
    done = subprocess.run(["psftp", "-batch", "-hostkey", host_fingerprint(panel), "-i", str(_putty_key(alice, tmp_path)),
                           "-P", str(panel.port), "-b", "batch", f"{alice.name}@127.0.0.1"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (_home(panel, "alice") / "psftp-up.txt").read_text() == "from psftp\n"
