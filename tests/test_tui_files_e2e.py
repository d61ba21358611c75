"""The dashboard's file browser and build screen through a real SSH
terminal: see uploaded files, delete one after a confirmation, build a
folder with a progress bar per step, deploy the result (issue 6)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import TEST_IMAGE, ssh_available
from tests.test_tui_e2e import _wait, terminal  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")


def test_browse_delete_build_deploy(panel, docker_client, terminal):  # noqa: F811 (fixture)
    home = panel.data_dir / "homes" / "alice"
    site = home / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "Dockerfile").write_text(
        f"FROM {TEST_IMAGE}\nCOPY index.html /www/\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n")
    (site / "index.html").write_text("hello\n")
    (home / "old.log").write_text("x" * 2048)
    os.symlink("/etc", home / "etc-link")
    terminal.wait_for("alice (user)")
    terminal.keys("f")
    screen = terminal.wait_for("old.log")
    assert "site/" in screen and "2KiB" in screen and "etc-link (symlink)" in screen
    # Delete old.log (the third row: folders come first, then by name).
    terminal.keys("Down", "Down")
    terminal.keys("d")
    terminal.wait_for("Delete old.log?")
    terminal.keys("y")
    _wait(lambda: not (home / "old.log").exists(), screen=terminal.screen)
    assert os.path.isdir("/etc")
    # Build the site folder: the step bar, the log, then deploy it.
    terminal.keys("Up", "Up")
    terminal.keys("b")
    screen = terminal.wait_for("press d to deploy it as site", timeout=120)
    assert "Step 4 of 4" in screen and "100%" in screen
    terminal.keys("d")
    terminal.wait_for("site runs", timeout=60)
    running = docker_client.containers.get(f"{panel.namespace}.alice.site")
    assert running.status == "running"
    running.remove(force=True)
    for image in docker_client.images.list(name=f"{panel.namespace}/alice/site"):
        docker_client.images.remove(image.id, force=True)
