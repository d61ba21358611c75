"""Named volumes owned by the user: `volume ls|create|rm`, `run -v
VOLUME:/path`, never a host path, counted in the disk quota (issue 6)."""

from __future__ import annotations

import json
import secrets
import time

import pytest

from sshpanel.errors import InvalidValue
from sshpanel.access.spec import CreateRequest, spec_from_request
from tests.conftest import TEST_IMAGE, remove_namespace, ssh_available, start_panel, stop_panel

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")


def wait_logs(panel, user, name: str, needle: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        out = panel.run(user, "logs", name).stdout
        if needle in out or time.monotonic() > deadline:
            return out
        time.sleep(0.3)


def test_data_persists_across_containers(panel, docker_client):
    alice = panel.users["alice"]
    write = panel.run(alice, "run", "--name", "writer", "-v", "data:/data", TEST_IMAGE,
                      "sh", "-c", "echo kept > /data/file")
    assert write.returncode == 0, write.stderr
    wait_logs(panel, alice, "writer", "")
    deadline = time.monotonic() + 20
    while "Exited" not in panel.run(alice, "ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.3)
    assert panel.run(alice, "rm", "-f", "writer").returncode == 0
    read = panel.run(alice, "run", "--name", "reader", "-v", "data:/data:ro", TEST_IMAGE, "cat", "/data/file")
    assert read.returncode == 0, read.stderr
    assert "kept" in wait_logs(panel, alice, "reader", "kept")
    container = docker_client.containers.get(f"{panel.namespace}.alice.reader")
    mounts = container.attrs["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
        ("volume", f"{panel.namespace}.alice.data", "/data", False)]
    assert not container.attrs["HostConfig"].get("Binds")
    volume = docker_client.volumes.get(f"{panel.namespace}.alice.data")
    assert volume.attrs["Driver"] == "local" and not volume.attrs.get("Options")
    listed = panel.run(alice, "volume", "ls", "--format", "json").stdout
    assert [json.loads(line)["Name"] for line in listed.splitlines()] == ["data"]
    # In use: refused; after the container is gone: removed.
    busy = panel.run(alice, "volume", "rm", "data")
    assert busy.returncode == 1 and "in use" in busy.stderr
    panel.run(alice, "rm", "-f", "reader")
    assert panel.run(alice, "volume", "rm", "data").returncode == 0
    assert panel.run(alice, "volume", "ls", "--format", "json").stdout.strip() == ""


@pytest.mark.parametrize("mount", [
    "/etc:/x", "./x:/y", "../x:/y", "~/x:/y", "a/b:/y", "x:relative", "x:/", "x:/a/../b", "x:/y:rw:z",
    "x:/y:exec", "/var/run/docker.sock:/var/run/docker.sock", "x",
])
def test_host_paths_and_bad_mounts_are_refused(panel, docker_client, mount):
    alice = panel.users["alice"]
    before = docker_client.volumes.list(filters={"label": f"io.{panel.namespace}.owner=alice"})
    result = panel.run(alice, "run", "--name", "probe", "-v", mount, TEST_IMAGE, "true")
    assert result.returncode == 1, (mount, result.stderr)
    assert "probe" not in panel.run(alice, "ps", "-a").stdout
    after = docker_client.volumes.list(filters={"label": f"io.{panel.namespace}.owner=alice"})
    assert len(after) == len(before)


def test_other_users_volumes_are_invisible(panel, docker_client):
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "volume", "create", "private").returncode == 0
    assert "private" not in panel.run(bob, "volume", "ls").stdout
    assert panel.run(bob, "volume", "rm", "private").returncode == 1
    # bob's -v private:/x is his own (new, empty) volume, never alice's.
    assert panel.run(bob, "run", "--name", "peek", "-v", "private:/x", TEST_IMAGE, "true").returncode == 0
    mounts = docker_client.containers.get(f"{panel.namespace}.bob.peek").attrs["Mounts"]
    assert mounts[0]["Name"] == f"{panel.namespace}.bob.private"
    # A volume of that name that is not his (no owner label) reads as not found.
    docker_client.volumes.create(f"{panel.namespace}.bob.planted")
    planted = panel.run(bob, "run", "--name", "plant", "-v", "planted:/x", TEST_IMAGE, "true")
    assert planted.returncode == 1 and "no such volume" in planted.stderr
    assert panel.run(bob, "volume", "create", "planted").returncode == 1
    docker_client.volumes.get(f"{panel.namespace}.bob.planted").remove()
    assert panel.run(alice, "volume", "rm", "private").returncode == 0


@pytest.fixture()
def small_quota(tmp_path, docker_client):
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path, namespace, extra_env={"SSHPANEL_QUOTA_DISK": "100000"})
    server.add_user("carol")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def test_volumes_count_in_the_disk_quota(small_quota):
    panel = small_quota
    carol = panel.users["carol"]
    fill = panel.run(carol, "run", "--name", "fill", "-v", "big:/big", TEST_IMAGE,
                     "sh", "-c", "head -c 200000 /dev/zero > /big/blob")
    assert fill.returncode == 0, fill.stderr
    deadline = time.monotonic() + 20
    while "Exited" not in panel.run(carol, "ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.3)
    refused = panel.run(carol, "volume", "create", "more")
    assert refused.returncode == 1 and "disk quota" in refused.stderr
    again = panel.run(carol, "run", "--name", "again", "-v", "big:/big", TEST_IMAGE, "true")
    assert again.returncode == 1 and "disk quota" in again.stderr
    assert "more" not in panel.run(carol, "volume", "ls").stdout


@pytest.mark.parametrize("text", ["/:/host", "/var/run/docker.sock:/s", "./x:/y", "data:/data,../up:/z"])
def test_the_create_form_refuses_host_paths(text):
    with pytest.raises(InvalidValue, match="host paths are not allowed"):
        spec_from_request(CreateRequest(TEST_IMAGE, "web", memory="64m", cpus="0.5", volumes=text), "web", 64 << 20, 0.5)
