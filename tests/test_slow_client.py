"""A client that stops reading cannot make the server hold its output
without bound (issue 24 item 2): its dashboard session ends once the
channel holds `MAX_WRITE_BUFFER` bytes the client has not taken, the
server's memory stays within a stated bound, and another user is served
meanwhile. A real asyncssh client, which stops granting window when its
reader is not read (RFC 4254 §5.2 flow control)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncssh
import pytest

from sshpanel.ssh.driver import MAX_WRITE_BUFFER
from tests.conftest import ssh_available, wait_for

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

RSS_BOUND = 256 * 2**20
"""Bytes the server may grow by while one client floods itself: the
channel's cap, the app's frames of a 1000×500 screen and the allocator's
slack (before the cap, 10000×10000 took 450 MiB)."""


def _rss(pid: int) -> int:
    """The process's resident memory, bytes (`VmRSS`)."""
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match
    return int(match.group(1)) * 1024


async def _flood_without_reading(panel, user) -> bool:
    """Opens a 10000×10000 dashboard, never reads its output and makes it
    redraw the whole screen again and again (size changes); returns True
    once the server ended the session (the channel closed)."""
    key = asyncssh.read_private_key(str(user.key))
    async with asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[key],
                                known_hosts=None) as conn:
        process = await conn.create_process(term_type="xterm-256color", term_size=(10000, 10000), encoding=None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        width = 1000
        while loop.time() < deadline and "stopped reading its output" not in panel.log():
            width = 999 if width == 1000 else 1000
            process.change_terminal_size(width, 500)
            await asyncio.sleep(0.2)
        return "stopped reading its output" in panel.log()


def test_a_client_that_stops_reading_ends_its_session_with_bounded_memory(panel):
    alice, bob = panel.users["alice"], panel.users["bob"]
    before = _rss(panel.process.pid)
    assert asyncio.run(_flood_without_reading(panel, alice)), panel.log()[-2000:]
    grown = _rss(panel.process.pid) - before
    assert grown < RSS_BOUND, f"the server grew by {grown} bytes (cap per session {MAX_WRITE_BUFFER})"
    # Everyone else is still served.
    done = panel.run(bob, "whoami")
    assert done.returncode == 0 and "bob" in done.stdout
    wait_for(lambda: panel.run(alice, "whoami").returncode == 0, what="alice served again")
