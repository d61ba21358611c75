"""Invariant 1 (scope): bob can neither see nor touch alice's containers,
by name, by full ID or by any ID prefix; he always reads "not found"."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_IMAGE


@pytest.fixture(scope="module")
def alice_web(panel, docker_client):
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "web", TEST_IMAGE, "sleep", "600")
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.web")
    yield container
    panel.run(alice, "rm", "-f", "web")


def _refs(container) -> list[str]:
    full = container.id
    return ["web", full, f"{container.name}", *[full[:n] for n in range(1, 13)]]


def test_bob_does_not_see_alice_containers(panel, alice_web):
    bob = panel.users["bob"]
    listing = panel.run(bob, "ps", "-a", "--format", "json")
    assert listing.returncode == 0
    assert listing.stdout.strip() == ""
    assert alice_web.id[:12] not in panel.run(bob, "ps", "-a").stdout


@pytest.mark.parametrize("verb", ["stop", "start", "restart", "rm", "inspect"])
def test_bob_cannot_touch_alice_container(panel, alice_web, docker_client, verb):
    bob = panel.users["bob"]
    for ref in _refs(alice_web):
        args = [verb, "-f", ref] if verb == "rm" else [verb, ref]
        result = panel.run(bob, *args)
        assert result.returncode == 1, (ref, result.stdout)
        assert result.stderr.strip() == f"Error: no such container: {ref}", ref
        if verb == "inspect":
            assert alice_web.id not in result.stdout
    alice_web.reload()
    assert alice_web.status == "running"


def test_not_found_reads_the_same_as_someone_elses(panel, alice_web):
    bob = panel.users["bob"]
    missing = panel.run(bob, "stop", "nothing-here")
    theirs = panel.run(bob, "stop", "web")
    assert missing.stderr.replace("nothing-here", "X") == theirs.stderr.replace("web", "X")


def test_same_short_name_for_two_users(panel, alice_web, docker_client):
    bob = panel.users["bob"]
    result = panel.run(bob, "run", "--name", "web", TEST_IMAGE, "sleep", "600")
    assert result.returncode == 0, result.stderr
    bob_web = docker_client.containers.get(f"{panel.namespace}.bob.web")
    assert bob_web.id != alice_web.id
    assert panel.run(bob, "stop", "web").returncode == 0
    alice_web.reload()
    assert alice_web.status == "running"
    names = [json.loads(line)["ID"] for line in panel.run(bob, "ps", "-a", "--format", "json").stdout.splitlines()]
    assert names == [bob_web.id[:12]]
    panel.run(bob, "rm", "-f", "web")


def test_users_are_on_separate_networks(panel, alice_web, docker_client):
    bob = panel.users["bob"]
    assert panel.run(bob, "run", "--name", "probe", TEST_IMAGE, "sleep", "600").returncode == 0
    probe = docker_client.containers.get(f"{panel.namespace}.bob.probe")
    alice_nets = set(alice_web.attrs["NetworkSettings"]["Networks"])
    bob_nets = set(probe.attrs["NetworkSettings"]["Networks"])
    assert alice_nets == {f"{panel.namespace}.alice"}
    assert bob_nets == {f"{panel.namespace}.bob"}
    alice_ip = alice_web.attrs["NetworkSettings"]["Networks"][f"{panel.namespace}.alice"]["IPAddress"]
    reach = probe.exec_run(["ping", "-c", "1", "-W", "1", alice_ip])
    assert reach.exit_code != 0
    panel.run(bob, "rm", "-f", "probe")


def test_image_label_cannot_fake_ownership(panel, docker_client, tmp_path):
    """A Dockerfile LABEL claiming bob's ownership must not make the container bob's."""
    label = f"io.{panel.namespace}.owner"
    (tmp_path / "Dockerfile").write_text(f'FROM {TEST_IMAGE}\nLABEL {label}="bob"\n')
    tag = f"sptest-fake-owner:{panel.namespace}"
    docker_client.images.build(path=str(tmp_path), tag=tag)
    try:
        alice, bob = panel.users["alice"], panel.users["bob"]
        assert panel.run(alice, "create", "--name", "fake", tag).returncode == 0
        container = docker_client.containers.get(f"{panel.namespace}.alice.fake")
        assert container.labels[label] == "alice"
        assert panel.run(bob, "ps", "-a", "-q").stdout.strip() == ""
        assert panel.run(bob, "rm", "fake").returncode == 1
        panel.run(alice, "rm", "fake")
    finally:
        docker_client.images.remove(tag, force=True)
