"""Build safety (issue 6 "Build safety", review gaps): a timeout that really
stops the build, memory and hard CPU limits, the build network setting,
capped output with the tail kept, no remote context, no `ADD` of a URL,
one build at a time per user; all through the real server and engine."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from sshpanel.backend.engine.build import MAX_OUTPUT, TRUNCATED
from sshpanel.config import load_settings
from sshpanel.errors import ConfigError
from tests.conftest import TEST_IMAGE, remove_images, ssh_available
from tests.test_build import history, put_folder, tags
from tests.test_templates import wait_for

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")


@pytest.fixture(scope="module", autouse=True)
def _remove_built_images(panel, docker_client):
    yield
    remove_images(docker_client, panel.namespace)


def builds(panel, user) -> list[dict]:
    """The user's `build` history records, oldest first."""
    return sorted((e for e in history(panel, user) if e["Kind"] == "build"), key=lambda e: e["Time"])


def containers_running(docker_client, marker: str) -> list:
    """Containers (build containers included) whose command mentions `marker`."""
    return [c for c in docker_client.containers.list(all=True, ignore_removed=True)
            if marker in " ".join(c.attrs.get("Config", {}).get("Cmd") or [])]


def test_build_timeout_stops_the_build(limited_panel, docker_client):
    panel = limited_panel(SSHPANEL_BUILD_TIMEOUT="8")
    alice = panel.users["alice"]
    marker = f"tick-{secrets.token_hex(4)}"
    put_folder(panel, "alice", "forever", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN while :; do echo {marker}; sleep 1; done\n"})
    result = panel.run(alice, "build", "forever", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Error: the build timed out after 8 s and was stopped" in result.stderr
    assert marker in result.stdout, "the RUN step never started"
    assert tags(docker_client, f"{panel.namespace}/alice/forever") == []
    [record] = builds(panel, alice)
    assert record["OK"] is False and "timed out" in record["Detail"]
    assert marker in record["Detail"]
    # The engine cancelled the build: its RUN container was killed and removed.
    assert wait_for(lambda: not containers_running(docker_client, marker)), "the build container still runs"


def test_build_memory_limit(limited_panel, docker_client):
    panel = limited_panel(SSHPANEL_BUILD_MEMORY=str(32 * 1024 * 1024))
    alice = panel.users["alice"]
    put_folder(panel, "alice", "small", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN dd if=/dev/zero of=/dev/null bs=4M count=1\n"})
    assert panel.run(alice, "build", "small", timeout=300).returncode == 0
    put_folder(panel, "alice", "hungry", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN dd if=/dev/zero of=/dev/null bs=128M count=1\n"})
    result = panel.run(alice, "build", "hungry", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "returned a non-zero code: 137" in result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/hungry") == []


def test_build_network_setting(limited_panel):
    for bad in ("host", "container:web", "mynet", "Bridge"):
        with pytest.raises(ConfigError, match="SSHPANEL_BUILD_NETWORK"):
            load_settings(environ={"SSHPANEL_BUILD_NETWORK": bad})
    assert load_settings(environ={}).build_network == "none"
    with pytest.raises(RuntimeError, match="SSHPANEL_BUILD_NETWORK"):
        limited_panel(SSHPANEL_BUILD_NETWORK="host")
    panel = limited_panel(SSHPANEL_BUILD_NETWORK="bridge")
    alice = panel.users["alice"]
    put_folder(panel, "alice", "net", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN test -e /sys/class/net/eth0\n"})
    result = panel.run(alice, "build", "net", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_build_cpu_limit_is_a_hard_quota(panel):
    alice = panel.users["alice"]
    put_folder(panel, "alice", "cpu", {"Dockerfile": (
        f"FROM {TEST_IMAGE}\n"
        "RUN echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)\n"
    )})
    result = panel.run(alice, "build", "cpu", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "quota=100000" in result.stdout


def test_output_is_capped_and_the_tail_shown_after_a_failure(panel, docker_client):
    alice = panel.users["alice"]
    line = "0123456789" * 7
    noisy = f"RUN yes {line} | head -n 20000"
    put_folder(panel, "alice", "noisy", {"Dockerfile": f"FROM {TEST_IMAGE}\n{noisy}\n"})
    result = panel.run(alice, "build", "noisy", timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(TRUNCATED) == 1
    assert len(result.stdout) < MAX_OUTPUT + 4096
    assert f"Successfully tagged {panel.namespace}/alice/noisy:1" in result.stdout

    put_folder(panel, "alice", "noisyfail", {"Dockerfile": f"FROM {TEST_IMAGE}\n{noisy}; echo the-end; exit 4\n"})
    failed = panel.run(alice, "build", "noisyfail", timeout=300)
    assert failed.returncode == 1
    assert "returned a non-zero code: 4" in failed.stderr
    shown = failed.stdout.split(TRUNCATED, 1)[1]
    assert "the last 20 lines of the build log" in shown and "the-end" in shown and "non-zero code: 4" in shown
    assert tags(docker_client, f"{panel.namespace}/alice/noisyfail") == []


def test_history_records_failed_and_successful_builds(panel, docker_client):
    bob = panel.users["bob"]
    put_folder(panel, "bob", "good", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN echo good-build\n"})
    assert panel.run(bob, "build", "good", timeout=300).returncode == 0
    put_folder(panel, "bob", "bad", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN echo bad-build; exit 3\n"})
    assert panel.run(bob, "build", "bad", timeout=300).returncode == 1
    # Records of one second have no order between them: pick each by its name.
    good = [e for e in builds(panel, bob) if e["Detail"].startswith(f"{panel.namespace}/bob/good:")][-1]
    bad = [e for e in builds(panel, bob) if e["Detail"].startswith("bad ")][-1]
    image_id = docker_client.images.get(f"{panel.namespace}/bob/good:1").id
    head = good["Detail"].splitlines()[0]
    assert good["OK"] is True and head.startswith(f"{panel.namespace}/bob/good:1 {image_id[:19]} ")
    assert head.endswith("s") and float(head.rsplit(" ", 1)[1][:-1]) >= 0
    assert "good-build" in good["Detail"]
    assert bad["OK"] is False and bad["Detail"].startswith("bad failed in ")
    assert "returned a non-zero code: 3" in bad["Detail"].splitlines()[0]
    assert "bad-build" in bad["Detail"].splitlines()[1:]


def test_remote_build_context_is_refused_regression(panel):
    alice = panel.users["alice"]
    for source in ("https://github.com/docker/getting-started.git", "git://example.com/x", "git@github.com:x/y.git"):
        result = panel.run(alice, "build", "remote", source)
        assert result.returncode == 1, source
        assert "remote build contexts are refused" in result.stderr, result.stderr


def test_add_of_a_url_is_refused_before_the_build_regression(panel, docker_client):
    alice = panel.users["alice"]
    for text in ("ADD https://example.com/x.tgz /x", "ADD \\\n  --chown=1:1 \\\n# note\n  http://example.com/x /x",
                 'ADD ["https://example.com/x", "/x"]', "ONBUILD ADD git@github.com:x/y.git /y"):
        put_folder(panel, "alice", "remoteadd", {"Dockerfile": f"FROM {TEST_IMAGE}\n{text}\n"})
        result = panel.run(alice, "build", "remoteadd", timeout=300)
        assert result.returncode == 1, text
        assert "is refused: builds fetch nothing from the network" in result.stderr, result.stderr
        assert "Step 1" not in result.stdout
    for text in ("ARG U=https://example.com/x\nADD $U /x", "ARG U\nADD ${U} /x"):
        put_folder(panel, "alice", "remoteadd", {"Dockerfile": f"FROM {TEST_IMAGE}\n{text}\n"})
        result = panel.run(alice, "build", "remoteadd", timeout=300)
        assert result.returncode == 1 and "ADD takes no variables" in result.stderr, result.stderr
    assert tags(docker_client, f"{panel.namespace}/alice/remoteadd") == []
    put_folder(panel, "alice", "localadd", {"Dockerfile": f"FROM {TEST_IMAGE}\nADD notes.txt /notes.txt\nRUN cat /notes.txt\n",
                                            "notes.txt": "added locally\n"})
    result = panel.run(alice, "build", "localadd", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "added locally" in result.stdout


def test_one_build_at_a_time_per_user(panel, docker_client):
    alice, bob = panel.users["alice"], panel.users["bob"]
    marker = f"wait-{secrets.token_hex(4)}"
    put_folder(panel, "alice", "slow", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN until [ -e /tmp/go ]; do echo {marker}; sleep 0.2; done\n"})
    put_folder(panel, "alice", "quick", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN true\n"})
    put_folder(panel, "bob", "quick", {"Dockerfile": f"FROM {TEST_IMAGE}\nRUN true\n"})
    first = subprocess.Popen([*panel.ssh_args(alice), "--", "build slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = wait_for(lambda: [c for c in containers_running(docker_client, marker) if c.status == "running"], 120)
        assert running, "the first build never reached its RUN step"
        second = panel.run(alice, "build", "quick", timeout=300)
        assert second.returncode == 1
        assert "a build is already running" in second.stderr
        assert panel.run(bob, "build", "quick", timeout=300).returncode == 0, "another user's build must not wait"
        running[0].exec_run(["touch", "/tmp/go"])
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, out + err
    assert panel.run(alice, "build", "quick", timeout=300).returncode == 0
    assert not any(e["Detail"].startswith("quick failed") for e in builds(panel, alice))
