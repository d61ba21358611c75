"""The admin's image allow-list (issue 6 "Allowed base images"): `image
allow|deny [--rm] PATTERN`, `image ls`, applied to `run`/`create` and to
`FROM` lines of builds; untagged images are refused by ID. Another user's
build by tag or ID is covered in tests/test_cross_tenant.py."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_IMAGE, ssh_available
from tests.test_build import put_folder, tags

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

ALIAS = "busybox:latest"


@pytest.fixture(scope="module")
def admin(panel):
    return panel.add_user("root", admin=True)


@pytest.fixture(scope="module", autouse=True)
def _cleanup(panel, docker_client):
    """Removes the builds of this module and the `busybox:latest` alias when
    this module made it."""
    made_alias = not docker_client.images.list(name="busybox")
    yield
    for image in docker_client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{panel.namespace}/") or (made_alias and tag == ALIAS):
                docker_client.images.remove(tag, noprune=False)


@pytest.fixture
def rules(panel, admin):
    """Adds rules through the admin's commands and removes them afterwards."""
    added: list[tuple[str, str]] = []

    def add(kind: str, pattern: str) -> None:
        result = panel.run(admin, "image", kind, pattern)
        assert result.returncode == 0, result.stderr
        added.append((kind, pattern))

    yield add
    for kind, pattern in added:
        assert panel.run(admin, "image", kind, "--rm", pattern).returncode == 0


def refused(result) -> bool:
    return result.returncode == 1 and "not allowed: ask your admin" in result.stderr


def test_no_rules_every_image_is_usable(panel, admin):
    alice = panel.users["alice"]
    listed = panel.run(alice, "image", "ls")
    assert listed.returncode == 0 and TEST_IMAGE.split(":")[0] in listed.stdout
    assert "RULE" not in listed.stdout
    shown = panel.run(admin, "image", "ls")
    assert "every image on the engine may be used" in shown.stdout
    assert panel.run(alice, "create", "--name", "plain", TEST_IMAGE).returncode == 0
    assert panel.run(alice, "rm", "plain").returncode == 0


def test_allow_rule_limits_run_and_from_but_not_own_builds(panel, admin, rules, docker_client):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "own", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN echo own > /own\n"})
    assert panel.run(alice, "build", "own", timeout=300).returncode == 0
    own = f"{panel.namespace}/alice/own:1"
    docker_client.images.get(TEST_IMAGE).tag(ALIAS)
    rules("allow", "busybox:*")

    for verb in ("run", "create"):
        assert refused(panel.run(alice, verb, "--name", "nope", TEST_IMAGE)), verb
    image_id = docker_client.images.get(TEST_IMAGE).id
    assert panel.run(alice, "create", "--name", "byid", image_id).returncode == 0  # also tagged busybox:latest
    assert panel.run(alice, "create", "--name", "alias", ALIAS).returncode == 0
    assert panel.run(alice, "create", "--name", "mine", own).returncode == 0
    for name in ("byid", "alias", "mine"):
        assert panel.run(alice, "rm", name).returncode == 0

    put_folder(panel, "alice", "frombase", {"Dockerfile": f"FROM {TEST_IMAGE}\n"})
    result = panel.run(alice, "build", "frombase", timeout=300)
    assert refused(result), result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/frombase") == []
    put_folder(panel, "alice", "copyfrom", {"Dockerfile": f"FROM {ALIAS}\nCOPY --from={TEST_IMAGE} /bin/sh /x\n"})
    assert refused(panel.run(alice, "build", "copyfrom", timeout=300))
    put_folder(panel, "alice", "fromown", {"Dockerfile": f"FROM {own}\nRUN test -f /own\n"})
    built = panel.run(alice, "build", "fromown", timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr

    listed = [json.loads(line) for line in panel.run(alice, "image", "ls", "--format", "json").stdout.splitlines()]
    shown = {f"{item['Repository']}:{item['Tag']}" for item in listed}
    assert ALIAS in shown and own in shown and TEST_IMAGE not in shown
    assert "Rule" not in json.dumps(listed)
    assert TEST_IMAGE not in panel.run(alice, "images").stdout
    admin_view = panel.run(admin, "image", "ls").stdout
    assert "RULE" in admin_view and "busybox:*" in admin_view


def test_deny_wins_over_allow(panel, rules, docker_client):
    alice = panel.users["alice"]
    docker_client.images.get(TEST_IMAGE).tag(ALIAS)
    rules("allow", "busybox:*")
    rules("deny", "busybox:late?t")
    assert refused(panel.run(alice, "create", "--name", "nope", ALIAS))
    assert refused(panel.run(alice, "create", "--name", "nope", "busybox"))
    assert refused(panel.run(alice, "create", "--name", "nope", docker_client.images.get(ALIAS).id))


def test_deny_alone_leaves_the_rest_usable(panel, rules, docker_client):
    alice = panel.users["alice"]
    rules("deny", "sshpanel-test/*")
    assert refused(panel.run(alice, "create", "--name", "nope", TEST_IMAGE))
    docker_client.images.get(TEST_IMAGE).tag(ALIAS)
    assert panel.run(alice, "create", "--name", "other", ALIAS).returncode == 0
    assert panel.run(alice, "rm", "other").returncode == 0


def test_untagged_image_by_id_is_refused_regression(panel, docker_client):
    alice = panel.users["alice"]
    container = docker_client.containers.create(TEST_IMAGE, ["true"])
    try:
        image = container.commit(changes=["LABEL untagged=yes"])
    finally:
        container.remove(force=True)
    try:
        assert image.tags == []
        digest = image.id.split(":")[1]
        for ref in (image.id, digest, digest[:12]):
            result = panel.run(alice, "create", "--name", "ghost", ref)
            assert refused(result), (ref, result.stderr)
        put_folder(panel, "alice", "ghostbase", {"Dockerfile": f"FROM {image.id}\n"})
        assert refused(panel.run(alice, "build", "ghostbase", timeout=300))
    finally:
        docker_client.images.remove(image.id, force=True)


def test_only_admins_change_rules_and_refusals_are_audited(panel, admin):
    bob = panel.users["bob"]
    for argv in (["image", "allow", "busybox:*"], ["image", "deny", "*"], ["image", "deny", "--rm", "*"]):
        result = panel.run(bob, *argv)
        assert result.returncode == 1 and "permission denied" in result.stderr, argv
    assert "RULE" not in panel.run(bob, "image", "ls").stdout
    assert "every image" in panel.run(admin, "image", "ls").stdout
    audit = panel.run(admin, "audit", "--user", "bob", "--format", "json").stdout
    entries = [json.loads(line) for line in audit.splitlines()]
    assert any(e.get("Action", e.get("action")) == "image.allow" for e in entries), entries


def test_bad_patterns_and_missing_rules(panel, admin):
    for pattern in ("busy\x01box", "x" * 300, "a b", "é*"):
        result = panel.run(admin, "image", "allow", pattern)
        assert result.returncode == 1 and "invalid image pattern" in result.stderr, pattern
    missing = panel.run(admin, "image", "allow", "--rm", "never:*")
    assert missing.returncode == 1 and "no allow rule" in missing.stderr
    assert panel.run(admin, "image", "allow", "x:*").returncode == 0
    again = panel.run(admin, "image", "allow", "x:*")
    assert again.returncode == 0 and "already exists" in again.stdout
    assert panel.run(admin, "image", "allow", "--rm", "x:*").returncode == 0
    assert panel.run(admin, "image", "bogus", "x").returncode == 2
