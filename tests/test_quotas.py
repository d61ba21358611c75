"""Quotas over real SSH against the real engine, on SQLite and PostgreSQL:
`quota`, `update` within quota (Docker's update API, live), start over
quota, published ports inside the user's range, pids per container (the
create races: tests/test_quota_races.py)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_IMAGE

pytestmark = pytest.mark.databases

MIB = 2**20
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"]
"""A command that exits on SIGTERM (a bare `sleep` as PID 1 makes every stop wait 10 s)."""


@pytest.fixture(scope="module")
def ada(panel):
    """The admin who sets quotas."""
    return panel.add_user("ada", admin=True)


def _quota(panel, user) -> dict:
    result = panel.run(user, "quota", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _set_quota(panel, ada, name: str, *flags: str) -> None:
    result = panel.run(ada, "user", "set-quota", name, *flags)
    assert result.returncode == 0, result.stderr


def _names(docker_client, panel, user: str) -> set[str]:
    label = f"io.{panel.namespace}.owner={user}"
    return {c.name for c in docker_client.containers.list(all=True, filters={"label": label})}


def test_quota_shows_usage_and_limits(panel, ada):
    quinn = panel.add_user("quinn")
    _set_quota(panel, ada, "quinn", "--containers", "5", "--memory", "256m", "--cpus", "1", "--ports", "none")
    assert panel.run(quinn, "run", "--name", "a", "-m", "64m", "--cpus", "0.25", TEST_IMAGE, "sleep", "600").returncode == 0
    assert panel.run(quinn, "create", "--name", "b", "-m", "32m", "--cpus", "0.25", TEST_IMAGE).returncode == 0
    quota = _quota(panel, quinn)
    disk = {key: quota.pop(key) for key in list(quota) if key.startswith("Disk") or key == "MaxDisk"}
    assert quota == {"Containers": 2, "MaxContainers": 5, "Memory": 96 * MIB, "MaxMemory": 256 * MIB,
                     "Cpus": 0.5, "MaxCpus": 1.0, "Pids": 256, "Ports": "none"}
    assert set(disk) == {"Disk", "MaxDisk", "DiskFiles", "DiskVolumes", "DiskImages", "DiskContainers",
                         "DiskMeasuredAt"} and disk["MaxDisk"] == 1024**3
    table = panel.run(quinn, "quota").stdout
    assert "96MiB" in table and "256MiB" in table

    over = panel.run(quinn, "run", "--name", "c", "-m", "200m", TEST_IMAGE)
    assert over.returncode == 1
    assert "memory quota exceeded by 40MiB" in over.stderr
    assert _quota(panel, quinn)["Containers"] == 2


def test_update_changes_limits_live_within_quota(panel, ada, docker_client):
    uma = panel.add_user("uma")
    _set_quota(panel, ada, "uma", "--memory", "256m", "--cpus", "1")
    assert panel.run(uma, "run", "--name", "web", "-m", "64m", "--cpus", "0.25", TEST_IMAGE, "sleep", "600").returncode == 0
    container = docker_client.containers.get(f"{panel.namespace}.uma.web")
    started = container.attrs["State"]["StartedAt"]

    grown = panel.run(uma, "update", "-m", "128m", "--cpus", "0.5", "--restart", "unless-stopped", "web")
    assert grown.returncode == 0, grown.stderr
    assert grown.stdout.strip() == "web"
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["Memory"] == host["MemorySwap"] == 128 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.status == "running" and container.attrs["State"]["StartedAt"] == started
    assert (_quota(panel, uma)["Memory"], _quota(panel, uma)["Cpus"]) == (128 * MIB, 0.5)

    too_much = panel.run(uma, "update", "-m", "300m", "web")
    assert too_much.returncode == 1
    assert "memory quota exceeded by 44MiB" in too_much.stderr
    too_fast = panel.run(uma, "update", "--cpus", "2", "web")
    assert too_fast.returncode == 1 and "CPU quota exceeded by 1.00" in too_fast.stderr
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] == 128 * MIB
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert _quota(panel, uma)["Memory"] == 128 * MIB

    assert panel.run(uma, "update", "--restart", "no", "web").returncode == 0
    container.reload()
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"

    nothing = panel.run(uma, "update", "web")
    assert nothing.returncode == 2
    missing = panel.run(uma, "update", "-m", "64m", "nope")
    assert missing.returncode == 1 and "no such container: nope" in missing.stderr
    bob = panel.users["bob"]
    theirs = panel.run(bob, "update", "-m", "64m", "web")
    assert theirs.returncode == 1 and "no such container: web" in theirs.stderr
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] == 128 * MIB


def test_docker_refusal_puts_the_old_limits_back(panel, ada, docker_client):
    """The limits are recorded before Docker is called; when Docker refuses
    (here: the container was removed behind the panel's back) the record
    gets its old limits again."""
    vic = panel.add_user("vic")
    assert panel.run(vic, "run", "--name", "big", "-m", "64m", TEST_IMAGE, "sleep", "600").returncode == 0
    tiny = panel.run(vic, "update", "-m", "1m", "big")
    assert tiny.returncode == 1 and "at least 6m" in tiny.stderr
    docker_client.containers.get(f"{panel.namespace}.vic.big").remove(force=True)
    gone = panel.run(vic, "update", "-m", "128m", "big")
    assert gone.returncode == 1 and "no such container: big" in gone.stderr
    assert _quota(panel, vic)["Memory"] == 64 * MIB


def test_lowered_quota_blocks_start_but_not_shrinking(panel, ada, docker_client):
    lea = panel.add_user("lea")
    _set_quota(panel, ada, "lea", "--memory", "256m")
    assert panel.run(lea, "run", "--name", "one", "-m", "128m", TEST_IMAGE, *STOPPABLE).returncode == 0
    assert panel.run(lea, "stop", "one").returncode == 0
    _set_quota(panel, ada, "lea", "--memory", "64m")

    refused = panel.run(lea, "start", "one")
    assert refused.returncode == 1
    assert "cannot start one: memory quota exceeded by 64MiB" in refused.stderr
    assert docker_client.containers.get(f"{panel.namespace}.lea.one").status == "exited"

    shrunk = panel.run(lea, "update", "-m", "64m", "one")
    assert shrunk.returncode == 0, shrunk.stderr
    assert panel.run(lea, "start", "one").returncode == 0
    assert docker_client.containers.get(f"{panel.namespace}.lea.one").status == "running"

    _set_quota(panel, ada, "lea", "--containers", "0")
    assert panel.run(lea, "restart", "one").returncode == 0
    assert panel.run(lea, "stop", "one").returncode == 0
    again = panel.run(lea, "start", "one")
    assert again.returncode == 1 and "container quota exceeded" in again.stderr


def test_published_ports_stay_in_the_users_range(panel, ada, docker_client):
    pat = panel.add_user("pat")
    refused = panel.run(pat, "run", "--name", "web", "-p", "20501:80", TEST_IMAGE, "sleep", "600")
    assert refused.returncode == 1
    assert "you may not publish ports" in refused.stderr
    assert _names(docker_client, panel, "pat") == set()

    _set_quota(panel, ada, "pat", "--ports", "20500-20509")
    ok = panel.run(pat, "run", "--name", "web", "-p", "20501:80", "-p", "20502:53/udp", TEST_IMAGE, "sleep", "600")
    assert ok.returncode == 0, ok.stderr
    container = docker_client.containers.get(f"{panel.namespace}.pat.web")
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert bindings == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "20501"}],
                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "20502"}]}
    ps = json.loads(panel.run(pat, "ps", "--format", "json").stdout.splitlines()[0])
    assert ps["Ports"] == "127.0.0.1:20502->53/udp, 127.0.0.1:20501->80/tcp"
    assert "127.0.0.1:20501->80/tcp" in panel.run(pat, "ps").stdout

    outside = panel.run(pat, "run", "--name", "x", "-p", "20510:80", TEST_IMAGE)
    assert outside.returncode == 1
    assert "host port 20510 is outside your range 20500-20509" in outside.stderr
    twice = panel.run(pat, "run", "--name", "y", "-p", "20501:8080", TEST_IMAGE)
    assert twice.returncode == 1
    assert "host port 20501/tcp is already published by your container web" in twice.stderr
    for bad in ("0.0.0.0:20503:80", "20503", "20503:80/sctp", "99999:80"):
        result = panel.run(pat, "create", "--name", "z", "-p", bad, TEST_IMAGE)
        assert result.returncode == 1 and "invalid published port" in result.stderr, bad
    assert _names(docker_client, panel, "pat") == {f"{panel.namespace}.pat.web"}


def test_pids_quota_sets_the_limit_of_new_containers(panel, ada, docker_client):
    ida = panel.add_user("ida")
    _set_quota(panel, ada, "ida", "--pids", "64")
    assert panel.run(ida, "create", "--name", "p", TEST_IMAGE).returncode == 0
    container = docker_client.containers.get(f"{panel.namespace}.ida.p")
    assert container.attrs["HostConfig"]["PidsLimit"] == 64
    assert _quota(panel, ida)["Pids"] == 64


def test_users_whose_names_prefix_each_other_get_their_own_networks_regression(panel, docker_client):
    """Docker's network name filter matches parts of names: `ns.ned` found
    `ns.ned2`, so ned's network was never created and ned could not run."""
    ned2, ned = panel.add_user("ned2"), panel.add_user("ned")
    assert panel.run(ned2, "create", "--name", "a", TEST_IMAGE).returncode == 0
    created = panel.run(ned, "create", "--name", "a", TEST_IMAGE)
    assert created.returncode == 0, created.stderr
    container = docker_client.containers.get(f"{panel.namespace}.ned.a")
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [f"{panel.namespace}.ned"]


def test_port_policy_is_pure_and_strict():
    from sshpanel.access.policy import create_arguments
    from sshpanel.access.quota import check_ports, parse_port_range, quota_columns
    from sshpanel.access.spec import PortMapping, make_spec, parse_publish
    from sshpanel.errors import Conflict, InvalidValue, QuotaExceeded

    assert parse_publish("8080:80") == PortMapping(8080, 80, "tcp")
    assert parse_publish("53:53/udp") == PortMapping(53, 53, "udp")
    for bad in ("8080", "1.2.3.4:8080:80", "8080:80/sctp", "0:80", "70000:80", "a:b", ":80"):
        with pytest.raises(InvalidValue):
            parse_publish(bad)
    with pytest.raises(InvalidValue, match="given twice"):
        make_spec("w", "busybox", 64 * MIB, 0.5, ports=["8080:80", "8080:81"])

    spec = make_spec("w", "busybox", 64 * MIB, 0.5, ports=["8080:80", "8081:80", "9000:53/udp"])
    args = create_arguments(spec, "alice", "ns", "sha256:" + "a" * 64, 128, "10.1.2.3")
    assert args["ports"] == {"80/tcp": [("10.1.2.3", 8080), ("10.1.2.3", 8081)], "53/udp": [("10.1.2.3", 9000)]}
    assert "ports" not in create_arguments(make_spec("w", "busybox", 64 * MIB, 0.5), "a", "ns", "x" * 12, 1)

    assert parse_port_range("8000-8099") == (8000, 8099)
    assert parse_port_range("none") is None and parse_port_range("") is None
    for bad in ("8099-8000", "0-10", "1-70000", "80"):
        with pytest.raises(InvalidValue):
            parse_port_range(bad)
    with pytest.raises(QuotaExceeded, match="outside your range 8000-8099"):
        check_ports(spec.ports, (8000, 8099), {})
    with pytest.raises(QuotaExceeded, match="may not publish ports"):
        check_ports(spec.ports, None, {})
    with pytest.raises(Conflict, match="8080/tcp is already published by another user's container"):
        check_ports(spec.ports, (1, 65535), {(8080, "tcp"): "another user's container"})
    check_ports(spec.ports, (1, 65535), {(8080, "udp"): "x"})

    assert quota_columns(3, None, 1.5, None, "none") == {
        "quota_containers": 3, "quota_cpus": 1.5, "quota_port_low": None, "quota_port_high": None}
    with pytest.raises(InvalidValue):
        quota_columns(-1, None, None, None, None)
