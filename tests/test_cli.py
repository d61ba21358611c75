"""The local command line: bootstrap users, clear one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.conftest import start_panel, stop_panel


def _sshpanel(*args: str, env_extra: dict | None = None, input: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSHPANEL_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "sshpanel", *args], capture_output=True, text=True, env=env, input=input, timeout=60, cwd=cwd)


def test_user_add_and_ls(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    data = str(tmp_path / "data")
    added = _sshpanel("user", "add", "carol", "--key", str(key) + ".pub", "--admin", "--data-dir", data)
    assert added.returncode == 0, added.stderr
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(key) + ".pub"], capture_output=True, text=True).stdout.split()[1]
    listed = _sshpanel("user", "ls", "--data-dir", data)
    assert listed.stdout.split() == ["carol", "admin", "enabled", fingerprint]
    again = _sshpanel("user", "add", "dave", "--key", "-", "--data-dir", data, input=(tmp_path / "k.pub").read_text())
    assert again.returncode == 1
    assert "already registered" in again.stderr
    assert "dave" not in _sshpanel("user", "ls", "--data-dir", data).stdout


def test_bad_key_file_gives_one_line(tmp_path):
    data = str(tmp_path / "data")
    missing = _sshpanel("user", "add", "erin", "--key", str(tmp_path / "nope.pub"), "--data-dir", data)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "cannot read key file" in missing.stderr
    (tmp_path / "bad.pub").write_text("not a key\n")
    bad = _sshpanel("user", "add", "erin", "--key", str(tmp_path / "bad.pub"), "--data-dir", data)
    assert bad.returncode == 1
    assert "invalid public key" in bad.stderr and "Traceback" not in bad.stderr


def test_port_in_use_and_engine_unreachable(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _sshpanel("serve", "--listen", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "d"),
                           "--host-keys", str(tmp_path / "hk"))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    gone = _sshpanel("serve", "--port", "0", "--data-dir", str(tmp_path / "d"), "--host-keys", str(tmp_path / "hk"),
                     "--docker-host", f"unix://{tmp_path}/no.sock")
    assert gone.returncode == 1
    assert f"Docker engine unreachable at unix://{tmp_path}/no.sock" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_initial_admin_keys_create_admin_once(tmp_path, docker_client):
    key = tmp_path / "adminkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {"SSHPANEL_INITIAL_ADMIN_KEYS": (tmp_path / "adminkey.pub").read_text()}
    panel = start_panel(tmp_path, "sptestadm", extra_env=env)
    try:
        listed = _sshpanel("user", "ls", env_extra={"SSHPANEL_DATA_DIR": str(panel.data_dir)})
        assert listed.stdout.split()[:2] == ["admin", "admin"]
        assert "created admin user" in panel.log()
    finally:
        stop_panel(panel)
    again = start_panel(tmp_path, "sptestadm", extra_env=env)
    stop_panel(again)
    assert "created admin user" not in again.log()


def test_python_dash_m_and_help():
    result = _sshpanel("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "user" in result.stdout


def test_db_check_and_backup(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    data = str(tmp_path / "data")
    assert _sshpanel("user", "add", "frank", "--key", str(key) + ".pub", "--data-dir", data).returncode == 0
    check = _sshpanel("db", "check", "--data-dir", data)
    assert check.returncode == 0 and check.stdout.strip() == "ok"
    backup = tmp_path / "copy.db"
    assert _sshpanel("db", "backup", str(backup), "--data-dir", data).returncode == 0
    assert backup.stat().st_mode & 0o777 == 0o600
    listed = _sshpanel("user", "ls", "--database-url", f"sqlite:///{backup}")
    assert listed.stdout.split()[0] == "frank"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "sshpanel.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    damaged = _sshpanel("db", "check", "--data-dir", str(tmp_path / "broken"))
    assert damaged.returncode == 1
    assert "Traceback" not in damaged.stderr
