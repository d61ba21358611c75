"""dockerd stopped while a dashboard is open over SSH: the session stays up
and shows the engine as unavailable, then recovers by itself once dockerd
is back (issue 7)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import TEST_IMAGE, ssh_available
from tests.engine_restart import RESTART_DOCKERD, start_dockerd, stop_dockerd, wait_for
from tests.test_tui_e2e import terminal  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH"),
    pytest.mark.skipif(not RESTART_DOCKERD, reason="stops dockerd: set SSHPANEL_TEST_DOCKERD_RESTART=1"),
    pytest.mark.skipif(shutil.which("pgrep") is None, reason="needs pgrep"),
]


def test_dashboard_survives_the_engine_going_away(panel, terminal):  # noqa: F811 (fixture)
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "steady", TEST_IMAGE, "sleep", "600").returncode == 0
    terminal.wait_for("steady")
    argv = stop_dockerd()
    try:
        terminal.wait_for("Docker engine unavailable", timeout=30)
        assert terminal.alive()
    finally:
        start_dockerd(argv)
    wait_for(lambda: "Docker engine unavailable" not in terminal.screen(), timeout=60, what="the banner to go")
    screen = terminal.wait_for("steady", timeout=30)
    assert "alice (user)" in screen
    terminal.keys("q")
    panel.run(alice, "rm", "-f", "steady")
