"""Cross-tenant suite (issue 7, docs/ARCHITECTURE.md invariant 1): bob tries
every command on alice's container, script, key and image, by name, Docker
name, full ID and every ID prefix of length 1-12. Each answer must be exactly
the answer for something that never existed (the same exit status and text once
the reference is put in), and nothing of alice's may change."""

from __future__ import annotations

import re
import subprocess
from typing import Callable

import pytest

from tests.conftest import TEST_IMAGE
from tests.test_deploy import context

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
SCRIPT = "#!/bin/sh\necho provisioned\n"
NEVER = "never-existed"
"""A name no one ever used: the reference answer to compare with."""

CONTAINER_COMMANDS: dict[str, Callable[[str], list[str]]] = {
    "start": lambda ref: ["start", ref],
    "stop": lambda ref: ["stop", ref],
    "restart": lambda ref: ["restart", ref],
    "rm": lambda ref: ["rm", ref],
    "rm -f": lambda ref: ["rm", "-f", ref],
    "inspect": lambda ref: ["inspect", ref],
    "update": lambda ref: ["update", "-m", "512m", "--cpus", "1", "--restart", "always", ref],
    "logs": lambda ref: ["logs", "--tail", "5", ref],
    "stats": lambda ref: ["stats", "--no-stream", ref],
    "history": lambda ref: ["history", ref],
    "exec": lambda ref: ["exec", ref, "id"],
    "provision": lambda ref: ["provision", ref, "-"],
}
"""Every exec command that takes a container reference (`shell` needs a
terminal and is tested on its own)."""


@pytest.fixture(scope="module")
def alice_things(panel, docker_client, tmp_path_factory):
    """alice's running container, stored script and an image of her own,
    tagged under her namespace as a build of hers would be."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "web", TEST_IMAGE, *STOPPABLE)
    assert result.returncode == 0, result.stderr
    assert panel.run(alice, "script", "add", "setup", "-", input=SCRIPT).returncode == 0
    image = f"{panel.namespace}/alice/tool:v1"
    folder = tmp_path_factory.mktemp("alice-image")
    (folder / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nLABEL built-for={panel.namespace}-alice\n")
    docker_client.images.build(path=str(folder), tag=image)
    container = docker_client.containers.get(f"{panel.namespace}.alice.web")
    yield container, image
    panel.run(alice, "rm", "-f", "web")
    docker_client.images.remove(image, force=True)


@pytest.fixture(scope="module")
def bob_second_key(panel, tmp_path_factory):
    """bob gets a second key, so that `keys rm` reaches the key look-up
    (the last key is never removable)."""
    folder = tmp_path_factory.mktemp("bobkey")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "k")], check=True)
    result = panel.run(panel.users["bob"], "keys", "add", "-", input=(folder / "k.pub").read_text())
    assert result.returncode == 0, result.stderr


def _answer(panel, user, argv: list[str], input: str | None = None) -> tuple[int, str, str]:
    result = panel.run(user, *argv, input=input)
    return result.returncode, result.stdout, result.stderr


def _as_if(answer: tuple[int, str, str], placeholder: str, ref: str) -> tuple[int, str, str]:
    """The answer given for `placeholder`, with `ref` put in its place (as a
    whole word only: a one-digit placeholder also occurs inside the random
    namespace)."""
    code, out, err = answer
    word = re.compile(rf"(?<![0-9A-Za-z]){re.escape(placeholder)}(?![0-9A-Za-z])")
    return code, word.sub(ref, out), word.sub(ref, err)


def _refs(container) -> list[str]:
    return ["web", container.name, container.id, *[container.id[:n] for n in range(1, 13)]]


def _absent_hex(container, length: int) -> str:
    """A hex ID of `length` that is no prefix of alice's container."""
    first = "0" if container.id[0] != "0" else "1"
    return (first + "0123456789abcdef" * 4)[:length]


def _state(container) -> tuple:
    container.reload()
    host = container.attrs["HostConfig"]
    return (container.status, container.attrs["State"]["StartedAt"], container.attrs["RestartCount"],
            host["Memory"], host["NanoCpus"], host["RestartPolicy"]["Name"])


@pytest.mark.parametrize("command", list(CONTAINER_COMMANDS))
def test_bob_gets_not_found_for_alice_container(panel, alice_things, command):
    container, _ = alice_things
    bob = panel.users["bob"]
    argv = CONTAINER_COMMANDS[command]
    stdin = SCRIPT if command == "provision" else None
    before = _state(container)
    baselines = {
        "name": _answer(panel, bob, argv(NEVER), stdin),
        "hex": _answer(panel, bob, argv(_absent_hex(container, 12)), stdin),
        "id": _answer(panel, bob, argv(_absent_hex(container, 64)), stdin),
    }
    assert baselines["name"][0] == 1, baselines["name"]
    for ref in _refs(container):
        kind = "id" if len(ref) == 64 else "hex" if all(c in "0123456789abcdef" for c in ref) else "name"
        placeholder = {"name": NEVER, "hex": _absent_hex(container, 12), "id": _absent_hex(container, 64)}[kind]
        expected = _as_if(baselines[kind], placeholder, ref)
        assert _answer(panel, bob, argv(ref), stdin) == expected, (command, ref)
    assert _state(container) == before
    assert before[0] == "running"


def test_bob_shell_gets_not_found(panel, alice_things):
    container, _ = alice_things
    bob = panel.users["bob"]

    def shell(ref: str) -> tuple[int, str]:
        result = subprocess.run([*panel.ssh_args(bob, "-tt"), "--", "shell", ref], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        return result.returncode, result.stdout + result.stderr

    missing = shell(NEVER)
    assert missing[0] == 1 and "no such container" in missing[1]
    for ref in _refs(container):
        if all(c in "0123456789abcdef" for c in ref):
            placeholder = _absent_hex(container, len(ref))
            assert shell(ref) == (1, shell(placeholder)[1].replace(placeholder, ref)), ref
        else:
            assert shell(ref) == (1, missing[1].replace(NEVER, ref)), ref
    assert _state(container)[0] == "running"


def _without_other_panels(out: str, panel) -> str:
    """Drops the lines of images that other test panels built on the shared
    engine: to this panel they are ordinary images anyone may use."""
    return "\n".join(line for line in out.splitlines()
                     if not (re.search(r"sptest[0-9a-f]+/", line) and f"{panel.namespace}/" not in line))


def test_bob_does_not_see_alice_container_anywhere(panel, alice_things):
    container, image = alice_things
    bob = panel.users["bob"]
    for argv in (["ps", "-a"], ["ps", "-a", "-q"], ["ps", "-a", "--format", "json"], ["stats", "--no-stream"],
                 ["history"], ["history", "--daily"], ["images"], ["quota"], ["script", "ls"], ["keys", "ls"]):
        code, out, err = _answer(panel, bob, argv)
        assert code == 0, (argv, err)
        out = _without_other_panels(out, panel)
        for secret in ("web", container.id[:12], "alice", "setup", image.split(":")[0]):
            assert secret not in out, (argv, secret)


def test_bob_cannot_use_alice_script(panel, alice_things):
    bob = panel.users["bob"]
    for argv in (["script", "show", "{}"], ["script", "rm", "{}"]):
        missing = _answer(panel, bob, [part.replace("{}", NEVER) for part in argv])
        assert missing[0] == 1
        theirs = _answer(panel, bob, [part.replace("{}", "setup") for part in argv])
        assert theirs == _as_if(missing, NEVER, "setup"), argv
    assert panel.run(bob, "run", "--name", "mine", TEST_IMAGE, *STOPPABLE).returncode == 0
    try:
        missing = _answer(panel, bob, ["provision", "mine", NEVER])
        assert missing[0] == 1
        assert _answer(panel, bob, ["provision", "mine", "setup"]) == _as_if(missing, NEVER, "setup")
    finally:
        panel.run(bob, "rm", "-f", "mine")
    shown = panel.run(panel.users["alice"], "script", "show", "setup")
    assert shown.returncode == 0 and shown.stdout == SCRIPT


def test_bob_cannot_remove_alice_key(panel, alice_things, bob_second_key):
    alice, bob = panel.users["alice"], panel.users["bob"]
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(alice.pub)], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    never = "SHA256:" + "A" * 43
    missing = _answer(panel, bob, ["keys", "rm", never])
    assert missing[0] == 1
    assert _answer(panel, bob, ["keys", "rm", fingerprint]) == _as_if(missing, never, fingerprint)
    assert fingerprint in panel.run(alice, "keys", "ls").stdout
    assert panel.run(alice, "whoami").returncode == 0


def _absent_image_hex(docker_client, like: str) -> str:
    """A hex string of `like`'s length, all digits when `like` is (a number
    reads as a build number to `deploy --image`), that starts no image ID on
    the engine: a reference that never existed."""
    ids = [item["Id"].split(":")[1] for item in docker_client.api.images(all=True)]
    for digit in ("0123456789" if like.isdigit() else "abcdef"):
        candidate = digit * len(like)
        if not any(image_id.startswith(candidate) for image_id in ids):
            return candidate
    raise AssertionError(f"every {len(like)}-digit candidate starts an image ID")


def _build_answer(panel, user, ref: str) -> tuple[int, str, str]:
    """`build borrowed -` of a Dockerfile `FROM ref`."""
    result = subprocess.run([*panel.ssh_args(user), "--", "build", "borrowed", "-"],
                            input=context({"Dockerfile": f"FROM {ref}\nCMD [\"true\"]\n"}), capture_output=True, timeout=120)
    return result.returncode, result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")


IMAGE_USES: dict[str, Callable[[str], list[str]]] = {
    "run": lambda ref: ["run", "--name", "borrowed", ref],
    "create": lambda ref: ["create", "--name", "borrowed", ref],
    "deploy --image": lambda ref: ["deploy", "borrowed", "--image", ref],
}
"""Commands that take an image reference on the command line (a Dockerfile's
`FROM` is tried through `build`)."""


@pytest.mark.parametrize("use", [*IMAGE_USES, "build FROM"])
def test_bob_cannot_use_alice_image(panel, alice_things, docker_client, use):
    """By tag, by full image ID (with and without `sha256:`) and by every ID
    prefix of length 1-12 (the engine resolves short prefixes too)."""
    _, image = alice_things
    bob = panel.users["bob"]
    image_id = docker_client.images.get(image).id
    digest = image_id.split(":")[1]
    absent = ("0" if digest[0] != "0" else "1") + "f" * 63
    refs = {image: f"{panel.namespace}/alice/never:v1", image_id: f"sha256:{absent}", digest: absent}
    refs.update({digest[:n]: _absent_image_hex(docker_client, digest[:n]) for n in range(1, 13)})

    def answer(ref: str) -> tuple[int, str, str]:
        return _build_answer(panel, bob, ref) if use == "build FROM" else _answer(panel, bob, IMAGE_USES[use](ref))

    for ref, never in refs.items():
        missing = answer(never)
        assert missing[0] == 1 and "unknown image" in missing[2], (ref, missing)
        assert answer(ref) == _as_if(missing, never, ref), ref
    assert panel.run(bob, "ps", "-a", "-q").stdout.strip() == ""
    assert docker_client.images.list(name=f"{panel.namespace}/bob/borrowed") == []
    assert panel.run(panel.users["alice"], "create", "--name", "tool", image).returncode == 0
    assert panel.run(panel.users["alice"], "rm", "tool").returncode == 0


def test_bob_does_not_list_alice_image(panel, alice_things, docker_client):
    _, image = alice_things
    digest = docker_client.images.get(image).id.split(":")[1]
    for argv in (["images"], ["images", "--format", "json"], ["image", "ls"], ["image", "ls", "--format", "json"]):
        code, out, err = _answer(panel, panel.users["bob"], argv)
        assert code == 0, (argv, err)
        out = _without_other_panels(out, panel)
        assert image.split(":")[0] not in out and digest[:12] not in out and "alice" not in out, argv


def test_bob_deploy_and_rollback_read_like_not_found(panel, alice_things):
    """alice has builds of `tool` and a container `web`; bob's answers for
    those names are his answers for names that never existed."""
    bob = panel.users["bob"]
    for argv in (["deploy", "{}"], ["rollback", "{}"], ["deploy", "{}", "--image", "1"]):
        missing = _answer(panel, bob, [part.replace("{}", NEVER) for part in argv])
        assert missing[0] == 1, (argv, missing)
        for ref in ("tool", "web"):
            assert _answer(panel, bob, [part.replace("{}", ref) for part in argv]) == _as_if(missing, NEVER, ref), argv
    assert panel.run(bob, "ps", "-a", "-q").stdout.strip() == ""


@pytest.fixture(scope="module")
def alice_volume(panel, docker_client):
    """alice's named volume `data`, with a file in it."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "writer", "-v", "data:/data", TEST_IMAGE, "sh", "-c", "echo mine > /data/f")
    assert result.returncode == 0, result.stderr
    assert panel.run(alice, "rm", "-f", "writer").returncode == 0
    yield docker_client.volumes.get(f"{panel.namespace}.alice.data")
    panel.run(alice, "volume", "rm", "data")


def test_bob_volume_refusals_read_like_not_found(panel, alice_volume):
    bob = panel.users["bob"]
    missing = _answer(panel, bob, ["volume", "rm", NEVER])
    assert missing[0] == 1 and "no such volume" in missing[2]
    for ref in ("data", alice_volume.name):
        assert _answer(panel, bob, ["volume", "rm", ref]) == _as_if(missing, NEVER, ref), ref
    listed = panel.run(bob, "volume", "ls").stdout
    assert "data" not in listed and "alice" not in listed
    alice_volume.reload()
    assert alice_volume.attrs["Labels"][f"io.{panel.namespace}.owner"] == "alice"


def test_bob_mounting_data_or_alice_volume_name_gets_his_own_volume(panel, alice_volume, docker_client):
    """`-v data:/x` and `-v <alice's Docker volume name>:/x` name bob's own
    volumes (created empty, as `docker run -v` does), never alice's."""
    bob = panel.users["bob"]
    for ref in ("data", alice_volume.name):
        result = panel.run(bob, "run", "--name", "peek", "-v", f"{ref}:/x", TEST_IMAGE, "sh", "-c", "ls -A /x")
        try:
            assert result.returncode == 0, result.stderr
            attrs = docker_client.api.inspect_container(f"{panel.namespace}.bob.peek")
            assert [m["Name"] for m in attrs["Mounts"]] == [f"{panel.namespace}.bob.{ref}"]
            assert panel.run(bob, "logs", "peek").stdout.strip() == ""
        finally:
            panel.run(bob, "rm", "-f", "peek")
            panel.run(bob, "volume", "rm", ref)


def test_bound_volume_with_bob_label_is_refused_regression(panel, docker_client):
    """A local volume with `o=bind` is a host path (CIS 5.5): one planted on
    the engine with bob's owner label and Docker name is not his to mount."""
    bob = panel.users["bob"]
    planted = docker_client.volumes.create(
        f"{panel.namespace}.bob.etc", driver="local", driver_opts={"type": "none", "o": "bind", "device": "/etc"},
        labels={f"io.{panel.namespace}.owner": "bob"},
    )
    try:
        before = panel.run(bob, "ps", "-a", "-q").stdout
        for verb in ("run", "create"):
            result = panel.run(bob, verb, "--name", "bound", "-v", "etc:/x", TEST_IMAGE, "cat", "/x/shadow")
            assert result.returncode == 1 and result.stderr == "Error: no such volume: etc\n", result.stderr
        assert _answer(panel, bob, ["volume", "rm", "etc"])[2] == "Error: no such volume: etc\n"
        assert _answer(panel, bob, ["volume", "create", "etc"])[2] == "Error: no such volume: etc\n"
        assert "etc" not in panel.run(bob, "volume", "ls").stdout
        assert panel.run(bob, "ps", "-a", "-q").stdout == before
    finally:
        panel.run(bob, "rm", "-f", "bound")
        planted.remove(force=True)


NETWORK_FLAGS = (["--network", "{}"], ["--network={}"], ["--net", "{}"], ["--net={}"], ["--link", "{}:db"],
                 ["--network-alias", "{}"], ["--ip", "10.0.0.2"], ["--dns", "1.1.1.1"], ["--add-host", "x:{}"])
"""docker run's network options: none exists on the panel."""


def test_bob_cannot_name_alice_network(panel, alice_things, docker_client):
    """No network option exists; alice's network name and ID read like names
    that never existed; bob's containers are only on his own network."""
    container, _ = alice_things
    bob = panel.users["bob"]
    network = docker_client.networks.get(f"{panel.namespace}.alice")
    for verb in ("run", "create"):
        for flags in NETWORK_FLAGS:
            argv = [verb, "--name", "net", *[part.replace("{}", network.name) for part in flags], TEST_IMAGE]
            result = panel.run(bob, *argv)
            assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (argv, result.stderr)
    for argv in (["inspect", "{}"], ["rm", "{}"], ["stop", "{}"], ["volume", "rm", "{}"]):
        missing = _answer(panel, bob, [part.replace("{}", NEVER) for part in argv])
        for ref in (network.name, network.id, network.id[:12]):
            if argv[0] == "volume" and len(ref) > 63:
                continue  # longer than any volume name: a usage error, whatever it names
            expected = _as_if(missing, NEVER, ref)
            if all(c in "0123456789abcdef" for c in ref) and argv[0] != "volume":
                placeholder = _absent_hex(container, len(ref))
                expected = _as_if(_answer(panel, bob, [part.replace("{}", placeholder) for part in argv]),
                                  placeholder, ref)
            assert _answer(panel, bob, [part.replace("{}", ref) for part in argv]) == expected, (argv, ref)
    assert panel.run(bob, "run", "--name", "mine", TEST_IMAGE, *STOPPABLE).returncode == 0
    try:
        attrs = docker_client.api.inspect_container(f"{panel.namespace}.bob.mine")
        assert set(attrs["NetworkSettings"]["Networks"]) == {f"{panel.namespace}.bob"}
        network.reload()
        assert set(network.attrs["Containers"] or {}) == {container.id}
        ping = panel.run(bob, "exec", "mine", "ping", "-c", "1", "-W", "1", container.attrs["Config"]["Hostname"])
        assert ping.returncode != 0
    finally:
        panel.run(bob, "rm", "-f", "mine")


def test_there_is_no_label_flag(panel, docker_client):
    """Ownership labels are the server's alone: no label flag exists at all."""
    bob = panel.users["bob"]
    for flags in (["--label", f"io.{panel.namespace}.owner=alice"], [f"--label=io.{panel.namespace}.owner=alice"],
                  ["-l", "x=y"], ["--label-file", "/etc/passwd"]):
        for verb in ("run", "create"):
            result = panel.run(bob, verb, "--name", "labelled", *flags, TEST_IMAGE)
            assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (flags, result.stderr)
    label = f"io.{panel.namespace}.owner"
    assert docker_client.containers.list(all=True, filters={"label": f"{label}=bob"}) == []
