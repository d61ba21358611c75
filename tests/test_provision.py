"""Provisioning scripts (issue 5): stored per user, uploaded into the
container as a file and run by their own interpreter, never through a shell
command line; every run lands in the history."""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import time

import pytest

from tests.conftest import TEST_IMAGE, remove_namespace, start_panel, stop_panel

NASTY = """#!/bin/sh
# Quotes, substitutions, backticks and non-ASCII text must arrive as written.
printf '%s\\n' "it's \\"double\\" and 'single'" '$(id -u)' '`reboot`' 'naïve – ünïcødé ✓ 日本'
cat <<'EOF'
$HOME `uname` $(echo nope) \\ back\\slash
EOF
echo "to stderr" >&2
: '; touch /tmp/pwned; echo '
"""

NASTY_OUTPUT = """it's "double" and 'single'
$(id -u)
`reboot`
naïve – ünïcødé ✓ 日本
$HOME `uname` $(echo nope) \\ back\\slash
"""


@pytest.fixture(scope="module")
def box(panel, docker_client):
    """Alice's running container `box`."""
    alice = panel.users["alice"]
    result = panel.run(alice, "run", "--name", "box", TEST_IMAGE, "sleep", "3600")
    assert result.returncode == 0, result.stderr
    yield docker_client.containers.get(f"{panel.namespace}.alice.box")
    panel.run(alice, "rm", "-f", "box")


def _provision_events(data_dir, user: str) -> list:
    from sshpanel.config import load_settings
    from sshpanel.store import open_store

    store = open_store(load_settings({"data_dir": data_dir}))
    try:
        user_id = store.user_by_name(user).id
        return [event for event in store.events_of(user_id) if event.kind == "provision"]
    finally:
        store.close()


def test_scripts_are_stored_exactly(panel):
    alice = panel.users["alice"]
    added = panel.run(alice, "script", "add", "install.sh", "-", input=NASTY)
    assert added.returncode == 0, added.stderr
    assert added.stdout == "install.sh\n"
    assert panel.run(alice, "script", "show", "install.sh").stdout == NASTY
    listing = panel.run(alice, "script", "ls")
    assert listing.stdout.splitlines()[0].split() == ["NAME", "SIZE", "SHA256", "CREATED"]
    digest = hashlib.sha256(NASTY.encode()).hexdigest()
    assert digest[:12] in listing.stdout
    replaced = panel.run(alice, "script", "add", "install.sh", "-", input="echo v2\n")
    assert replaced.returncode == 0
    assert panel.run(alice, "script", "show", "install.sh").stdout == "echo v2\n"
    assert panel.run(alice, "script", "rm", "install.sh").returncode == 0
    assert panel.run(alice, "script", "show", "install.sh").returncode == 1
    assert "install.sh" not in panel.run(alice, "script", "ls").stdout


@pytest.mark.parametrize(
    "args, stdin, code, message",
    [
        (["script", "add", "../x", "-"], "echo\n", 1, "invalid script name"),
        (["script", "add", "ok", "-"], "  \n", 1, "the script is empty"),
        (["script", "add", "ok", "-"], "#!sh\necho\n", 1, "absolute path"),
        (["script", "add", "ok", "file.sh"], "", 2, "invalid choice"),
        (["script", "show", "nothing"], "", 1, "no such script: nothing"),
        (["script", "rm", "nothing"], "", 1, "no such script: nothing"),
        (["provision", "box", "nothing"], "", 1, "no such script: nothing"),
        (["provision", "--timeout", "0", "box", "-"], "echo\n", 1, "invalid timeout"),
        (["provision", "--timeout", "1e9", "box", "-"], "echo\n", 1, "invalid timeout"),
        (["provision", "box"], "", 2, "required"),
    ],
)
def test_bad_script_input_is_refused(panel, box, args, stdin, code, message):
    alice = panel.users["alice"]
    result = panel.run(alice, *args, input=stdin)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr


def test_script_runs_exactly_as_written(panel, box):
    alice = panel.users["alice"]
    assert panel.run(alice, "script", "add", "nasty", "-", input=NASTY).returncode == 0
    result = panel.run(alice, "provision", "box", "nasty")
    assert result.returncode == 0, result.stderr
    assert result.stdout == NASTY_OUTPUT
    assert result.stderr == "to stderr\n"
    assert box.exec_run(["ls", "-A", "/tmp"]).output == b"", "the run's folder is removed, nothing else made"


def test_script_from_stdin_uses_its_shebang_interpreter(panel, box):
    alice = panel.users["alice"]
    script = '#!/bin/awk -f\nBEGIN { printf "awk says %d\\n", 6 * 7 }\n'
    result = panel.run(alice, "provision", "box", "-", input=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "awk says 42\n"


def test_exit_status_propagates_and_every_run_is_recorded(panel, box):
    alice = panel.users["alice"]
    failing = "echo step one\necho step two\nexit 7\n"
    result = panel.run(alice, "provision", "box", "-", input=failing)
    assert result.returncode == 7
    assert result.stdout == "step one\nstep two\n"
    ok = panel.run(alice, "provision", "box", "-", input="echo all good\n")
    assert ok.returncode == 0

    events = _provision_events(panel.data_dir, "alice")
    good, bad = events[0], events[1]
    assert (bad.ok, bad.exit_code) == (False, 7)
    assert bad.detail.startswith(f"script - sha256:{hashlib.sha256(failing.encode()).hexdigest()[:16]} ")
    assert "exit 7" in bad.detail.splitlines()[0]
    assert bad.detail.splitlines()[1:] == ["step one", "step two"]
    assert (good.ok, good.exit_code) == (True, 0)
    assert good.detail.splitlines()[1:] == ["all good"]
    assert bad.container_id is not None and bad.container_id == good.container_id


def test_provision_needs_a_running_container(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "create", "--name", "idle", TEST_IMAGE).returncode == 0
    result = panel.run(alice, "provision", "idle", "-", input="echo hi\n")
    assert result.returncode == 1
    assert "not running" in result.stderr
    panel.run(alice, "rm", "idle")


def test_bob_cannot_provision_or_read_alice_scripts_regression(panel, box):
    """Scope (docs/ARCHITECTURE.md invariant 1) for containers and scripts
    alike."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "script", "add", "secret", "-", input="echo alice only\n").returncode == 0
    for ref in ("box", box.id, box.id[:12], box.id[:1]):
        result = panel.run(bob, "provision", ref, "-", input="touch /tmp/bob-was-here\n")
        assert result.returncode == 1
        assert result.stderr.strip() == f"Error: no such container: {ref}"
    assert box.exec_run(["ls", "/tmp"]).output == b""
    for verb in ("show", "rm"):
        result = panel.run(bob, "script", verb, "secret")
        assert result.returncode == 1
        assert result.stderr.strip() == "Error: no such script: secret"
    assert "secret" not in panel.run(bob, "script", "ls").stdout
    assert panel.run(alice, "script", "show", "secret").stdout == "echo alice only\n"
    assert panel.run(bob, "provision", "box", "secret").returncode == 1


def test_client_going_away_cancels_the_run(panel, box):
    alice = panel.users["alice"]
    client = subprocess.Popen(
        [*panel.ssh_args(alice), "--", "provision box -"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    client.stdin.write(b"echo begun\nsleep 2999\n")
    client.stdin.close()
    assert client.stdout.readline() == b"begun\n"
    client.kill()
    client.wait()

    def recorded():
        events = _provision_events(panel.data_dir, "alice")
        return events and "cancelled" in events[0].detail and events[0]

    deadline = time.monotonic() + 30
    while not (event := recorded()):
        assert time.monotonic() < deadline, "the cancelled run is recorded"
        time.sleep(0.05)
    assert not event.ok
    assert "sleep 2999" not in box.exec_run(["ps"]).output.decode()


@pytest.fixture(scope="module")
def quick_panel(tmp_path_factory, docker_client):
    """A panel whose provisioning timeout is two seconds."""
    namespace = f"sptest{secrets.token_hex(3)}"
    server = start_panel(tmp_path_factory.mktemp("quick"), namespace, {"SSHPANEL_PROVISION_TIMEOUT": "2"})
    server.add_user("carol")
    yield server
    stop_panel(server)
    remove_namespace(docker_client, namespace)


def test_timeout_kills_the_script_and_records_a_failure(quick_panel, docker_client):
    """A run that times out is killed with every process it started, also
    those that left its session or process group (issue 26: `setsid` and a
    daemonized `nohup` escaped before)."""
    carol = quick_panel.users["carol"]
    assert quick_panel.run(carol, "run", "--name", "slow", TEST_IMAGE, "sleep", "3600").returncode == 0
    container = docker_client.containers.get(f"{quick_panel.namespace}.carol.slow")
    script = "echo started\nsleep 3000 &\nsleep 3001\necho never\n"
    result = quick_panel.run(carol, "provision", "slow", "-", input=script)
    assert result.returncode == 1
    assert result.stdout == "started\n"
    assert result.stderr == "Error: provisioning timed out after 2s; the script was killed\n"
    processes = container.exec_run(["ps"]).output.decode()
    assert "sleep 300" not in processes, "the script's whole process group is killed"
    event = _provision_events(quick_panel.data_dir, "carol")[0]
    assert not event.ok
    assert "timed out after 2s" in event.detail.splitlines()[0]
    assert event.detail.splitlines()[1:] == ["started"]
    escapees = ("echo started\nsetsid sh -c 'trap \"\" TERM HUP; while :; do sleep 1; done' &\n"
                "(trap '' TERM; exec nohup sh -c 'while :; do sleep 1; done' >/dev/null 2>&1 &)\nsleep 3002\n")
    result = quick_panel.run(carol, "provision", "slow", "-", input=escapees)
    assert result.returncode == 1 and "timed out" in result.stderr
    processes = container.exec_run(["ps", "-o", "pid,args"]).output.decode()
    assert "while :" not in processes and "sleep 3002" not in processes, processes
    longer = quick_panel.run(carol, "provision", "--timeout", "5", "slow", "-", input="echo hi\n")
    assert longer.returncode == 1
    assert "at most 2 seconds" in longer.stderr
