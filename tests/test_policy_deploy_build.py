"""Container policy through `deploy`, `rollback`, `provision` and images the
user built themselves (docs/ARCHITECTURE.md invariant 2, issue 7): no flag of
deploy or provision loosens the policy, and a container deployed, rolled back,
or made from a Dockerfile that claims another owner (`LABEL`), root (`USER`),
volumes (`VOLUME`), ports (`EXPOSE`), a health check and a stop signal passes
`assert_hardened` on its `docker inspect`."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import TEST_IMAGE, ssh_available
from tests.hardening import assert_hardened, engine_defaults
from tests.test_deploy import build as build_tar, context, panel  # noqa: F401  (panel: deployments settle in 2 s)
from tests.test_policy_entry_points import FORBIDDEN_CREATE_FLAGS, PROBE

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

SERVE = '["sh", "-c", "trap \'exit 0\' TERM; while sleep 1; do :; done"]'
"""The image command: keeps running, exits on SIGTERM at once."""
IMAGE_VOLUMES = ("/x", "/var/run/docker.sock", "/host")
"""What `hostile_dockerfile` declares with `VOLUME`."""


@pytest.fixture(scope="module")
def defaults(docker_client) -> dict:
    return engine_defaults(docker_client, TEST_IMAGE)


def build(panel, user, name: str, dockerfile: str) -> subprocess.CompletedProcess:
    """`build NAME -` of a context holding only `dockerfile`."""
    return build_tar(panel, user, name, context({"Dockerfile": dockerfile}))


def hostile_dockerfile(base: str = TEST_IMAGE) -> str:
    """Everything a Dockerfile can declare that touches the runtime policy
    (labels apart: see `claim_labels`)."""
    return (
        f"FROM {base}\n"
        "USER root\n"
        f"VOLUME {IMAGE_VOLUMES[0]}\n"
        f"VOLUME {json.dumps(list(IMAGE_VOLUMES[1:]))}\n"
        "EXPOSE 80 53/udp\n"
        "HEALTHCHECK --interval=5s CMD true\n"
        "STOPSIGNAL SIGKILL\n"
        f"CMD {SERVE}\n"
    )


def claim_labels(namespace: str) -> str:
    """A Dockerfile `LABEL` line claiming bob's ownership and panel labels."""
    return f"LABEL io.{namespace}.owner=bob io.{namespace}.name=stolen io.{namespace}.x=y\n"


def _labelled(docker_client, panel) -> set[str]:
    label = f"io.{panel.namespace}.owner"
    return {c.id for c in docker_client.containers.list(all=True, filters={"label": label})}


def _inspect(docker_client, panel, owner: str, name: str) -> dict:
    return docker_client.api.inspect_container(f"{panel.namespace}.{owner}.{name}")


def assert_no_host_path(attrs: dict, docker_client) -> None:
    """No mount of the container is a host path: every one is a local volume
    the engine keeps under its own data root, without driver options."""
    root = docker_client.info()["DockerRootDir"]
    assert not attrs["HostConfig"].get("Binds")
    for mount in attrs["Mounts"]:
        assert mount["Type"] == "volume" and mount["Driver"] == "local", mount
        assert mount["Source"].startswith(f"{root}/volumes/{mount['Name']}/"), mount
        assert not docker_client.api.inspect_volume(mount["Name"]).get("Options"), mount


def test_deploy_and_provision_have_no_flag_that_loosens_the_policy(panel, docker_client):
    alice = panel.users["alice"]
    before = _labelled(docker_client, panel)
    raw = {**FORBIDDEN_CREATE_FLAGS, "user root": ["-u", "0"], "env": ["-e", "LD_PRELOAD=/x.so"],
           "memory": ["-m", "1g"], "publish": ["-p", "80:80"], "name": ["--name", "other"]}
    for case, flags in raw.items():
        for argv in (["deploy", *flags, "web"], ["deploy", "web", *flags], ["rollback", *flags, "web"],
                     ["provision", *flags, "web", "-"]):
            result = panel.run(alice, *argv, input=PROBE)
            assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (case, argv, result.stderr)
    assert _labelled(docker_client, panel) == before


def test_deployed_and_rolled_back_containers_are_hardened(panel, docker_client, defaults):
    alice = panel.users["alice"]
    for page in ("one", "two"):
        result = build(panel, alice, "site", f"FROM {TEST_IMAGE}\nRUN echo {page} > /page\nCMD {SERVE}\n")
        assert result.returncode == 0, result.stdout + result.stderr
    first = panel.run(alice, "deploy", "site", "--image", "1", timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert_hardened(_inspect(docker_client, panel, "alice", "site"), panel.namespace, "alice", defaults)
    second = panel.run(alice, "deploy", "site", timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    deployed = _inspect(docker_client, panel, "alice", "site")
    repository = f"{panel.namespace}/alice/site"
    assert deployed["Image"] == docker_client.images.get(f"{repository}:2").id
    assert_hardened(deployed, panel.namespace, "alice", defaults)
    back = panel.run(alice, "rollback", "site", timeout=120)
    assert back.returncode == 0, back.stdout + back.stderr
    rolled = _inspect(docker_client, panel, "alice", "site")
    assert rolled["Image"] == docker_client.images.get(f"{repository}:1").id
    assert_hardened(rolled, panel.namespace, "alice", defaults)
    assert panel.run(alice, "exec", "site", "cat", "/page").stdout.strip() == "one"
    assert panel.run(alice, "rm", "-f", "site").returncode == 0


def test_provision_as_root_keeps_the_restrictions(panel, docker_client, defaults):
    """`provision` has no user flag: scripts run as the image's user (root in
    most images), with the container's reduced capabilities and
    `no-new-privileges` (SECURITY.md 5.23: root inside is allowed)."""
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "box", TEST_IMAGE, "sleep", "600").returncode == 0
    try:
        result = panel.run(alice, "provision", "box", "-", input="#!/bin/sh\nid -u\n" + PROBE.split("\n", 1)[1])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "0"
        assert "NoNewPrivs:\t1" in result.stdout
        for escape in ("MKNOD-ALLOWED", "MOUNT-ALLOWED", "HOST-DEVICES"):
            assert escape not in result.stdout
        assert_hardened(_inspect(docker_client, panel, "alice", "box"), panel.namespace, "alice", defaults)
    finally:
        panel.run(alice, "rm", "-f", "box")


def test_build_refuses_labels_claiming_ownership(panel, docker_client):
    alice = panel.users["alice"]
    result = build(panel, alice, "claim", hostile_dockerfile() + claim_labels(panel.namespace))
    assert result.returncode == 1 and f"labels under io.{panel.namespace}. are reserved" in result.stderr, result.stderr
    assert docker_client.images.list(name=f"{panel.namespace}/alice/claim") == []


@pytest.mark.parametrize("entry", ["run", "deploy"])
def test_hostile_dockerfile_declarations_do_not_reach_the_container(panel, docker_client, defaults, tmp_path, entry):
    """`USER root`, `VOLUME`, `EXPOSE`, `HEALTHCHECK` and `STOPSIGNAL` in
    alice's own build, then a `LABEL` claiming bob's ownership on top (an
    image the build would refuse, tagged as her next build straight on the
    engine): the owner label is the server's, nothing is published, and the
    image's `VOLUME`s become anonymous local volumes in the engine's data
    root, never a host path, removed with the container."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    name = f"hostile{entry}"
    repository = f"{panel.namespace}/alice/{name}"
    result = build(panel, alice, name, hostile_dockerfile())
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "Dockerfile").write_text(f"FROM {repository}:1\n" + claim_labels(panel.namespace))
    docker_client.images.build(path=str(tmp_path), tag=f"{repository}:2")
    if entry == "run":
        made = panel.run(alice, "run", "--name", name, f"{repository}:2")
    else:
        made = panel.run(alice, "deploy", name, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    attrs = _inspect(docker_client, panel, "alice", name)
    assert attrs["Image"] == docker_client.images.get(f"{repository}:2").id
    labels = attrs["Config"]["Labels"]
    assert labels[f"io.{panel.namespace}.owner"] == "alice" and labels[f"io.{panel.namespace}.name"] == name
    assert_hardened(attrs, panel.namespace, "alice", defaults, image_volumes=IMAGE_VOLUMES)
    anonymous = [mount["Name"] for mount in attrs["Mounts"]]
    assert sorted(mount["Destination"] for mount in attrs["Mounts"]) == sorted(IMAGE_VOLUMES)
    assert_no_host_path(attrs, docker_client)
    assert not attrs["HostConfig"]["PortBindings"] and not attrs["NetworkSettings"]["Ports"].get("80/tcp")
    assert attrs["Config"]["User"] == "root"
    assert panel.run(alice, "exec", name, "test", "-S", "/var/run/docker.sock").returncode == 1
    assert name not in panel.run(bob, "ps", "-a").stdout
    assert panel.run(bob, "inspect", name).returncode == 1
    assert panel.run(alice, "rm", "-f", name).returncode == 0
    left = {volume.name for volume in docker_client.volumes.list()}
    assert not left & set(anonymous)


def test_numeric_from_is_checked_like_any_image_regression(panel, docker_client):
    """`FROM 31337` names the image `31337:latest` (only `--from=N` is a
    stage number): a denied image stays denied under a numeric name."""
    ada = panel.add_user("ada", admin=True)
    alice = panel.users["alice"]
    docker_client.images.get(TEST_IMAGE).tag("31337", "latest")
    try:
        assert panel.run(ada, "image", "deny", "31337:*").returncode == 0
        refused = build(panel, alice, "numeric", f"FROM 31337\nCMD {SERVE}\n")
        assert refused.returncode == 1 and "unknown image '31337'" in refused.stderr, refused.stdout + refused.stderr
        assert docker_client.images.list(name=f"{panel.namespace}/alice/numeric") == []
        staged = build(panel, alice, "numeric", f"FROM {TEST_IMAGE}\nFROM {TEST_IMAGE}\nCOPY --from=0 /bin/sh /sh\n")
        assert staged.returncode == 0, staged.stdout + staged.stderr
    finally:
        panel.run(ada, "image", "deny", "31337:*", "--rm")
        docker_client.images.remove("31337:latest")
