"""SFTP/SCP uploads confined to the user's home directory, through the real
OpenSSH `sftp` and `scp` clients (issue 6)."""

from __future__ import annotations

import asyncio

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time

import asyncssh
import pytest

from tests.conftest import SSH_BASE, TEST_IMAGE, ssh_available, start_panel, stop_panel, remove_namespace

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

CLIENT_OPTIONS = [arg for arg in SSH_BASE[1:] if arg != "-q"]
RACE_ROUNDS = 40
"""Rounds of requests while the host flips folders and links (each round
sends every request once)."""


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
    server = start_panel(tmp, f"sptq{os.getpid()}", extra_env={"SSHPANEL_QUOTA_DISK": str(100 * 1024),
                                                               "SSHPANEL_DISK_INTERVAL": "1"})
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


def test_disk_quota_boundary_counts_the_volumes_too(small_quota_panel, tmp_path):
    """Filling the quota exactly is allowed, one byte more is not; bytes in
    the user's volumes, as last measured, count against the same quota as
    SFTP uploads."""
    panel = small_quota_panel
    dave = panel.add_user("dave")
    quota = 100 * 1024
    (tmp_path / "exact").write_bytes(b"e" * quota)
    (tmp_path / "one").write_bytes(b"1")
    assert sftp(panel, dave, "put exact\n", tmp_path).returncode == 0
    over = sftp(panel, dave, "put one\n", tmp_path)
    assert over.returncode != 0 and "failure" in over.stderr.lower(), over.stderr
    assert not (home(panel, "dave") / "one").exists() or (home(panel, "dave") / "one").stat().st_size == 0
    assert sftp(panel, dave, "rm exact\n-rm one\n", tmp_path).returncode == 0
    fill = panel.run(dave, "run", "--name", "fill", "-v", "stuff:/stuff", TEST_IMAGE,
                     "sh", "-c", "head -c 61440 /dev/zero > /stuff/blob")
    assert fill.returncode == 0, fill.stderr
    deadline = time.monotonic() + 20
    while "Exited" not in panel.run(dave, "ps", "-a").stdout:
        assert time.monotonic() < deadline, "the filling container did not finish"
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while json.loads(panel.run(dave, "quota", "--format", "json").stdout)["DiskVolumes"] < 61440:
        assert time.monotonic() < deadline, "the volume was not measured"  # once a second here
        time.sleep(0.2)
    (tmp_path / "fifty").write_bytes(b"f" * 50 * 1024)
    (tmp_path / "thirty").write_bytes(b"t" * 30 * 1024)
    refused = sftp(panel, dave, "put fifty\n", tmp_path)
    assert refused.returncode != 0 and "failure" in refused.stderr.lower(), refused.stderr
    assert sftp(panel, dave, "put thirty\n", tmp_path).returncode == 0
    assert (home(panel, "dave") / "thirty").stat().st_size == 30 * 1024


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


def _snapshot(folder) -> dict:
    """(mode, size, mtime) of everything under `folder`, by relative path."""
    return {str(path.relative_to(folder)): (path.lstat().st_mode, path.lstat().st_size, path.lstat().st_mtime_ns)
            for path in [folder, *folder.rglob("*")]}


def _flip(root, outside, stop: threading.Event) -> None:
    """Swaps `root/work` between its real folder and a symlink to `outside`,
    and `root/single` between its real file and a symlink to a file outside,
    as fast as it can until `stop` is set (the host side of a race)."""
    while not stop.is_set():
        with contextlib.suppress(OSError):
            os.rename(root / "work", root / "work.real")
            os.symlink(outside, root / "work")
            os.unlink(root / "work")
            os.rename(root / "work.real", root / "work")
        with contextlib.suppress(OSError):
            os.symlink(outside / "precious", root / "single.tmp")
            os.replace(root / "single.tmp", root / "single")
            os.link(root / "single.keep", root / "single.tmp")
            os.replace(root / "single.tmp", root / "single")


def test_symlink_swapped_in_during_a_session_is_never_followed_regression(panel, tmp_path):
    """Within one SFTP session, a folder and a file the client has just
    looked at are swapped on the host for symlinks to a folder and a file
    outside the home: first between two requests, then over and over while
    requests run (so a check by name and the use that follows it see
    different things). Every request through them fails or acts inside the
    home, and nothing outside changes."""
    alice = panel.users["alice"]
    root = home(panel, "alice")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    os.utime(outside / "precious", (1_000_000, 1_000_000))
    (outside / "precious").chmod(0o640)
    before = _snapshot(outside)
    (root / "work").mkdir(parents=True)
    (root / "work" / "precious").write_text("mine")
    (root / "single").write_text("mine")
    (root / "mover").write_text("mine")

    def requests(sftp) -> dict:
        return {
            "chmod dir": lambda: sftp.chmod("work/precious", 0o777),
            "truncate dir": lambda: sftp.truncate("work/precious", 0),
            "utime dir": lambda: sftp.utime("work/precious", (2_000_000, 2_000_000)),
            "chmod file": lambda: sftp.chmod("single", 0o777),
            "truncate file": lambda: sftp.truncate("single", 0),
            "utime file": lambda: sftp.utime("single", (2_000_000, 2_000_000)),
            "stat file": lambda: sftp.stat("single"),
            "mkdir": lambda: sftp.mkdir("work/planted"),
            "remove": lambda: sftp.remove("work/precious"),
            "rmdir": lambda: sftp.rmdir("work"),
            "rename out": lambda: sftp.rename("work/precious", "stolen"),
            "rename in": lambda: sftp.rename("mover", "work/moved"),
            "posix rename in": lambda: sftp.posix_rename("mover", "work/moved"),
            "listdir": lambda: sftp.listdir("work"),
            "write file": lambda: sftp.open("single", "w"),
        }

    async def attempt(sftp) -> list[str]:
        """Runs every request once; returns those that succeeded."""
        succeeded = []
        for what, request in requests(sftp).items():
            try:
                await request()
            except (asyncssh.SFTPError, OSError):
                continue
            succeeded.append(what)
        return succeeded

    async def scenario() -> list[str]:
        async with asyncssh.connect("127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)],
                                    known_hosts=None, agent_path=None) as conn:
            async with conn.start_sftp_client() as sftp:
                assert await sftp.listdir("work")
                await sftp.stat("single")
                # The swap, between two requests of the same session.
                os.rename(root / "work", root / "work.real")
                os.symlink(outside, root / "work")
                os.rename(root / "single", root / "single.keep")
                os.symlink(outside / "precious", root / "single")
                succeeded = await attempt(sftp)
                # Then the race: the host flips both while requests run.
                os.unlink(root / "work")
                os.rename(root / "work.real", root / "work")
                stop = threading.Event()
                flipper = threading.Thread(target=_flip, args=(root, outside, stop))
                flipper.start()
                try:
                    for _ in range(RACE_ROUNDS):
                        for what, request in requests(sftp).items():
                            with contextlib.suppress(asyncssh.SFTPError, OSError):
                                await request()
                        if _snapshot(outside) != before:
                            break
                finally:
                    stop.set()
                    flipper.join()
                return succeeded

    succeeded = asyncio.run(scenario())
    assert _snapshot(outside) == before
    assert (outside / "precious").read_text() == "keep"
    # Between requests, every request through a swapped-in link failed.
    assert succeeded == [], succeeded
    for name in ("work", "single", "single.tmp", "single.keep", "stolen", "mover", "work.real"):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
