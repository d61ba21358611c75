"""SFTP/SCP uploads confined to the user's home directory, through the real
OpenSSH `sftp` and `scp` clients (issue 6)."""

from __future__ import annotations

import asyncio

import os
import subprocess

import asyncssh
import pytest

from tests.conftest import SSH_BASE, ssh_available, start_panel, stop_panel, remove_namespace

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

CLIENT_OPTIONS = [arg for arg in SSH_BASE[1:] if arg != "-q"]


def sftp(panel, user, batch: str, tmp_path) -> subprocess.CompletedProcess:
    """Runs `sftp -b` with the batch commands; returns the finished process."""
    script = tmp_path / "batch"
    script.write_text(batch)
    return subprocess.run(
        ["sftp", *CLIENT_OPTIONS, "-i", str(user.key), "-P", str(panel.port), "-b", str(script),
         f"{user.name}@127.0.0.1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )


def scp(panel, user, *args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["scp", *CLIENT_OPTIONS, "-i", str(user.key), "-P", str(panel.port), *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )


def home(panel, name: str):
    return panel.data_dir / "homes" / name


def test_sftp_upload_lands_in_own_home_mode_0700(panel, tmp_path):
    (tmp_path / "hello.txt").write_text("hello\n")
    result = sftp(panel, panel.users["alice"], "mkdir site\nput hello.txt site/hello.txt\nls site\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (home(panel, "alice") / "site" / "hello.txt").read_text() == "hello\n"
    assert os.stat(home(panel, "alice")).st_mode & 0o777 == 0o700
    assert not (home(panel, "bob") / "site").exists()


def test_scp_recursive_upload_and_download(panel, tmp_path):
    src = tmp_path / "app"
    src.mkdir()
    (src / "Dockerfile").write_text("FROM scratch\n")
    (src / "data.bin").write_bytes(bytes(range(256)) * 10)
    result = scp(panel, panel.users["bob"], "-r", "app", "bob@127.0.0.1:", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (home(panel, "bob") / "app" / "data.bin").read_bytes() == bytes(range(256)) * 10
    out = tmp_path / "back"
    out.mkdir()
    result = scp(panel, panel.users["bob"], "bob@127.0.0.1:app/data.bin", "back/", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "data.bin").read_bytes() == bytes(range(256)) * 10


def test_dotdot_and_absolute_paths_stay_in_home_regression(panel, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    batch = "put x.txt ../../escaped.txt\nput x.txt /tmp/escaped-abs.txt\nget /etc/hostname got.txt\n"
    sftp(panel, panel.users["alice"], batch, tmp_path)
    assert not (panel.data_dir / "escaped.txt").exists()
    assert not (panel.data_dir / "homes" / "escaped.txt").exists()
    assert not os.path.exists("/tmp/escaped-abs.txt")
    # `..` and `/` are mapped into the home directory itself, never above it.
    assert (home(panel, "alice") / "escaped.txt").exists()
    assert (home(panel, "alice") / "tmp").exists() is False
    assert not (tmp_path / "got.txt").exists()
    result = sftp(panel, panel.users["alice"], "cd ../../..\nls ..\n", tmp_path)
    assert "bob" not in result.stdout and "sshpanel.db" not in result.stdout


def test_symlink_requests_are_refused_regression(panel, tmp_path):
    result = sftp(panel, panel.users["alice"], "symlink /etc link-to-etc\n", tmp_path)
    assert result.returncode != 0
    assert not os.path.lexists(home(panel, "alice") / "link-to-etc")
    result = sftp(panel, panel.users["alice"], "ln /etc/hostname hard\n", tmp_path)
    assert result.returncode != 0
    assert not os.path.lexists(home(panel, "alice") / "hard")


def test_planted_symlink_is_never_followed_regression(panel, tmp_path):
    """A symlink that appears inside the home (a race, or left behind by some
    other tool) cannot be used to read or write outside it."""
    root = home(panel, "alice")
    root.mkdir(parents=True, exist_ok=True)
    os.symlink("/etc", root / "etc-link")
    os.symlink("/etc/hostname", root / "hostname-link")
    (tmp_path / "evil").write_text("pwned")
    for batch in ("get etc-link/hostname got1\n", "get hostname-link got2\n",
                  "put evil etc-link/evil-file\n", "put evil hostname-link\n"):
        result = sftp(panel, panel.users["alice"], batch, tmp_path)
        assert result.returncode != 0, batch
    listing = sftp(panel, panel.users["alice"], "ls etc-link\nls etc-link/\n", tmp_path)
    assert "passwd" not in listing.stdout and "hostname" not in listing.stdout
    assert not (tmp_path / "got1").exists() and not (tmp_path / "got2").exists()
    assert not os.path.exists("/etc/evil-file")
    assert open("/etc/hostname").read() != "pwned"
    result = sftp(panel, panel.users["alice"], "rm etc-link\nrm hostname-link\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(root / "etc-link")


def test_audit_log_records_sftp_sessions(panel, tmp_path):
    admin = panel.users.get("root") or panel.add_user("root", admin=True)
    (tmp_path / "a.txt").write_text("abc")
    assert sftp(panel, panel.users["bob"], "put a.txt\n", tmp_path).returncode == 0
    deadline = __import__("time").monotonic() + 10
    while True:
        audit = panel.run(admin, "audit")
        if "sftp" in audit.stdout or __import__("time").monotonic() > deadline:
            break
    assert "sftp" in audit.stdout, audit.stdout + audit.stderr


@pytest.fixture(scope="module")
def small_quota_panel(tmp_path_factory, docker_client):
    """A panel with a 100 KiB home-directory quota."""
    tmp = tmp_path_factory.mktemp("quota")
    server = start_panel(tmp, f"sptq{os.getpid()}", extra_env={"SSHPANEL_QUOTA_DISK": str(100 * 1024)})
    server.add_user("carol")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, server.namespace)


def test_disk_quota_fails_the_write_cleanly(small_quota_panel, tmp_path):
    panel = small_quota_panel
    (tmp_path / "small").write_bytes(b"a" * 60 * 1024)
    (tmp_path / "big").write_bytes(b"b" * 200 * 1024)
    assert sftp(panel, panel.users["carol"], "put small\n", tmp_path).returncode == 0
    result = sftp(panel, panel.users["carol"], "put big\n", tmp_path)
    assert result.returncode != 0
    assert "quota" in result.stderr.lower() or "failure" in result.stderr.lower(), result.stderr
    used = sum(p.stat().st_size for p in home(panel, "carol").rglob("*") if p.is_file())
    assert used <= 100 * 1024
    result = scp(panel, panel.users["carol"], "big", "carol@127.0.0.1:big2", cwd=tmp_path)
    assert result.returncode != 0
    used = sum(p.stat().st_size for p in home(panel, "carol").rglob("*") if p.is_file())
    assert used <= 100 * 1024
    # Removing frees space again.
    assert sftp(panel, panel.users["carol"], "rm small\nrm big\nrm big2\nput small\n", tmp_path).returncode in (0, 1)
    assert (home(panel, "carol") / "small").stat().st_size == 60 * 1024


def test_sftp_sessions_count_against_the_session_limits(panel):
    """A connection may hold at most `sessions_per_connection` (10) sessions,
    SFTP ones included; a closed one frees its place (issue 7)."""
    alice = panel.users["alice"]

    async def scenario() -> tuple[int, bool]:
        async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)],
                                    known_hosts=None, agent_path=None) as conn:
            clients = []
            refused = 0
            for _ in range(11):
                try:
                    client = await asyncio.wait_for(conn.start_sftp_client(), 10)
                    await client.listdir(".")
                    clients.append(client)
                except (asyncssh.Error, OSError, asyncio.TimeoutError):
                    refused += 1
            for client in clients:
                client.exit()
                await client.wait_closed()
            again = await asyncio.wait_for(conn.start_sftp_client(), 10)
            await again.listdir(".")
            again.exit()
            return refused, True

    refused, reopened = asyncio.run(scenario())
    assert refused == 1 and reopened
