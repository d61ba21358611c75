"""Live stats: values match what Docker reports for a known load, one shared
collector whatever the number of viewers, and the `stats` command."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from sshpanel.access.units import parse_size
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.stats import StatsCollector
from sshpanel.config import Settings
from tests.conftest import TEST_IMAGE, wait_for

BUSY = "dd if=/dev/zero of=/dev/shm/ballast bs=1M count=24 2>/dev/null; while :; do :; done"
"""Half a CPU (with --cpus 0.5) and 24 MiB of memory (tmpfs pages count)."""




def docker_memory(docker_client, docker_id: str) -> int:
    """Memory as the docker CLI computes it (usage minus inactive file cache)."""
    data = docker_client.api.stats(docker_id, stream=False, one_shot=True)["memory_stats"]
    stats = data.get("stats", {})
    return data["usage"] - stats.get("total_inactive_file", stats.get("inactive_file", 0))


@pytest.fixture(scope="module")
def busy(panel, docker_client):
    """alice's `busy` container: a CPU spinner capped at 0.5 CPU with 24 MiB in /dev/shm."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "busy", "--cpus", "0.5", "-m", "64m", TEST_IMAGE, "sh", "-c", BUSY)
    assert result.returncode == 0, result.stderr
    container = docker_client.containers.get(f"{panel.namespace}.alice.busy")
    wait_for(lambda: docker_memory(docker_client, container.id) >= 24 * 1024 * 1024, what="the ballast")
    yield container
    panel.run(alice, "rm", "-f", "busy")


def collect(settings: Settings, owner: str, rounds: int) -> tuple[list, StatsCollector]:
    collector = StatsCollector(Engine(settings), settings)
    got: list = []
    unsubscribe = collector.subscribe(got.append, owner)
    try:
        wait_for(lambda: len(got) >= rounds, what=f"{rounds} rounds")
    finally:
        unsubscribe()
        collector.stop()
    return got, collector


@pytest.mark.parametrize("source", ["cgroup", "api"])
def test_collector_values_match_docker_for_a_known_load(panel, busy, docker_client, source):
    settings = Settings(namespace=panel.namespace, stats_source=source, stats_interval=1.0)
    rounds, collector = collect(settings, "alice", 4)
    samples = [r.stats[busy.id] for r in rounds if busy.id in r.stats]
    assert samples and all(s.source == source for s in samples)
    rated = [s for s in samples if s.has_rates]
    assert len(rated) >= 2
    cpu = sum(s.cpu for s in rated) / len(rated)
    assert 0.35 <= cpu <= 0.6, cpu
    last = rated[-1]
    assert last.cpu_limit == pytest.approx(0.5)
    assert 70 <= last.cpu_limit_percent <= 120
    assert last.cpu_host_percent == pytest.approx(last.cpu_percent / last.online_cpus)
    assert last.memory_limit == 64 * 1024 * 1024
    assert abs(last.memory - docker_memory(docker_client, busy.id)) <= 2 * 1024 * 1024
    assert last.pids == docker_client.api.stats(busy.id, stream=False, one_shot=True)["pids_stats"]["current"]
    networks = docker_client.api.stats(busy.id, stream=False, one_shot=True)["networks"]
    assert abs(last.net_rx - sum(n["rx_bytes"] for n in networks.values())) <= 4096
    assert last.name == "busy" and last.owner == "alice"
    counters = collector.counters()
    assert (counters.cgroup_samples if source == "cgroup" else counters.api_samples) >= 4


def test_two_viewers_do_not_double_sampling(panel, busy, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "idle", TEST_IMAGE, "sleep", "600").returncode == 0
    try:
        settings = Settings(namespace=panel.namespace, stats_source="api", stats_interval=0.5)
        collector = StatsCollector(Engine(settings), settings)
        first: list = []
        second: list = []
        stop_first = collector.subscribe(first.append, "alice")
        wait_for(lambda: len(first) >= 3 and len(first[-1].stats) == 2, what="one viewer's rounds")
        one = collector.counters()
        stop_second = collector.subscribe(second.append, "alice")
        wait_for(lambda: len(second) >= 6, what="two viewers' rounds")
        two = collector.counters()
        rounds = two.rounds - one.rounds
        # Per round: one list call and one one-shot stats per container, for
        # one viewer or two (inspects for CPU limits are cached).
        assert two.api_samples - one.api_samples == 2 * rounds
        assert two.docker_calls - one.docker_calls <= 3 * rounds + 2
        assert second[-1].stats.keys() == first[-1].stats.keys()
        assert second[-1].stats[busy.id] is first[-1].stats[busy.id]
        stop_first()
        stop_second()
        assert collector.viewer_count == 0
        idle = collector.counters()
        # Nobody watches: nothing is sampled. Absence can only be observed
        # over time, so give it three intervals.
        threading.Event().wait(3 * settings.stats_interval)
        assert collector.counters().api_samples - idle.api_samples <= 2
        collector.stop()
    finally:
        panel.run(alice, "rm", "-f", "idle")


def test_stats_command_json_matches_docker_keys_and_values(panel, busy, docker_client):
    alice = panel.users["alice"]
    result = panel.run(alice, "stats", "--no-stream", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    row = next(r for r in rows if r["Name"] == "busy")
    assert set(row) == {"Name", "ID", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"}
    assert busy.id.startswith(row["ID"]) and len(row["ID"]) == 12
    assert 35.0 <= float(row["CPUPerc"].rstrip("%")) <= 60.0
    used, limit = (parse_size(part.strip()) for part in row["MemUsage"].split("/"))
    assert limit == 64 * 1024 * 1024
    assert abs(used - docker_memory(docker_client, busy.id)) <= 2 * 1024 * 1024
    assert row["PIDs"] == "1"


def test_stats_command_table_names_and_isolation(panel, busy):
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "create", "--name", "parked", TEST_IMAGE, "sleep", "60").returncode == 0
    try:
        table = panel.run(alice, "stats", "--no-stream", "parked", "busy")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["CONTAINER", "ID", "NAME", "CPU", "%", "MEM", "USAGE", "/", "LIMIT",
                                    "MEM", "%", "NET", "I/O", "BLOCK", "I/O", "PIDS"]
        assert [line.split()[1] for line in lines[1:]] == ["parked", "busy"]
        assert "0B / 0B" in lines[1] and lines[1].split()[-1] == "0"
        # A snapshot without a terminal and without --no-stream is one snapshot too.
        once = panel.run(alice, "stats", "busy", "--format", "json")
        assert once.returncode == 0 and len(once.stdout.splitlines()) == 1
        denied = panel.run(bob, "stats", "--no-stream", "busy")
        assert denied.returncode == 1 and "no such container: busy" in denied.stderr
        assert "busy" not in panel.run(bob, "stats", "--no-stream").stdout
    finally:
        panel.run(alice, "rm", "parked")


def test_stats_refreshes_live_in_a_terminal_until_q(panel, busy):
    alice = panel.users["alice"]
    process = subprocess.Popen(
        [*panel.ssh_args(alice, "-tt"), "--", "stats", "busy"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    seen = b""
    try:
        while seen.count(b"\x1b[2J") < 2:
            chunk = process.stdout.read1(4096)
            assert chunk, seen[-500:]
            seen += chunk
        assert b"busy" in seen and b"CPU %" in seen and b"\r\n" in seen
        process.stdin.write(b"q")
        process.stdin.flush()
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()


def test_empty_rounds_reach_a_viewer_once_and_gone_viewers_never(panel, busy):
    settings = Settings(namespace=panel.namespace, stats_source="api", stats_interval=0.3)
    collector = StatsCollector(Engine(settings), settings)
    busy_rounds: list = []
    empty_rounds: list = []
    gone_rounds: list = []
    stop_busy = collector.subscribe(busy_rounds.append, "alice")
    stop_empty = collector.subscribe(empty_rounds.append, "nobody-here")
    stop_gone = collector.subscribe(gone_rounds.append, "alice")
    try:
        wait_for(lambda: len(gone_rounds) >= 2, what="rounds of the viewer that leaves")
        stop_gone()
        left_with = len(gone_rounds)
        seen = len(busy_rounds)
        wait_for(lambda: len(busy_rounds) >= seen + 4, what="more rounds")
        assert len(gone_rounds) == left_with  # never called after it left
        assert all(busy.id in r.stats for r in busy_rounds[-3:])
        # Nothing runs for that owner: the empty round came once, not every round.
        assert len(empty_rounds) == 1 and not empty_rounds[0].stats and empty_rounds[0].error is None
    finally:
        stop_busy()
        stop_empty()
        collector.stop()
