"""`deploy NAME` and `rollback NAME`: the newest build replaces the running
container with its configuration kept; a container that does not stay up is
replaced by the previous one again (issue 6)."""

from __future__ import annotations

import io
import json
import secrets
import socket
import subprocess
import tarfile
import time

import pytest

from tests.conftest import TEST_IMAGE, remove_namespace, ssh_available, start_panel, stop_panel

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

SERVE = '["httpd", "-f", "-p", "8080", "-h", "/www"]'


@pytest.fixture(scope="module")
def panel(tmp_path_factory, docker_client):
    """A panel whose deployments settle after 2 s, with alice and bob."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path_factory.mktemp("panel"), namespace, extra_env={"SSHPANEL_DEPLOY_SETTLE": "2"})
    server.add_user("alice")
    server.add_user("bob")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{namespace}/"):
                docker_client.images.remove(tag, noprune=False)


def context(files: dict[str, str]) -> bytes:
    """A tar build context holding `files`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def site(page: str, cmd: str = SERVE) -> bytes:
    return context({
        "Dockerfile": f"FROM {TEST_IMAGE}\nCOPY index.html /www/\nCMD {cmd}\n",
        "index.html": page + "\n",
    })


def build(panel, user, name: str, tar: bytes) -> subprocess.CompletedProcess:
    """`build NAME -` with `tar` on stdin (text output)."""
    result = subprocess.run([*panel.ssh_args(user), "--", "build", name, "-"],
                            input=tar, capture_output=True, timeout=300)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace"))


def fetch(panel, user, name: str) -> str:
    """The page `name` serves, fetched from the sibling container `sib`."""
    deadline = time.monotonic() + 20
    while True:
        result = panel.run(user, "exec", "sib", "wget", "-qO-", f"http://{name}:8080/")
        if result.returncode == 0 or time.monotonic() > deadline:
            return result.stdout.strip()
        time.sleep(0.3)


def history(panel, user) -> list[dict]:
    result = panel.run(user, "history", "--format", "json")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_deploy_replace_roll_back(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "-d", "--name", "sib", TEST_IMAGE, "sleep", "600").returncode == 0
    assert build(panel, alice, "web", site("first page")).returncode == 0
    assert panel.run(alice, "secret", "set", "web", "TOKEN", "-", input="kept-secret").returncode == 0
    first = panel.run(alice, "deploy", "web", timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "web runs" in first.stdout and f"{panel.namespace}/alice/web:1" in first.stdout
    assert fetch(panel, alice, "web") == "first page"
    # Configuration set on the container survives the next deployment.
    assert panel.run(alice, "update", "-m", "40m", "web").returncode == 0
    assert build(panel, alice, "web", site("second page")).returncode == 0
    second = panel.run(alice, "deploy", "web", timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert fetch(panel, alice, "web") == "second page"
    inspect = json.loads(panel.run(alice, "inspect", "web").stdout)
    inspect = inspect[0] if isinstance(inspect, list) else inspect
    assert inspect["HostConfig"]["Memory"] == 40 * 1024 * 1024
    assert "TOKEN=kept-secret" in panel.run(alice, "exec", "web", "env").stdout
    assert inspect["Config"]["Image"].endswith("web:2") or "web:2" in panel.run(alice, "ps").stdout
    # A build whose container exits at once is rolled back.
    assert build(panel, alice, "web", site("broken page", '["sh", "-c", "echo boom; exit 3"]')).returncode == 0
    broken = panel.run(alice, "deploy", "web", timeout=120)
    assert broken.returncode == 1
    assert "exited with code 3" in broken.stderr and "boom" in broken.stderr
    assert fetch(panel, alice, "web") == "second page"
    names = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"io.{panel.namespace}.owner=alice"})]
    assert sorted(names) == sorted([f"{panel.namespace}.alice.web", f"{panel.namespace}.alice.sib"])
    kinds = [(e["Kind"], e["OK"]) for e in history(panel, alice)]
    assert ("deploy", False) in kinds and ("deploy", True) in kinds
    # rollback deploys the image before the current one.
    back = panel.run(alice, "rollback", "web", timeout=120)
    assert back.returncode == 0, back.stdout + back.stderr
    assert fetch(panel, alice, "web") == "first page"


def test_broken_dockerfile_deploys_nothing(panel):
    alice = panel.users["alice"]
    before = panel.run(alice, "ps", "-a", "-q").stdout
    broken = build(panel, alice, "bad", context({"Dockerfile": f"FROM {TEST_IMAGE}\nRUN false\n"}))
    assert broken.returncode == 1
    assert "RUN false" in broken.stdout + broken.stderr
    result = panel.run(alice, "deploy", "bad")
    assert result.returncode == 1 and "no build of 'bad'" in result.stderr
    assert panel.run(alice, "ps", "-a", "-q").stdout == before


def test_other_users_cannot_deploy_or_use_images(panel):
    bob = panel.users["bob"]
    assert panel.run(bob, "deploy", "web").returncode == 1
    assert panel.run(bob, "deploy", "web", "--image", f"{panel.namespace}/alice/web:1").returncode == 1
    assert panel.run(bob, "rollback", "web").returncode == 1
    assert "web" not in panel.run(bob, "ps", "-a").stdout
    assert panel.run(bob, "deploy", "../x").returncode in (1, 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def labelled(docker_client, panel, user: str) -> list[str]:
    """Docker names of `user`'s containers on the engine."""
    return sorted(c.name for c in docker_client.containers.list(
        all=True, filters={"label": f"io.{panel.namespace}.owner={user}"}))


@pytest.fixture(scope="module")
def cara(panel):
    """A user allowed to publish one port (set by an admin)."""
    admin = panel.add_user("deployadmin", admin=True)
    user = panel.add_user("cara")
    port = free_port()
    quota = panel.run(admin, "user", "set-quota", "cara", "--ports", f"{port}-{port}")
    assert quota.returncode == 0, quota.stderr
    user.port = port
    return user


def test_replace_keeps_ports_volumes_and_restart_policy(panel, cara, docker_client):
    started = panel.run(cara, "run", "-d", "--name", "app", "-p", f"{cara.port}:8080", "-v", "appdata:/data",
                        "--restart", "always", TEST_IMAGE, "sh", "-c", "echo kept > /data/f; sleep 600")
    assert started.returncode == 0, started.stderr
    assert build(panel, cara, "app", site("app page")).returncode == 0
    deployed = panel.run(cara, "deploy", "app", timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    attrs = docker_client.containers.get(f"{panel.namespace}.cara.app").attrs
    assert attrs["Image"] == docker_client.images.get(f"{panel.namespace}/cara/app:1").id
    assert attrs["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(cara.port)}]}
    assert [(m["Name"], m["Destination"]) for m in attrs["Mounts"]] == [(f"{panel.namespace}.cara.appdata", "/data")]
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert panel.run(cara, "exec", "app", "cat", "/data/f").stdout.strip() == "kept"
    assert labelled(docker_client, panel, "cara") == [f"{panel.namespace}.cara.app"]


def test_a_restart_while_settling_fails_the_deploy(panel, cara, docker_client):
    """A container that crashes once and is restarted by its policy runs
    when looked at; the restart alone fails the deployment."""
    assert build(panel, cara, "loop", site("steady")).returncode == 0
    first = f"{panel.namespace}/cara/loop:1"
    assert panel.run(cara, "run", "-d", "--name", "loop", "--restart", "always", first).returncode == 0
    crash_once = ('["sh", "-c", "if [ ! -f /tmp/once ]; then touch /tmp/once; sleep 0.3; exit 4; fi; '
                  'exec httpd -f -p 8080 -h /www"]')
    assert build(panel, cara, "loop", site("crash once", crash_once)).returncode == 0
    result = panel.run(cara, "deploy", "loop", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "restarted 1 time while settling" in result.stderr, result.stderr
    attrs = docker_client.containers.get(f"{panel.namespace}.cara.loop").attrs
    assert attrs["Image"] == docker_client.images.get(first).id
    assert attrs["State"]["Running"]
    assert f"{panel.namespace}.cara.loop" in labelled(docker_client, panel, "cara")
    assert not [name for name in labelled(docker_client, panel, "cara") if "replaced" in name]
    panel.run(cara, "rm", "-f", "loop")


@pytest.mark.parametrize("name, cmd, why", [
    ("quick", '["sh", "-c", "echo bye; exit 3"]', "exited with code 3"),
    ("nostart", '["/no/such/program"]', "no/such/program"),
])
def test_a_failed_first_deploy_leaves_nothing_and_is_recorded(panel, cara, docker_client, name, cmd, why):
    assert build(panel, cara, name, site("never", cmd)).returncode == 0
    result = panel.run(cara, "deploy", name, timeout=120)
    assert result.returncode == 1 and why in result.stderr, result.stdout + result.stderr
    assert f"{panel.namespace}.cara.{name}" not in labelled(docker_client, panel, "cara")
    assert name not in panel.run(cara, "ps", "-a").stdout
    failed = [e for e in history(panel, cara) if e["Kind"] == "deploy" and not e["OK"]]
    assert any(why in e["Detail"] for e in failed), failed
    # Nothing half-deployed holds the name: the next good build deploys.
    assert build(panel, cara, name, site("now fine")).returncode == 0
    assert panel.run(cara, "deploy", name, timeout=120).returncode == 0
    panel.run(cara, "rm", "-f", name)


def test_secret_values_never_reach_the_history_of_a_failed_deploy_regression(panel, cara):
    """An app that prints its environment and exits: the log tail kept in
    the history has its secret values masked, and the database never holds
    them in clear."""
    value = "leaky-" + secrets.token_hex(8)
    assert panel.run(cara, "secret", "set", "leaky", "API_KEY", "-", input=value).returncode == 0
    assert build(panel, cara, "leaky", site("x", '["sh", "-c", "env; exit 1"]')).returncode == 0
    result = panel.run(cara, "deploy", "leaky", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "API_KEY=********" in result.stderr and value not in result.stderr
    details = [e["Detail"] for e in history(panel, cara) if e["Kind"] == "deploy"]
    assert any("API_KEY=********" in detail for detail in details), details
    assert not any(value in detail for detail in details)
    for path in panel.data_dir.rglob("*"):
        if path.is_file():
            assert value.encode() not in path.read_bytes(), path
