"""Container policy through every entry point
(docs/ARCHITECTURE.md invariant 2, issue 7): no flag of
`run`/`create`/`update`/`exec`/`shell`/`provision` and no field of the TUI
create form can ask Docker for privileged mode, capabilities, devices, host
paths, host or `container:` namespaces, security-opt overrides, sysctls, a
cgroup parent, a runtime, OOM-kill off, ulimits, links, labels or ports outside
the user's range; and `docker inspect` of what the panel did create shows the
hardening applied."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import subprocess
import tarfile

import pytest
from textual.app import App
from textual.widgets import Input, Select, TextArea

from sshpanel.access.principal import Principal
from sshpanel.access.spec import spec_from_request
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import load_settings
from sshpanel.errors import NotFound
from sshpanel.ssh.commands import build_parser
from sshpanel.store import open_store
from sshpanel.tui.screens.create import CreateContainerModal, NewContainer
from tests.conftest import TEST_IMAGE
from tests.hardening import (
    DOCKER_DEFAULT_CAP_MASK,
    EXPECTED_CAP_MASK,
    assert_hardened,
    capability_mask,
    engine_defaults,
)

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
"""Exits on SIGTERM at once (a bare `sleep` as PID 1 makes every stop wait 10 s)."""

FORBIDDEN_CREATE_FLAGS = {
    "privileged": ["--privileged"],
    "privileged=true": ["--privileged=true"],
    "cap-add": ["--cap-add", "SYS_ADMIN"],
    "cap-add=ALL": ["--cap-add=ALL"],
    "device": ["--device", "/dev/mem"],
    "device-request": ["--gpus", "all"],
    "device-cgroup-rule": ["--device-cgroup-rule", "a *:* rwm"],
    "bind -v": ["-v", "/:/host"],
    "bind --volume": ["--volume=/var/run/docker.sock:/var/run/docker.sock"],
    "mount bind": ["--mount", "type=bind,source=/,target=/host"],
    "volume o=bind": ["--mount", "type=volume,source=v,target=/d,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/"],
    "tmpfs": ["--tmpfs", "/run:exec"],
    "volumes-from": ["--volumes-from", "other"],
    "network host": ["--network", "host"],
    "net=host": ["--net=host"],
    "network container": ["--network", "container:other"],
    "pid host": ["--pid", "host"],
    "pid container": ["--pid=container:other"],
    "ipc host": ["--ipc", "host"],
    "uts host": ["--uts", "host"],
    "userns host": ["--userns", "host"],
    "cgroupns host": ["--cgroupns", "host"],
    "seccomp unconfined": ["--security-opt", "seccomp=unconfined"],
    "apparmor unconfined": ["--security-opt", "apparmor=unconfined"],
    "label disable": ["--security-opt", "label=disable"],
    "sysctl": ["--sysctl", "net.ipv4.ip_forward=1"],
    "cgroup-parent": ["--cgroup-parent", "/"],
    "runtime": ["--runtime", "runc"],
    "oom-kill-disable": ["--oom-kill-disable"],
    "ulimit": ["--ulimit", "nofile=1048576:1048576"],
    "link": ["--link", "other:db"],
    "publish-all -P": ["-P"],
    "publish-all": ["--publish-all"],
    "label": ["--label", "io.sshpanel.owner=bob"],
    "label -l": ["-l", "x=y"],
    "memory-swap": ["--memory-swap", "-1"],
    "pids-limit": ["--pids-limit", "-1"],
    "cpu-shares": ["--cpu-shares", "262144"],
    "cap-drop": ["--cap-drop", "ALL"],
}
"""docker run flags that would loosen the policy; none exists on the panel."""

FORBIDDEN_UPDATE_FLAGS = {
    "privileged": ["--privileged"],
    "cap-add": ["--cap-add", "SYS_ADMIN"],
    "pids-limit": ["--pids-limit", "-1"],
    "memory-swap": ["--memory-swap", "-1"],
    "kernel-memory": ["--kernel-memory", "0"],
    "cpuset-cpus": ["--cpuset-cpus", "0"],
    "cpu-shares": ["--cpu-shares", "262144"],
    "cpu-quota": ["--cpu-quota", "-1"],
    "blkio-weight": ["--blkio-weight", "1000"],
    "device": ["--device", "/dev/mem"],
    "ulimit": ["--ulimit", "nofile=1048576"],
}
"""docker update flags; the panel's update has only -m, --cpus and --restart."""

FORBIDDEN_EXEC_FLAGS = {
    "privileged": ["--privileged"],
    "env": ["-e", "LD_PRELOAD=/x.so"],
    "env-file": ["--env-file", "/etc/passwd"],
    "workdir": ["-w", "/"],
    "detach": ["-d"],
    "detach-keys": ["--detach-keys", "ctrl-a"],
}
"""docker exec flags the panel's exec does not have."""

PROBE = """#!/bin/sh
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
mknod /tmp/probe-node c 1 3 2>/dev/null && echo MKNOD-ALLOWED
mount -t tmpfs none /mnt 2>/dev/null && echo MOUNT-ALLOWED
ls /dev/mem /dev/sda 2>/dev/null && echo HOST-DEVICES
exit 0
"""
"""Reports, from inside a container, what a process there may do."""

PROBE_LINES = (
    "grep -E \"^(CapEff|CapBnd):\" /proc/self/status; "
    "mount -t tmpfs none /mnt 2>/dev/null && echo MOUNT-ALLOWED; "
    "ls /dev/mem /dev/sda 2>/dev/null && echo HOST-DEVICES; true"
)
"""The same probe as one shell line, for a Dockerfile `RUN` step."""


@pytest.fixture(scope="module")
def ada(panel):
    """The admin who gives alice a host port range."""
    return panel.add_user("ada", admin=True)


@pytest.fixture(scope="module")
def port_range(panel, ada) -> tuple[int, int]:
    """A host port range for alice, apart from other modules' ranges."""
    low = 25000 + secrets.randbelow(300) * 10
    result = panel.run(ada, "user", "set-quota", "alice", "--ports", f"{low}-{low + 9}")
    assert result.returncode == 0, result.stderr
    return low, low + 9


@pytest.fixture(scope="module")
def defaults(docker_client) -> dict:
    return engine_defaults(docker_client, TEST_IMAGE)


@pytest.fixture(scope="module")
def web(panel, docker_client, port_range):
    """alice's running container, with one published port."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "web", "-p", f"{port_range[0]}:80", TEST_IMAGE, *STOPPABLE)
    assert result.returncode == 0, result.stderr
    yield docker_client.containers.get(f"{panel.namespace}.alice.web")
    panel.run(alice, "rm", "-f", "web")


def _labelled(docker_client, panel) -> set[str]:
    label = f"io.{panel.namespace}.owner"
    return {c.id for c in docker_client.containers.list(all=True, filters={"label": label})}


@pytest.mark.parametrize("verb", ["run", "create"])
def test_no_create_flag_loosens_the_policy(panel, docker_client, verb):
    alice = panel.users["alice"]
    before = _labelled(docker_client, panel)
    for case, flags in FORBIDDEN_CREATE_FLAGS.items():
        result = panel.run(alice, verb, "--name", "evil", *flags, TEST_IMAGE, "sleep", "60")
        if case.startswith("bind -"):  # -v exists for named volumes: a host path is refused
            assert result.returncode == 1 and "host paths are not allowed" in result.stderr, (case, result.stderr)
            continue
        assert result.returncode == 2, (case, result.stdout, result.stderr)
        assert "unrecognized arguments" in result.stderr, case
    assert _labelled(docker_client, panel) == before


def test_docker_flags_after_the_image_are_only_the_command(panel, docker_client, defaults):
    alice = panel.users["alice"]
    flags = [flag for flags in FORBIDDEN_CREATE_FLAGS.values() for flag in flags]
    result = panel.run(alice, "run", "--name", "argv", TEST_IMAGE, "sh", "-c", "sleep 600", *flags)
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.argv")
    try:
        assert container.attrs["Config"]["Cmd"] == ["sh", "-c", "sleep 600", *flags]
        assert_hardened(container.attrs, panel.namespace, "alice", defaults)
    finally:
        assert panel.run(alice, "rm", "-f", "argv").returncode == 0


def test_published_ports_stay_in_range_and_on_the_publish_address(panel, docker_client, port_range, defaults):
    alice = panel.users["alice"]
    low, high = port_range
    before = _labelled(docker_client, panel)
    refused = {
        f"0.0.0.0:{low + 1}:80": "invalid published port",
        f"127.0.0.1:{low + 1}:80": "invalid published port",
        f"[::]:{low + 1}:80": "invalid published port",
        f"{low + 1}": "invalid published port",
        f"{low + 1}-{low + 2}:80": "invalid published port",
        "80:80": "outside your range",
        f"{low - 1}:80": "outside your range",
        f"{high + 1}:80": "outside your range",
    }
    for mapping, message in refused.items():
        result = panel.run(alice, "create", "--name", "ports", "-p", mapping, TEST_IMAGE)
        assert result.returncode == 1 and message in result.stderr, (mapping, result.stderr)
    assert _labelled(docker_client, panel) == before
    ok = panel.run(alice, "create", "--name", "ports", "-p", f"{high}:8080/udp", TEST_IMAGE)
    assert ok.returncode == 0, ok.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.ports")
    try:
        assert container.attrs["HostConfig"]["PortBindings"] == {
            "8080/udp": [{"HostIp": "127.0.0.1", "HostPort": str(high)}]
        }
        assert_hardened(container.attrs, panel.namespace, "alice", defaults, port_range=port_range)
    finally:
        panel.run(alice, "rm", "-f", "ports")


def test_running_container_is_hardened(web, panel, defaults, port_range):
    web.reload()
    assert web.status == "running"
    assert_hardened(web.attrs, panel.namespace, "alice", defaults, port_range=port_range)
    assert web.attrs["HostConfig"]["PidsLimit"] == 256
    assert web.attrs["HostConfig"]["Memory"] == 256 * 2**20


def test_update_has_no_flag_that_loosens_the_policy(web, panel, defaults, port_range):
    alice = panel.users["alice"]
    for case, flags in FORBIDDEN_UPDATE_FLAGS.items():
        result = panel.run(alice, "update", *flags, "web")
        assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (case, result.stderr)
    for flags in (["-m", "0"], ["-m", "-1"], ["--cpus", "0"], ["--cpus", "-1"], ["--restart", "always:3"]):
        result = panel.run(alice, "update", *flags, "web")
        assert result.returncode == 1 and "invalid" in result.stderr, (flags, result.stderr)
    web.reload()
    assert web.attrs["HostConfig"]["Memory"] == 256 * 2**20
    assert web.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    result = panel.run(alice, "update", "-m", "48m", "--cpus", "0.25", "web")
    assert result.returncode == 0, result.stderr
    web.reload()
    assert web.attrs["HostConfig"]["Memory"] == web.attrs["HostConfig"]["MemorySwap"] == 48 * 2**20
    assert web.attrs["HostConfig"]["NanoCpus"] == 250_000_000
    assert_hardened(web.attrs, panel.namespace, "alice", defaults, port_range=port_range)


def _status_fields(text: str) -> dict[str, str]:
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines()) if value}


def test_exec_and_shell_are_never_privileged(web, panel):
    alice = panel.users["alice"]
    for case, flags in FORBIDDEN_EXEC_FLAGS.items():
        result = panel.run(alice, "exec", *flags, "web", "id")
        assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (case, result.stderr)
    shell = panel.run(alice, "shell", "--privileged", "web")
    assert shell.returncode == 2 and "unrecognized arguments" in shell.stderr
    for user in ([], ["-u", "0"], ["-u", "root:root"]):
        result = panel.run(alice, "exec", *user, "web", "cat", "/proc/self/status")
        assert result.returncode == 0, result.stderr
        fields = _status_fields(result.stdout)
        assert capability_mask(result.stdout, "CapEff") == EXPECTED_CAP_MASK, user
        assert capability_mask(result.stdout, "CapBnd") == EXPECTED_CAP_MASK, user
        assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2", user
    flag_as_command = panel.run(alice, "exec", "web", "--privileged")
    assert flag_as_command.returncode in (126, 127), flag_as_command
    mknod = panel.run(alice, "exec", "-u", "0", "web", "mknod", "/tmp/node", "c", "1", "3")
    assert mknod.returncode != 0


def test_provision_runs_with_the_same_restrictions(web, panel):
    alice = panel.users["alice"]
    refused = panel.run(alice, "provision", "--privileged", "web", "-", input=PROBE)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    result = panel.run(alice, "provision", "web", "-", input=PROBE)
    assert result.returncode == 0, result.stderr
    assert capability_mask(result.stdout, "CapEff") == EXPECTED_CAP_MASK
    assert capability_mask(result.stdout, "CapBnd") == EXPECTED_CAP_MASK
    fields = _status_fields(result.stdout)
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    for escape in ("MKNOD-ALLOWED", "MOUNT-ALLOWED", "HOST-DEVICES"):
        assert escape not in result.stdout


def test_there_is_no_verb_for_host_level_objects(panel):
    """Volumes, networks, copies and commits would reach host paths or other
    users' objects; deploys do not exist (yet)."""
    alice = panel.users["alice"]
    for argv in (["volume", "create", "--opt", "o=bind", "--opt", "device=/", "v"], ["network", "connect", "host", "web"],
                 ["cp", "/etc/shadow", "web:/"], ["commit", "web"],
                 ["plugin", "install", "x"], ["system", "prune"], ["container", "run", "--privileged", TEST_IMAGE]):
        result = panel.run(alice, *argv)
        assert result.returncode == 2, (argv, result.stderr)
        assert "invalid choice" in result.stderr or "unrecognized arguments" in result.stderr, (argv, result.stderr)


def test_every_verb_is_covered_here():
    """A new verb may be a new way to create or change a container: cover it
    in this file (and in tests/test_cross_tenant.py), then add it here."""
    _, handlers = build_parser()
    assert set(handlers) == {
        "ps", "images", "run", "create", "start", "stop", "restart", "rm", "inspect", "whoami", "keys", "quota",
        "update", "passwd", "user", "audit", "host", "exec", "shell", "script", "provision", "stats", "logs",
        "history", "build",
        "image", "template",  # allow-list and templates: no container is created or changed
        "deploy", "rollback",  # the stored spec or default limits only: see tests/test_deploy.py
        "secret",  # environment values only, checked like -e: see tests/test_secrets.py
        "volume",  # local driver, no options (never o=bind): see tests/test_volumes.py
        "compose",  # services mapped onto the typed spec, every other key refused: see tests/test_compose.py
        "dashboard",  # opens the dashboard (or says it needs a terminal): creates nothing itself
    }


def test_build_has_no_flag_that_loosens_the_policy(panel):
    alice = panel.users["alice"]
    for flags in (["--network", "host"], ["--network=host"], ["--add-host", "x:1.2.3.4"], ["--build-arg", "A=1"],
                  ["--security-opt", "seccomp=unconfined"], ["--cgroup-parent", "/"], ["--ulimit", "nofile=99999"],
                  ["--isolation", "host"], ["--pull"], ["-f", "/etc/passwd"], ["--label", "io.sshpanel.owner=bob"],
                  ["--allow", "security.insecure"], ["--privileged"]):
        result = panel.run(alice, "build", *flags, "probe", "-", input="")
        assert result.returncode == 2 and "unrecognized arguments" in result.stderr, (flags, result.stderr)


def test_build_steps_are_never_privileged(panel, docker_client):
    """A Dockerfile `RUN` step gets at most Docker's default capabilities, no
    host devices and cannot mount (it is never privileged)."""
    dockerfile = f"FROM {TEST_IMAGE}\nRUN sh -c '{PROBE_LINES}'\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    result = subprocess.run([*panel.ssh_args(panel.users["alice"]), "--", "build", "probe", "-"],
                            input=buffer.getvalue(), capture_output=True, timeout=300)
    try:
        output = result.stdout.decode(errors="replace")
        assert result.returncode == 0, output + result.stderr.decode(errors="replace")
        assert capability_mask(output, "CapBnd") & ~DOCKER_DEFAULT_CAP_MASK == 0
        assert capability_mask(output, "CapEff") & ~DOCKER_DEFAULT_CAP_MASK == 0
        lines = {line.strip() for line in output.splitlines()}
        assert not {"MOUNT-ALLOWED", "HOST-DEVICES"} & lines  # the step's own text echoes them inside a line
    finally:
        for image in docker_client.images.list(name=f"{panel.namespace}/alice/probe"):
            docker_client.images.remove(image.id, force=True)


class FormHost(App):
    """Opens the real create form and keeps what it returned."""

    def __init__(self) -> None:
        super().__init__()
        self.result: NewContainer | None = None

    def on_mount(self) -> None:
        def keep(result: NewContainer | None) -> None:
            self.result = result
            self.exit()

        self.push_screen(CreateContainerModal([TEST_IMAGE], 256 * 2**20, 0.5), callback=keep)


async def _fill_and_submit_form(fields: dict[str, str]) -> tuple[NewContainer | None, set[str]]:
    app = FormHost()
    async with app.run_test(size=(100, 30)) as pilot:
        deadline = asyncio.get_running_loop().time() + 10
        while not isinstance(app.screen, CreateContainerModal):
            assert asyncio.get_running_loop().time() < deadline
            await pilot.pause()
        form = app.screen
        ids = {widget.id for widget in form.query("Input, Select, TextArea")}
        for key, value in fields.items():
            widget = form.query_one(f"#create-{key}")
            if isinstance(widget, TextArea):
                widget.text = value
            elif isinstance(widget, Select):
                widget.value = value
            else:
                assert isinstance(widget, Input)
                widget.value = value
        await pilot.press("ctrl+s")
        while app.result is None and app.is_running:
            assert asyncio.get_running_loop().time() < deadline, form.error_text
            await pilot.pause()
    return app.result, ids


def test_tui_form_offers_only_the_typed_spec(panel, docker_client, defaults):
    """The form's only fields are the spec's; hostile text in them stays text,
    and the container created from its spec by the real backend is hardened."""
    hostile = "--privileged --cap-add=ALL -v /:/host --network host --pid host --security-opt seccomp=unconfined"
    result, ids = asyncio.run(_fill_and_submit_form({
        "name": "form",
        "command": f"sh -c 'sleep 600' {hostile}",
        "env": "LD_PRELOAD=/tmp/x.so\nDOCKER_OPTS=--privileged",
        "memory": "32m",
        "cpus": "0.2",
        "restart": "on-failure",
        "volumes": "formdata:/data",
    }))
    assert ids == {"create-name", "create-image", "create-command", "create-env", "create-memory", "create-cpus",
                   "create-restart", "create-volumes", "create-ports"}
    assert result is not None
    spec = spec_from_request(result.request, result.request.name, 256 * 2**20, 0.5)
    assert spec.command == ("sh", "-c", "sleep 600", *hostile.split())
    assert spec.env == (("LD_PRELOAD", "/tmp/x.so"), ("DOCKER_OPTS", "--privileged"))
    assert [(m.name, m.target, m.read_only) for m in spec.volumes] == [("formdata", "/data", False)]

    settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace})
    store = open_store(settings)
    engine = Engine(settings)
    user = store.user_by_name("alice")
    workspace = Workspace(Principal(user.id, "alice", user.role, "SHA256:form-test", "tui-form"), store, engine, settings)
    try:
        workspace.create_from(result.request, start=True)
        container = docker_client.containers.get(f"{panel.namespace}.alice.form")
        assert container.attrs["Config"]["Cmd"] == list(spec.command)
        assert container.attrs["HostConfig"]["Memory"] == 32 * 2**20
        assert container.attrs["HostConfig"]["NanoCpus"] == 200_000_000
        assert container.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 0}
        assert_hardened(container.attrs, panel.namespace, "alice", defaults)
    finally:
        with contextlib.suppress(NotFound):
            workspace.remove("form", force=True)
        engine.close()
        store.close()
