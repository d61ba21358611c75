"""A PostgreSQL restart while the panel runs (issue 19): commands on open
connections say `database unavailable, try again later`, refused logins
are logged at WARNING with the reason, and within 10 s of the server's
return the same panel process serves logins again."""

from __future__ import annotations

import asyncio
import re
import time

import asyncssh
import pytest

from tests.databases import postgres_ctl

pytestmark = pytest.mark.parametrize("database", ["postgres"], indirect=True)


def _connect(panel, user):
    return asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[str(user.key)],
                            known_hosts=None, agent_path=None)


def test_a_database_restart_is_survived_without_restarting_the_panel(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "ps").returncode == 0

    async def during_outage() -> asyncssh.SSHCompletedProcess:
        async with _connect(panel, alice) as conn:
            assert (await conn.run("ps")).exit_status == 0
            await asyncio.to_thread(postgres_ctl, "stop")
            return await conn.run("ps")

    try:
        down = asyncio.run(during_outage())
        assert down.exit_status == 1
        assert "database unavailable, try again later" in down.stderr
        refused = panel.run(alice, "ps")
        assert refused.returncode == 255
        assert re.search(r"WARNING sshpanel\.ssh: login failed user='alice' source=\S+: "
                         r"database unavailable: connection refused \(127\.0\.0\.1:\d+\)", panel.log())
    finally:
        postgres_ctl("start")
    back = time.monotonic()
    while True:
        result = panel.run(alice, "ps", "-a")
        if result.returncode == 0:
            break
        assert time.monotonic() - back < 10, result.stderr
        time.sleep(0.5)
    assert panel.process.poll() is None
    assert panel.run(alice, "whoami").stdout.startswith("alice")
