"""docker-bench-security's container runtime checks (CIS Docker Benchmark
v1.6 section 5, `tests/5_container_runtime.sh`) written as tests against
containers the panel created through each entry point (`run`, the TUI
create form's `Workspace.create`, `deploy`, `run -v` of named volumes). Each test is one check, named by its number;
a check the panel does not apply by design is an expected failure with the
reason (the table is in SECURITY.md)."""

from __future__ import annotations

import json
import secrets
import shlex
import socket

import pytest

from sshpanel.access.policy import DROPPED_CAPABILITIES
from sshpanel.access.principal import Principal
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import load_settings
from sshpanel.store import open_store
from sshpanel.access.spec import CreateRequest
from tests.conftest import TEST_IMAGE
from tests.hardening import EXPECTED_CAP_MASK, capability_mask
from tests.test_policy_deploy_build import build

STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
SENSITIVE_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
"""Host directories docker-bench 5.5 looks for among a container's mounts."""


def _free_port_pair() -> int:
    """A host port below the ephemeral range whose next port is free too
    (TCP and UDP on 127.0.0.1), so publishing cannot collide with a client."""
    for _ in range(200):
        low = 21000 + secrets.randbelow(300) * 10
        try:
            for port in (low, low + 1):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as probe:
                        probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return low
    raise RuntimeError("no free port pair found")


@pytest.fixture(scope="module")
def port_low(panel) -> int:
    """alice's host port range (ten ports) for the published-port checks."""
    ada = panel.add_user("ada", admin=True)
    low = _free_port_pair()
    result = panel.run(ada, "user", "set-quota", "alice", "--ports", f"{low}-{low + 9}")
    assert result.returncode == 0, result.stderr
    return low


def _run_from_the_command_line(panel, port_low) -> list[str]:
    """`run` with defaults, publishing two ports, and with the
    CIS-recommended restart policy."""
    runs = {
        "plain": [],
        "published": ["-p", f"{port_low}:80", "-p", f"{port_low + 1}:53/udp"],
        "retrying": ["--restart", "on-failure:5", "-m", "32m", "--cpus", "0.1"],
    }
    for name, flags in runs.items():
        result = panel.run(panel.users["alice"], "run", "--name", name, *flags, TEST_IMAGE, *STOPPABLE)
        assert result.returncode == 0, result.stderr
    return list(runs)


def _create_from_the_tui_form(panel, port_low) -> list[str]:
    """The `Workspace.create` call the TUI create form makes with its spec
    (as `tests/test_policy_entry_points.py::test_tui_form_offers_only_the_typed_spec`)."""
    settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace})
    store = open_store(settings)
    engine = Engine(settings)
    try:
        user = store.user_by_name("alice")
        workspace = Workspace(Principal(user.id, "alice", user.role, "SHA256:bench", "tui-form"), store, engine, settings)
        workspace.create_from(CreateRequest(TEST_IMAGE, "form", shlex.join(STOPPABLE), "A=1", "32m", "0.2", "no",
                                            volumes="formdata:/data"), start=True)
    finally:
        engine.close()
        store.close()
    return ["form"]


def _deploy_a_build(panel, port_low) -> list[str]:
    """`deploy` of alice's own build."""
    alice = panel.users["alice"]
    built = build(panel, alice, "site", f"FROM {TEST_IMAGE}\nCMD {json.dumps(STOPPABLE)}\n")
    assert built.returncode == 0, built.stdout + built.stderr
    deployed = panel.run(alice, "deploy", "site", timeout=120)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    return ["site"]


def _run_with_a_named_volume(panel, port_low) -> list[str]:
    """`run -v VOLUME:/path`, one read-write and one read-only."""
    result = panel.run(panel.users["alice"], "run", "--name", "stateful", "-v", "data:/data", "-v", "conf:/conf:ro",
                       TEST_IMAGE, *STOPPABLE)
    assert result.returncode == 0, result.stderr
    return ["stateful"]


ENTRY_POINTS = {
    "run": _run_from_the_command_line,
    "tui-form": _create_from_the_tui_form,
    "deploy": _deploy_a_build,
    "volume": _run_with_a_named_volume,
}
"""Every way a container comes to exist, each making running containers of
alice's and returning their names; every check runs on each."""


@pytest.fixture(scope="module", params=list(ENTRY_POINTS))
def containers(request, panel, docker_client, port_low) -> list[dict]:
    """`docker inspect` of running panel containers made through one entry point."""
    names = ENTRY_POINTS[request.param](panel, port_low)
    yield [docker_client.api.inspect_container(f"{panel.namespace}.alice.{name}") for name in names]
    alice = panel.users["alice"]
    panel.run(alice, "rm", "-f", *names)
    for volume in ("data", "conf", "formdata"):
        panel.run(alice, "volume", "rm", volume)
    for image in docker_client.images.list(name=f"{panel.namespace}/alice/site"):
        docker_client.images.remove(image.id, force=True)


def _in_container(docker_client, attrs: dict, *argv: str) -> str:
    result = docker_client.containers.get(attrs["Id"]).exec_run(list(argv))
    assert result.exit_code == 0, result.output
    return result.output.decode()


def _engine_security(docker_client) -> str:
    return " ".join(docker_client.info().get("SecurityOptions") or [])


def test_5_1_apparmor_profile_is_not_unconfined(containers, docker_client):
    apparmor = "apparmor" in _engine_security(docker_client)
    for attrs in containers:
        assert attrs["AppArmorProfile"] != "unconfined"
        if apparmor:
            assert attrs["AppArmorProfile"] == "docker-default"


def test_5_2_security_options_set_and_selinux_labels_kept(containers):
    for attrs in containers:
        options = attrs["HostConfig"]["SecurityOpt"]
        assert options  # docker-bench's literal test: SecurityOpt not empty
        assert not any(option.replace(":", "=") == "label=disable" for option in options)


def test_5_3_capabilities_restricted(containers, docker_client):
    for attrs in containers:
        assert not attrs["HostConfig"]["CapAdd"]
        assert set(DROPPED_CAPABILITIES) <= set(attrs["HostConfig"]["CapDrop"])
        status = _in_container(docker_client, attrs, "cat", "/proc/1/status")
        assert capability_mask(status, "CapBnd") == EXPECTED_CAP_MASK


def test_5_4_not_privileged(containers):
    assert [attrs["Name"] for attrs in containers if attrs["HostConfig"]["Privileged"]] == []


def test_5_5_no_sensitive_host_directories_mounted(containers, panel, docker_client):
    volumes = f"{docker_client.info()['DockerRootDir']}/volumes/"
    for attrs in containers:
        sources = {mount.get("Source") for mount in attrs["Mounts"]}
        assert not sources & set(SENSITIVE_DIRS)
        assert not attrs["HostConfig"]["Binds"]
        for mount in attrs["Mounts"]:  # only the owner's named volumes, in the engine's data root
            assert mount["Type"] == "volume" and mount["Name"].startswith(f"{panel.namespace}.alice."), mount
            assert mount["Source"] == f"{volumes}{mount['Name']}/_data", mount


def test_5_6_no_sshd_in_containers(containers, docker_client):
    """n/a by nature: the panel starts only the user's command; checked anyway."""
    for attrs in containers:
        assert "sshd" not in _in_container(docker_client, attrs, "ps")


def test_5_7_no_privileged_host_ports(containers, panel):
    for attrs in containers:
        for binds in (attrs["HostConfig"]["PortBindings"] or {}).values():
            assert all(int(bind["HostPort"]) >= 1024 for bind in binds)
    bob = panel.users["bob"]
    refused = panel.run(bob, "create", "--name", "low", "-p", "80:80", TEST_IMAGE)
    assert refused.returncode == 1 and "you may not publish ports" in refused.stderr


def test_5_9_host_network_not_shared(containers, panel):
    for attrs in containers:
        assert attrs["HostConfig"]["NetworkMode"] == f"{panel.namespace}.alice"


def test_5_10_memory_limited(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["Memory"] > 0
        assert attrs["HostConfig"]["MemorySwap"] == attrs["HostConfig"]["Memory"]


def test_5_11_cpu_limited(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["NanoCpus"] > 0


@pytest.mark.xfail(strict=True, reason="not applied: a hard NanoCpus limit is set instead of relative CpuShares")
def test_5_11_cpu_shares_set_literal(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["CpuShares"] != 0


@pytest.mark.xfail(strict=True, reason="not applied, by design: users install software into their containers")
def test_5_12_root_filesystem_read_only(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True


def test_5_13_ports_bound_to_the_publish_address(containers, docker_client):
    published = [attrs for attrs in containers if attrs["HostConfig"]["PortBindings"]]
    assert published or all(not attrs["NetworkSettings"]["Ports"] for attrs in containers)
    for attrs in published:
        ports = docker_client.api.port(attrs["Id"], 80) + docker_client.api.port(attrs["Id"], "53/udp")
        assert ports and {port["HostIp"] for port in ports} == {"127.0.0.1"}


def _restart_ok(policy: dict) -> bool:
    """CIS 5.14's intent: no endless restarts (`no`, or on-failure <= 5)."""
    return policy["Name"] in ("", "no") or (policy["Name"] == "on-failure" and 0 < policy["MaximumRetryCount"] <= 5)


def test_5_14_restart_policy_of_panel_defaults(containers):
    for attrs in containers:
        assert _restart_ok(attrs["HostConfig"]["RestartPolicy"]), attrs["Name"]


@pytest.mark.parametrize("policy", ["always", "unless-stopped", "on-failure", "on-failure:6"])
def test_5_14_restart_policies_a_user_may_choose(panel, docker_client, policy):
    """Allowed by design, recorded as expected failures of the check."""
    alice = panel.users["alice"]
    name = "restart-" + policy.replace(":", "-")
    result = panel.run(alice, "create", "--name", name, "--restart", policy, "-m", "8m", "--cpus", "0.05", TEST_IMAGE)
    assert result.returncode == 0, result.stderr
    try:
        restart = docker_client.api.inspect_container(f"{panel.namespace}.alice.{name}")["HostConfig"]["RestartPolicy"]
    finally:
        panel.run(alice, "rm", name)
    kind, _, retries = policy.partition(":")
    assert restart == {"Name": kind, "MaximumRetryCount": int(retries or 0)}
    assert not _restart_ok(restart)
    pytest.xfail(f"allowed by design: a user may choose {policy} for their own container")


def test_5_15_host_pid_namespace_not_shared(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["PidMode"] == ""


def test_5_16_host_ipc_namespace_not_shared(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["IpcMode"] in ("private", "shareable")


def test_5_17_host_devices_not_exposed(containers):
    for attrs in containers:
        assert not attrs["HostConfig"]["Devices"] and not attrs["HostConfig"]["DeviceRequests"]


def test_5_18_ulimits_are_the_engine_default(containers):
    for attrs in containers:
        assert not attrs["HostConfig"]["Ulimits"]


def test_5_19_no_shared_mount_propagation(containers):
    for attrs in containers:
        assert not any("shared" in (mount.get("Propagation") or "") for mount in attrs["Mounts"])


def test_5_20_host_uts_namespace_not_shared(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["UTSMode"] == ""


def test_5_21_seccomp_not_disabled(containers, docker_client):
    for attrs in containers:
        assert not any("seccomp" in option for option in attrs["HostConfig"]["SecurityOpt"])
        status = _in_container(docker_client, attrs, "cat", "/proc/1/status")
        assert "Seccomp:\t2" in status


def test_5_24_cgroup_parent_default(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["CgroupParent"] == ""


def test_5_25_no_new_privileges(containers, docker_client):
    for attrs in containers:
        assert "no-new-privileges:true" in attrs["HostConfig"]["SecurityOpt"]
        assert "NoNewPrivs:\t1" in _in_container(docker_client, attrs, "cat", "/proc/1/status")


def test_5_28_pids_limited(containers):
    for attrs in containers:
        assert attrs["HostConfig"]["PidsLimit"] not in (None, 0, -1)


def test_5_29_not_on_the_default_bridge(containers, docker_client):
    bridge = docker_client.api.inspect_network("bridge")
    assert bridge["Options"].get("com.docker.network.bridge.name") == "docker0"
    on_bridge = set(bridge.get("Containers") or {})
    for attrs in containers:
        assert attrs["Id"] not in on_bridge
        assert "bridge" not in attrs["NetworkSettings"]["Networks"]


def test_5_30_host_user_namespace_not_shared(containers):
    for attrs in containers:
        assert "host" not in attrs["HostConfig"]["UsernsMode"].lower()


def test_5_31_docker_socket_not_mounted(containers):
    for attrs in containers:
        assert not any("docker.sock" in str(mount) for mount in attrs["Mounts"])
        assert not any("docker.sock" in bind for bind in attrs["HostConfig"]["Binds"] or [])
