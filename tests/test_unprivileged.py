"""Unprivileged containers (issue 21, part 1): on the engine the set-up
scripts configure (user-namespace remapping), root in a container is an
unprivileged uid on the host for every way a container or a build step
comes to exist (`run`, the TUI create form over SSH, `deploy`, a build's
`RUN` step), read from the host's `/proc/PID/status`; the panel says so in
`host` and refuses to start on an engine that does not remap when
`SSHPANEL_REQUIRE_UNPRIVILEGED=1` is set."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker.errors
import pytest

from sshpanel.backend.admin.host import remaps_user_namespaces
from sshpanel.config import load_settings
from sshpanel.errors import ConfigError
from sshpanel.ssh.startup import check_unprivileged
from tests.conftest import ROOT, SSH_BASE, TEST_IMAGE, remove_namespace, ssh_available, start_panel, stop_panel, wait_for
from tests.test_deploy import build, context
from tests.test_tui_e2e import Terminal

OPTED_OUT = os.environ.get("SSHPANEL_USERNS_REMAP") == "0"
"""Read at import (the autouse fixture clears SSHPANEL_* in tests): the
set-up was told to leave the engine without remapping."""

engine_tests = pytest.mark.skipif(
    OPTED_OUT or not ssh_available(), reason="needs OpenSSH and the remapping engine scripts/test.sh sets up"
)

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
"""Keeps running, exits on SIGTERM at once."""


def host_uids(pid: int) -> list[int]:
    """The real, effective, saved and file-system uids of host process `pid`
    (the `Uid:` line of the host's `/proc/PID/status`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no Uid: line for pid {pid}")


def root_inside(pid: int, uid: int) -> bool:
    """True when host uid `uid` of process `pid` is uid 0 in its user
    namespace (read from the host's `/proc/PID/uid_map`: `inside outside
    count` lines)."""
    for line in Path(f"/proc/{pid}/uid_map").read_text().splitlines():
        inside, outside, count = (int(value) for value in line.split())
        if outside <= uid < outside + count:
            return uid - outside + inside == 0
    return False


def assert_unprivileged(pid: int) -> None:
    """Host process `pid` (a container's main process, root in its
    container) runs as a non-zero uid on the host."""
    uids = host_uids(pid)
    assert len(uids) == 4 and 0 not in uids, uids
    assert root_inside(pid, uids[0]), Path(f"/proc/{pid}/uid_map").read_text()


def main_pid(docker_client, container: str) -> int:
    """Host PID of the running container's main process."""
    state = docker_client.api.inspect_container(container)["State"]
    assert state["Running"] and state["Pid"] > 0, state
    return int(state["Pid"])




@pytest.fixture(scope="module")
def panel(tmp_path_factory, docker_client):
    """A panel that requires an unprivileged engine, whose deployments settle
    after 1 s, with alice, tina (the TUI's user) and the admin ada."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path_factory.mktemp("panel"), namespace,
                         extra_env={"SSHPANEL_REQUIRE_UNPRIVILEGED": "1", "SSHPANEL_DEPLOY_SETTLE": "1"})
    for name in ("alice", "tina"):
        server.add_user(name)
    server.add_user("ada", admin=True)
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)
    for image in docker_client.images.list():
        if any(tag.startswith(f"{namespace}/") for tag in image.tags):
            docker_client.images.remove(image.id, force=True)


@engine_tests
def test_required_unprivileged_engine_is_accepted_and_told(panel):
    assert "Unprivileged: true" in panel.log()
    assert panel.process.poll() is None


@engine_tests
def test_host_tells_unprivileged(panel):
    ada = panel.users["ada"]
    result = panel.run(ada, "host", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Unprivileged"] is True
    table = panel.run(ada, "host")
    assert any(line.split() == ["unprivileged", "true"] for line in table.stdout.splitlines()), table.stdout


@engine_tests
def test_run_container_root_is_not_host_root_regression(panel, docker_client):
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "plain", "-v", "data:/data", TEST_IMAGE, *STOPPABLE)
    assert result.returncode == 0, result.stderr
    try:
        assert_unprivileged(main_pid(docker_client, f"{panel.namespace}.alice.plain"))
        # The named volume is writable by the container's root all the same.
        wrote = panel.run(alice, "exec", "plain", "sh", "-c", "echo kept > /data/f && cat /data/f")
        assert wrote.returncode == 0 and wrote.stdout == "kept\n", wrote.stderr
    finally:
        panel.run(alice, "rm", "-f", "plain")
        panel.run(alice, "volume", "rm", "data")


@engine_tests
def test_tui_form_container_root_is_not_host_root_regression(panel, docker_client):
    """The create form, typed into the dashboard through the real OpenSSH
    client in a tmux terminal."""
    tina = panel.users["tina"]
    name = f"{panel.namespace}.tina.formed"
    command = [*SSH_BASE[:-2], "-tt", "-i", str(tina.key), "-p", str(panel.port), "tina@127.0.0.1"]
    # Only the test image is offered (the form chooses the first one; other
    # tests' builds on the same engine would sort before it).
    ada = panel.users["ada"]
    assert panel.run(ada, "image", "allow", "sshpanel-test/*").returncode == 0
    terminal = Terminal(f"sshpanel-{panel.namespace}-userns", command)
    try:
        terminal.wait_for("tina (user)")
        terminal.wait_for("No containers yet")
        terminal.keys("c")
        terminal.wait_for("New container")
        terminal.wait_for("busybox:latest")  # the image list has loaded (its first image is chosen)
        terminal.type("formed")
        terminal.wait_for("formed")
        terminal.keys("Tab")
        time.sleep(0.3)
        terminal.keys("Tab")
        time.sleep(0.3)
        terminal.type("sleep 600")
        terminal.wait_for("sleep 600")
        terminal.keys("C-s")
        wait_for(lambda: docker_client.containers.list(filters={"name": f"^{name}$"}), what="the form's container")
        assert_unprivileged(main_pid(docker_client, name))
        terminal.keys("q")
    finally:
        terminal.close()
        panel.run(tina, "rm", "-f", "formed")
        panel.run(ada, "image", "allow", "--rm", "sshpanel-test/*")


@engine_tests
def test_deployed_container_root_is_not_host_root_regression(panel, docker_client):
    alice = panel.users["alice"]
    built = build(panel, alice, "site", context({"Dockerfile": f"FROM {TEST_IMAGE}\nCMD {json.dumps(STOPPABLE)}\n"}))
    assert built.returncode == 0, built.stdout + built.stderr
    deployed = panel.run(alice, "deploy", "site", timeout=120)
    try:
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert_unprivileged(main_pid(docker_client, f"{panel.namespace}.alice.site"))
    finally:
        panel.run(alice, "rm", "-f", "site")


@engine_tests
def test_build_run_step_is_not_host_root_regression(panel, docker_client):
    """A `RUN` step waits for a file; meanwhile the test finds the step's
    build container by the step's unique text, reads its process's host
    uids, then writes the file so that the build finishes."""
    alice = panel.users["alice"]
    token = f"userns-{secrets.token_hex(4)}"
    step = (f"echo {token}; i=0; while [ ! -e /tmp/{token} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; "
            f"[ -e /tmp/{token} ]")
    dockerfile = f"FROM {TEST_IMAGE}\nRUN {step}\n"
    outcome: dict[str, subprocess.CompletedProcess] = {}
    builder = threading.Thread(target=lambda: outcome.setdefault(
        "build", build(panel, alice, "stepper", context({"Dockerfile": dockerfile}))))
    builder.start()
    step_container = None
    try:
        found = wait_for(lambda: [c for c in docker_client.api.containers() if token in c.get("Command", "")],
                      timeout=120, what="the RUN step's build container")
        step_container = found[0]["Id"]
        assert_unprivileged(main_pid(docker_client, step_container))
    finally:
        if step_container is not None:  # lets the step end at once
            with contextlib.suppress(docker.errors.APIError):
                docker_client.containers.get(step_container).exec_run(["touch", f"/tmp/{token}"])
        builder.join(timeout=300)
    result = outcome["build"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_user_namespace_check_reads_the_engine_security_options():
    assert remaps_user_namespaces({"SecurityOptions": ["name=seccomp,profile=default", "name=userns"]})
    assert remaps_user_namespaces({"SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"]})
    assert not remaps_user_namespaces({"SecurityOptions": ["name=apparmor", "name=seccomp,profile=default"]})
    assert not remaps_user_namespaces({"SecurityOptions": ["name=seccomp,profile=usernsish"]})
    assert not remaps_user_namespaces({"SecurityOptions": None})
    assert not remaps_user_namespaces({})


def test_required_unprivileged_refuses_an_engine_that_does_not_remap():
    required = load_settings(environ={"SSHPANEL_REQUIRE_UNPRIVILEGED": "1"})
    plain = {"SecurityOptions": ["name=seccomp,profile=default"]}
    with pytest.raises(ConfigError, match="does not remap user namespaces"):
        check_unprivileged(required, remaps_user_namespaces(plain), "unix:///var/run/docker.sock")
    check_unprivileged(required, remaps_user_namespaces({"SecurityOptions": ["name=userns"]}), "x")
    check_unprivileged(load_settings(environ={}), remaps_user_namespaces(plain), "x")  # not required: allowed
    with pytest.raises(ConfigError):
        load_settings(environ={"SSHPANEL_REQUIRE_UNPRIVILEGED": "maybe"})


class _FakeEngine(http.server.BaseHTTPRequestHandler):
    """Answers `/version` and `/info` as a Docker 20.10 engine without user
    namespace remapping would; 404 to anything else."""

    ANSWERS = {
        "/version": {"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"},
        "/info": {"SecurityOptions": ["name=seccomp,profile=default"], "Containers": 0, "Images": 0},
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = "/" + self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        body = json.dumps(self.ANSWERS.get(path, {"message": "page not found"})).encode()
        self.send_response(200 if path in self.ANSWERS else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # a Unix socket has no client address to log
        pass


def test_serve_refuses_to_start_on_an_engine_that_does_not_remap(tmp_path):
    """`sshpanel serve` with `SSHPANEL_REQUIRE_UNPRIVILEGED=1`, against an
    engine (a stand-in answering Docker's API on a Unix socket) that does
    not remap: a clear error, exit status 1, never listening."""
    socket_path = tmp_path / "engine.sock"
    server = socketserver.ThreadingUnixStreamServer(str(socket_path), _FakeEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {name: value for name, value in os.environ.items() if not name.startswith("SSHPANEL_")}
    env.update({"SSHPANEL_DATA_DIR": str(tmp_path / "data"), "SSHPANEL_HOST_KEYS_DIR": str(tmp_path / "keys"),
                "SSHPANEL_PORT": "0", "SSHPANEL_LISTEN": "127.0.0.1", "SSHPANEL_REQUIRE_UNPRIVILEGED": "1",
                "SSHPANEL_DOCKER_HOST": f"unix://{socket_path}"})
    try:
        result = subprocess.run([sys.executable, "-m", "sshpanel", "serve"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1, result.stderr
    assert "Unprivileged: false" in result.stderr
    assert "SSHPANEL_REQUIRE_UNPRIVILEGED is set but the Docker engine" in result.stderr
    assert "listening on" not in result.stderr and "Traceback" not in result.stderr


def test_setup_merges_userns_remap_into_daemon_json(tmp_path):
    """`set_userns_remap` of scripts/lib.sh adds the key, keeps every other
    key, the file's mode and a remap user already chosen, and refuses a file
    that is not a JSON object."""
    def merge(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/lib.sh"; set_userns_remap "$1"', "-", str(path)],
                              capture_output=True, text=True, timeout=30)

    fresh = tmp_path / "etc" / "docker" / "daemon.json"
    assert merge(fresh).stdout.strip() == "changed"
    assert json.loads(fresh.read_text()) == {"userns-remap": "default"}

    kept = tmp_path / "kept.json"
    kept.write_text('{"log-driver": "local", "data-root": "/srv/docker", "userns-remap": ""}')
    kept.chmod(0o600)
    assert merge(kept).stdout.strip() == "changed"
    assert json.loads(kept.read_text()) == {"log-driver": "local", "data-root": "/srv/docker",
                                            "userns-remap": "default"}
    assert kept.stat().st_mode & 0o777 == 0o600
    assert merge(kept).stdout == ""  # already set: not written again

    chosen = tmp_path / "chosen.json"
    chosen.write_text('{"userns-remap": "panel:panel"}')
    assert merge(chosen).stdout == "" and json.loads(chosen.read_text()) == {"userns-remap": "panel:panel"}

    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    refused = merge(broken)
    assert refused.returncode != 0 and "not a JSON object" in refused.stderr
    assert broken.read_text() == "[1, 2]"
