"""Sessions end cleanly: after many TUI sessions connect and disconnect (some
abruptly), no Textual App is left alive and nothing is subscribed
(docs/ARCHITECTURE.md invariant 5;
docs/PITFALLS.md "Textual in many sessions in one process": the leak through
the parser cache)."""

from __future__ import annotations

import asyncio
import gc
import secrets

import asyncssh
from textual.app import App

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.config import load_settings
from sshpanel.ssh.server import PanelServer
from sshpanel.store import open_store
from tests.conftest import remove_namespace

SESSIONS = 30


async def _read_until(stdout: asyncssh.SSHReader, needle: str, timeout: float = 30) -> str:
    seen = ""

    async def reader() -> str:
        nonlocal seen
        while needle not in seen:
            chunk = await stdout.read(65536)
            if not chunk:
                break
            seen += chunk
        return seen

    return await asyncio.wait_for(reader(), timeout)


def _live_apps() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, App))


def test_no_app_survives_its_session(tmp_path, docker_client):
    namespace = f"sptest{secrets.token_hex(3)}"
    settings = load_settings(
        {"listen": "127.0.0.1", "port": 0, "data_dir": tmp_path / "data", "host_keys_dir": tmp_path / "hk",
         "namespace": namespace}
    )
    key = asyncssh.generate_private_key("ssh-ed25519")

    baseline = _live_apps()  # apps other tests in this process still hold

    async def scenario() -> tuple[int, int]:
        server = PanelServer(settings, open_store(settings))
        await server.start()
        subscribed_by_server = server.events.subscriber_count
        await asyncio.to_thread(
            Accounts(server.store, settings).add_user, "alice", [key.export_public_key().decode()]
        )
        try:
            for i in range(SESSIONS):
                conn = await asyncssh.connect(
                    "127.0.0.1", server.port, username="alice", client_keys=[key], known_hosts=None, agent_path=None
                )
                process = await conn.create_process(term_type="xterm-256color", term_size=(80, 24))
                await _read_until(process.stdout, "alice")
                if i % 3 == 0:
                    conn.abort()
                elif i % 3 == 1:
                    process.stdin.write("q")
                    await asyncio.wait_for(process.wait(), 20)
                    conn.close()
                else:
                    conn.close()
                await conn.wait_closed()
            deadline = asyncio.get_running_loop().time() + 30
            while (server.connections or _live_apps() > baseline) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            return _live_apps(), server.events.subscriber_count - subscribed_by_server
        finally:
            await server.stop()

    try:
        apps, subscribers = asyncio.run(scenario())
    finally:
        remove_namespace(docker_client, namespace)
    assert apps <= baseline
    assert subscribers == 0


def test_quit_key_ends_the_session_with_status_zero(panel):
    alice = panel.users["alice"]

    async def scenario() -> int:
        async with asyncssh.connect(
            "127.0.0.1", panel.port, username="alice", client_keys=[str(alice.key)], known_hosts=None, agent_path=None
        ) as conn:
            process = await conn.create_process(term_type="xterm", term_size=(100, 30))
            await _read_until(process.stdout, "alice")
            process.stdin.write("q")
            result = await asyncio.wait_for(process.wait(), 20)
            return result.exit_status

    assert asyncio.run(scenario()) == 0
