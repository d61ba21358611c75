"""The disk quota covers what a user holds on the engine too (issue 21):
the layers of their own builds (the base image not counted, a layer shared
by two builds counted once), their containers' writable layers, measured
at most once a minute (here every second) and shown by `quota`; `build`
and `deploy` are refused at the quota, and a container past it is stopped
with an event in its history. Real server, real engine."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_IMAGE, ssh_available
from tests.test_build import history, put_folder
from tests.test_templates import wait_for

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")
MIB = 1024 * 1024
LAYER = f"FROM {TEST_IMAGE}\nRUN dd if=/dev/zero of=/big bs=1024 count={{kib}} 2>/dev/null\n"


def quota(server, user) -> dict:
    result = server.run(user, "quota", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def measured_after(server, user, when: str | None) -> dict:
    """The `quota` figures once a measurement newer than `when` is stored."""
    return wait_for(lambda: (lambda q: q if q["DiskMeasuredAt"] and q["DiskMeasuredAt"] != when else None)(
        quota(server, user)), 30)


def test_build_layers_count_once_and_without_the_base(limited_panel):
    server = limited_panel(SSHPANEL_DISK_INTERVAL="1")
    alice = server.users["alice"]
    put_folder(server, "alice", "big", {"Dockerfile": LAYER.format(kib=3072)})
    assert server.run(alice, "build", "big", timeout=300).returncode == 0
    first = wait_for(lambda: (lambda q: q if q["DiskImages"] else None)(quota(server, alice)), 30)
    assert first, quota(server, alice)
    assert 3 * MIB <= first["DiskImages"] < 3 * MIB + 64 * 1024, first
    assert first["Disk"] >= first["DiskImages"] and first["MaxDisk"] == 1024 ** 3
    assert server.run(alice, "build", "big", timeout=300).returncode == 0  # big:2, the same cached layers
    later = measured_after(server, alice, measured_after(server, alice, None)["DiskMeasuredAt"])
    assert later["DiskImages"] == first["DiskImages"], later
    table = server.run(alice, "quota").stdout
    assert "disk" in table and "images" in table and "containers" in table


def test_build_and_deploy_are_refused_at_the_disk_quota(limited_panel):
    server = limited_panel(SSHPANEL_DISK_INTERVAL="1", SSHPANEL_QUOTA_DISK=str(4 * MIB))
    alice = server.users["alice"]
    put_folder(server, "alice", "huge", {"Dockerfile": LAYER.format(kib=5 * 1024)})
    built = server.run(alice, "build", "huge", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr  # there was room when it started
    again = server.run(alice, "build", "huge", timeout=300)
    assert again.returncode == 1 and "disk quota reached, build refused" in again.stderr, again.stderr
    deployed = server.run(alice, "deploy", "huge", timeout=120)
    assert deployed.returncode == 1 and "disk quota reached, deploy refused" in deployed.stderr, deployed.stderr
    removed = server.run(alice, "image", "rm", "huge:1")
    assert removed.returncode == 0 and f"Untagged: {server.namespace}/alice/huge:1" in removed.stdout, removed.stderr
    assert wait_for(lambda: quota(server, alice)["DiskImages"] == 0, 30)
    put_folder(server, "alice", "small", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN true\n"})
    assert server.run(alice, "build", "small", timeout=300).returncode == 0
    gone = server.run(alice, "image", "rm", "huge:1", f"{server.namespace}/bob/x:1", "nosuch")
    assert gone.returncode == 1 and gone.stderr.count("no such image") == 3, gone.stderr


def test_a_container_past_the_disk_quota_is_stopped_with_an_event(limited_panel, docker_client):
    server = limited_panel(SSHPANEL_DISK_INTERVAL="1", SSHPANEL_QUOTA_DISK=str(4 * MIB))
    alice = server.users["alice"]
    started = server.run(alice, "run", "-d", "--name", "filler", TEST_IMAGE, "sh", "-c",
                         "dd if=/dev/zero of=/fill bs=1024 count=6144 2>/dev/null; sleep 600")
    assert started.returncode == 0, started.stderr
    container = docker_client.containers.get(f"{server.namespace}.alice.filler")
    assert wait_for(lambda: (container.reload(), container.status)[1] == "exited", 60), container.status
    events = [e for e in history(server, alice) if e["Kind"] == "stop" and "disk quota exceeded" in e["Detail"]]
    assert len(events) == 1, history(server, alice)
    assert events[0]["OK"] is False
    assert quota(server, alice)["DiskContainers"] >= 6 * MIB
    # Nothing else of hers is touched: a container that writes nothing keeps running.
    assert server.run(alice, "run", "-d", "--name", "quiet", TEST_IMAGE, "sleep", "600").returncode == 0
    quiet = docker_client.containers.get(f"{server.namespace}.alice.quiet")
    measured_after(server, alice, measured_after(server, alice, None)["DiskMeasuredAt"])
    quiet.reload()
    assert quiet.status == "running"
