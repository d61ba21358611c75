"""Shared fixtures: a real Docker engine, a real panel server process on a
free port with its own data folder, and real SSH keys for test users.

A module marked `pytestmark = pytest.mark.databases` runs every test that
uses the `database` fixture (directly or through `panel`/`limited_panel`)
once on SQLite and once on PostgreSQL (`tests/databases.py`); elsewhere
`database` is SQLite."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest

from tests.databases import KINDS, POSTGRES_URL, Databases

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "sshpanel-test/busybox:latest"
SSH_BASE = [
    "ssh",
    "-q",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    "-o", "LogLevel=ERROR",
]


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch):
    """Keeps the developer's settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("SSHPANEL_"):
            monkeypatch.delenv(name, raising=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "databases: run the module's database tests on SQLite and PostgreSQL")


def pytest_generate_tests(metafunc):
    """Parametrizes `database` over `KINDS` in modules marked `databases`."""
    if "database" in metafunc.fixturenames and metafunc.definition.get_closest_marker("databases"):
        metafunc.parametrize("database", KINDS, indirect=True)


@pytest.fixture(scope="module")
def database(request):
    """The `Databases` of this module's kind (`sqlite` unless parametrized);
    drops the PostgreSQL databases it handed out at the end of the module."""
    kind = getattr(request, "param", "sqlite")
    if kind == "postgres" and not POSTGRES_URL:
        pytest.skip("needs PostgreSQL: run scripts/test.sh (it sets SSHPANEL_TEST_POSTGRES_URL)")
    databases = Databases(kind)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client; the suite needs a real engine with the test image."""
    client = docker.from_env(version="auto")
    try:
        client.ping()
        client.images.get(TEST_IMAGE)
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"needs a Docker engine with {TEST_IMAGE} (run scripts/test.sh): {exc}")
    yield client
    client.close()


@dataclass
class User:
    """A test user: name and private key path."""

    name: str
    key: Path

    @property
    def pub(self) -> Path:
        return self.key.with_suffix(".pub")


@dataclass
class Panel:
    """A panel server process and helpers to talk to it."""

    port: int
    data_dir: Path
    namespace: str
    process: subprocess.Popen
    log_path: Path
    keys_dir: Path
    users: dict[str, User] = field(default_factory=dict)
    database_url: str = ""
    """`SSHPANEL_DATABASE_URL` of the panel (empty: SQLite in `data_dir`)."""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SSHPANEL_DATA_DIR"] = str(self.data_dir)
        env["SSHPANEL_NAMESPACE"] = self.namespace
        if self.database_url:
            env["SSHPANEL_DATABASE_URL"] = self.database_url
        return env

    def add_user(self, name: str, admin: bool = False) -> User:
        """Creates a key pair and registers the user with `sshpanel user add`."""
        key = self.keys_dir / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(key)], check=True)
        cmd = [sys.executable, "-m", "sshpanel", "user", "add", name, "--key", str(key) + ".pub"]
        if admin:
            cmd.append("--admin")
        subprocess.run(cmd, check=True, env=self.env(), capture_output=True)
        user = User(name, key)
        self.users[name] = user
        return user

    def ssh_args(self, user: User, *extra: str) -> list[str]:
        return [*SSH_BASE, "-i", str(user.key), "-p", str(self.port), *extra, f"{user.name}@127.0.0.1"]

    def run(self, user: User, *command: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs one exec command through the real OpenSSH client."""
        return subprocess.run(
            [*self.ssh_args(user), "--", shlex.join(command)],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )

    def log(self) -> str:
        return self.log_path.read_text()


def start_panel(tmp: Path, namespace: str, extra_env: dict[str, str] | None = None, host_keys: Path | None = None,
                command: list[str] | None = None, database_url: str = "") -> Panel:
    """Starts `sshpanel serve` (or `command`, which must serve the same way)
    on a free port and waits until it listens; on the database at
    `database_url` (`Databases.new_url`), else SQLite in its data dir."""
    data_dir = tmp / "data"
    keys_dir = tmp / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"serve-{secrets.token_hex(3)}.log"
    env = dict(os.environ)
    env.update({"SSHPANEL_DATA_DIR": str(data_dir), "SSHPANEL_NAMESPACE": namespace, "SSHPANEL_PORT": "0",
                "SSHPANEL_LISTEN": "127.0.0.1", "SSHPANEL_HOST_KEYS_DIR": str(host_keys or tmp / "hostkeys")})
    if database_url:
        env["SSHPANEL_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    with open(log_path, "w") as log:
        process = subprocess.Popen(command or [sys.executable, "-m", "sshpanel", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"listening on [^:]+:(\d+)", log_path.read_text())
        if match:
            return Panel(int(match.group(1)), data_dir, namespace, process, log_path, keys_dir,
                         database_url=database_url)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"panel did not start:\n{log_path.read_text()}")


def stop_panel(panel: Panel) -> None:
    panel.process.terminate()
    try:
        panel.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        panel.process.kill()
        panel.process.wait()


def remove_namespace(client: docker.DockerClient, namespace: str) -> None:
    """Removes every container, network and volume the test namespace created."""
    label = f"io.{namespace}.owner"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for top in [*Path("/sys/fs/cgroup").glob(f"*/{namespace}-build"), Path(f"/sys/fs/cgroup/{namespace}-build")]:
        for cgroup in sorted(top.glob("**/"), key=lambda p: len(p.parts), reverse=True):  # builds' cgroups
            with contextlib.suppress(OSError):
                cgroup.rmdir()


@pytest.fixture(scope="module")
def panel(tmp_path_factory, docker_client, database):
    """A panel server for one test module, with users alice and bob."""
    namespace = f"sptest{secrets.token_hex(3)}"
    tmp = tmp_path_factory.mktemp("panel")
    server = start_panel(tmp, namespace, database_url=database.new_url())
    server.add_user("alice")
    server.add_user("bob")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def ssh_available() -> bool:
    return shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


def remove_images(docker_client, namespace: str) -> None:
    """Removes the images tagged under a test namespace."""
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{namespace}/"):
                docker_client.images.remove(tag, noprune=False)


@pytest.fixture
def limited_panel(tmp_path, docker_client, database):
    """Starts a panel with extra `SSHPANEL_*` settings and the user alice;
    stops it and removes what it made at the end of the test."""
    started = []

    def start(**env: str):
        namespace = f"sptest{secrets.token_hex(3)}"
        server = start_panel(tmp_path / namespace, namespace, env, database_url=database.new_url())
        started.append(server)
        server.add_user("alice")
        return server

    yield start
    for server in started:
        stop_panel(server)
        remove_namespace(docker_client, server.namespace)
        remove_images(docker_client, server.namespace)


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    """Polls `check()` every 0.1 s until it returns a true value, which is
    returned; raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
