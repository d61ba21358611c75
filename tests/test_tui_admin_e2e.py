"""End to end through the admin area as a person uses it: the real OpenSSH
client in a tmux terminal of 80x24, a real panel server, and the effect
checked from outside (logins refused, the audit log)."""

from __future__ import annotations

import asyncio
import json
import secrets

import asyncssh
import pytest

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.config import load_settings
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store
from tests.conftest import SSH_BASE, remove_namespace
from tests.test_sessions import _live_apps, _read_until
from tests.test_tui_e2e import Terminal, _wait


def dashboard(panel, name: str, suffix: str) -> Terminal:
    """Opens the dashboard of `name` in an 80x24 tmux terminal."""
    user = panel.users[name]
    command = [*SSH_BASE[:-2], "-tt", "-i", str(user.key), "-p", str(panel.port), f"{name}@127.0.0.1"]
    return Terminal(f"sshpanel-{panel.namespace}-{suffix}", command, width=80, height=24)


def audit(panel, admin, *filters: str) -> list[dict]:
    result = panel.run(admin, "audit", "--format", "json", *filters)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def root1(panel):
    return panel.users.get("root1") or panel.add_user("root1", admin=True)


def test_admin_disables_bob_from_the_users_screen(panel, root1):
    bob = panel.users["bob"]
    assert panel.run(bob, "whoami").returncode == 0
    bob_term = dashboard(panel, "bob", "bob")
    admin_term = dashboard(panel, "root1", "root1")
    try:
        bob_term.wait_for("bob (user)")
        admin_term.wait_for("root1 (admin)")
        _wait(lambda: "a Admin" in admin_term.screen())
        admin_term.keys("a")
        screen = admin_term.wait_for("root1  admin")
        assert "LAST LOGIN" in screen and "alice" in screen and "bob " in screen
        assert all(len(line) <= 80 for line in screen.splitlines())

        # Rows are sorted by name: alice, bob, root1.
        admin_term.keys("Down", "x")
        admin_term.wait_for("Disable bob?")
        admin_term.keys("y")
        admin_term.wait_for("Disabled bob")

        # Bob's open session is closed, and his next login is refused.
        _wait(lambda: not bob_term.alive())
        refused = panel.run(bob, "whoami")
        assert refused.returncode != 0 and refused.stdout == ""
        entries = audit(panel, root1, "--action", "user.disable")
        assert [(e["User"], e["Target"], e["Outcome"]) for e in entries] == [("root1", "bob", "ok")]

        # Enabling needs no confirmation; bob may log in again.
        admin_term.keys("x")
        admin_term.wait_for("Enabled bob")
        _wait(lambda: panel.run(bob, "whoami").returncode == 0)

        admin_term.keys("Escape")
        admin_term.wait_for("root1 (admin)")
        admin_term.keys("q")
        _wait(lambda: not admin_term.alive())
    finally:
        bob_term.close()
        admin_term.close()


def test_admin_key_is_refused_to_a_user_and_audited(panel, root1):
    term = dashboard(panel, "alice", "alice")
    try:
        screen = term.wait_for("alice (user)")
        _wait(lambda: "q Quit" in term.screen())
        assert "Admin" not in term.screen()
        term.keys("a")
        screen = term.wait_for("Permission denied")
        assert "sshpanel admin" not in screen and "LAST LOGIN" not in screen
        entries = audit(panel, root1, "--user", "alice", "--action", "admin")
        assert len(entries) == 1 and entries[0]["Outcome"].startswith("failed: permission denied")
        term.keys("q")
        _wait(lambda: not term.alive())
    finally:
        term.close()


def test_admin_sessions_leave_no_app_and_no_subscriber(tmp_path, docker_client):
    """The admin screens follow Docker events and measure the host: after
    sessions that visited them end (some abruptly), nothing is left."""
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings(
        {"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data", "host_keys_dir": tmp_path / "hk",
         "namespace": namespace}
    )
    key = asyncssh.generate_private_key("ssh-ed25519")
    baseline = _live_apps()

    async def scenario() -> tuple[int, int]:
        server = PanelServer(settings, open_store(settings))
        await server.start()
        await asyncio.to_thread(
            Accounts(server.store, settings).add_user, "root1", [key.export_public_key().decode()], True
        )
        own_subscribers = server.events.subscriber_count  # the server's own (stats collector)
        try:
            for i in range(6):
                conn = await asyncssh.connect(
                    "127.0.0.1", server.port, username="root1", client_keys=[key], known_hosts=None, agent_path=None
                )
                process = await conn.create_process(term_type="xterm-256color", term_size=(80, 24))
                await _read_until(process.stdout, "root1")
                process.stdin.write("a")
                await _read_until(process.stdout, "LAST")
                process.stdin.write("2" if i % 2 else "3")
                await _read_until(process.stdout, "OWNER" if i % 2 else "Engine")
                if i % 2:
                    conn.abort()
                else:
                    conn.close()
                await conn.wait_closed()
            deadline = asyncio.get_running_loop().time() + 30
            while (server.connections or _live_apps() > baseline) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            return _live_apps(), server.events.subscriber_count - own_subscribers
        finally:
            await server.stop()

    try:
        apps, left_subscribed = asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert apps <= baseline
    assert left_subscribed == 0


def test_edit_form_changes_limits_live_within_quota(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "sized", "-m", "64m", "sshpanel-test/busybox", "sleep", "600").returncode == 0
    name = f"{panel.namespace}.alice.sized"
    term = dashboard(panel, "alice", "alice-edit")
    try:
        term.wait_for("sized")
        term.wait_for("64MiB/2GiB")  # the quota bar
        term.keys("e")
        term.wait_for("Edit sized")
        term.wait_for("no ")  # the current restart policy, read from Docker
        term.keys("C-a", "C-k")
        term.type("3g")
        term.keys("C-s")
        screen = term.wait_for("memory quota")
        assert "Edit sized" in screen  # the form stays open with the reason
        assert docker_client.containers.get(name).attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024

        term.keys("C-a", "C-k")
        term.type("128m")
        term.keys("C-s")
        _wait(lambda: docker_client.containers.get(name).attrs["HostConfig"]["Memory"] == 128 * 1024 * 1024)
        term.wait_for("Updated sized")
        term.wait_for("128MiB/2GiB")
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "sized")
