"""`build NAME [DIR|-]`: images from an uploaded folder or a tar on stdin,
tagged under the user's own repository, safely (issue 6)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time

import pytest

from tests.conftest import TEST_IMAGE, ssh_available

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")


def put_folder(panel, user: str, folder: str, files: dict[str, str]) -> None:
    """Writes a folder into the user's home as an SFTP upload would."""
    root = panel.data_dir / "homes" / user / folder
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)


def tags(docker_client, repository: str) -> list[str]:
    return [t for image in docker_client.images.list(name=repository) for t in image.tags
            if t.rpartition(":")[0] == repository]


@pytest.fixture(scope="module", autouse=True)
def _remove_built_images(panel, docker_client):
    """Removes the images this module's builds tagged."""
    yield
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{panel.namespace}/"):
                docker_client.images.remove(tag, noprune=False)


def history(panel, user) -> list[dict]:
    result = panel.run(user, "history", "--format", "json")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_build_from_folder_then_run(panel, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "site", {
        "Dockerfile": f"FROM {TEST_IMAGE}\nCOPY index.html /www/\n",
        "index.html": "hello from the build\n",
    })
    result = panel.run(alice, "build", "site", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    repository = f"{panel.namespace}/alice/site"
    assert f"Successfully tagged {repository}:1" in result.stdout
    assert "Step 3/3" in result.stdout and "Step 2/3 : ARG SSHPANEL_CACHE_OWNER_" in result.stdout
    again = panel.run(alice, "build", "site", timeout=300)
    assert f"{repository}:2" in again.stdout, again.stdout + again.stderr
    run = panel.run(alice, "run", "--name", "built", f"{repository}:2", "cat", "/www/index.html")
    assert run.returncode == 0, run.stderr
    deadline = time.monotonic() + 30
    while True:
        logs = panel.run(alice, "logs", "built")
        if "hello from the build" in logs.stdout or time.monotonic() > deadline:
            break
    assert "hello from the build" in logs.stdout
    panel.run(alice, "rm", "-f", "built")
    # Another user's view never shows alice's images, and bob cannot run them.
    bob = panel.users["bob"]
    assert repository not in panel.run(bob, "images").stdout
    assert panel.run(bob, "run", f"{repository}:1").returncode == 1


def test_broken_dockerfile_fails_with_log_tail_and_no_tag(panel, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "broken", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN exit 3\n"})
    result = panel.run(alice, "build", "broken", timeout=300)
    assert result.returncode == 1
    assert "RUN exit 3" in result.stdout
    assert "Error:" in result.stderr and "returned a non-zero code: 3" in result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/broken") == []
    [failed] = [e for e in history(panel, alice) if e["Kind"] == "build" and e["Detail"].startswith("broken ")]
    assert failed["OK"] is False
    assert "returned a non-zero code: 3" in failed["Detail"].splitlines()[0]
    assert "Step 3/3 : RUN exit 3" in failed["Detail"].splitlines()[1:]


def test_missing_dockerfile_and_bad_paths(panel):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "nodockerfile", {"notes.txt": "x"})
    result = panel.run(alice, "build", "web", "nodockerfile")
    assert result.returncode == 1 and "no template fits" in result.stderr, result.stderr
    assert "python, static" in result.stderr
    for source in ("../bob", "/etc", "missing"):
        result = panel.run(alice, "build", "web", source)
        assert result.returncode == 1, source
    assert panel.run(alice, "build", "Bad/Name").returncode == 1


def test_ownership_label_is_refused_regression(panel, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "labelled", {
        "Dockerfile": f"FROM {TEST_IMAGE}\nLABEL io.{panel.namespace}.owner=bob\n",
    })
    result = panel.run(alice, "build", "labelled", timeout=300)
    assert result.returncode == 1
    assert "reserved" in result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/labelled") == []


def test_other_users_image_as_base_is_refused_regression(panel, docker_client):
    bob = panel.users["bob"]
    put_folder(panel, "bob", "steal", {"Dockerfile": f"FROM {panel.namespace}/alice/site:1\n"})
    result = panel.run(bob, "build", "steal", timeout=300)
    assert result.returncode == 1
    assert tags(docker_client, f"{panel.namespace}/bob/steal") == []


def test_build_has_no_network(panel):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "net", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN ls /sys/class/net && test -e /sys/class/net/lo && test ! -e /sys/class/net/eth0\n"})
    result = panel.run(alice, "build", "net", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_from_tar_on_stdin(panel, docker_client):
    bob = panel.users["bob"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("Dockerfile", f"FROM {TEST_IMAGE}\nCOPY blob /blob\n".encode()),
                           ("blob", bytes(range(256)) * 4)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = subprocess.run(
        [*panel.ssh_args(bob), "--", "build", "fromtar", "-"],
        input=buffer.getvalue(), capture_output=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    repository = f"{panel.namespace}/bob/fromtar"
    assert tags(docker_client, repository) == [f"{repository}:1"]
    output = docker_client.containers.run(f"{repository}:1", ["md5sum", "/blob"], remove=True)
    assert hashlib.md5(bytes(range(256)) * 4).hexdigest().encode() in output
