"""`deploy NAME` and `rollback NAME`: the newest build replaces the running
container with its configuration kept; a container that does not stay up is
replaced by the previous one again (issue 6)."""

from __future__ import annotations

import io
import json
import secrets
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
