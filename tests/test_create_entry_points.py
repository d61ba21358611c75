"""`run` and the TUI create form are two doors to one use case
(`Workspace.create_from`, issue 18): the same bad input gets the same
message from both, and what one accepts the other does (an empty name is
generated, ports can be published from the form). `run` goes through the
real SSH server; the form is the real modal, its request handed to the
real backend on the real engine, as the dashboard does."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from textual.widgets import TextArea

from sshpanel.access.principal import Principal
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import load_settings
from sshpanel.errors import NotFound, PanelError
from sshpanel.store import open_store
from sshpanel.tui.screens.create import CreateContainerModal
from tests.conftest import TEST_IMAGE, ssh_available
from tests.test_policy_entry_points import FormHost

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

BAD = [
    # (form field, text, the same as `run` flags)
    ("name", "bad name!", ["--name", "bad name!"]),
    ("name", "x" * 70, ["--name", "x" * 70]),
    ("memory", "lots", ["-m", "lots"]),
    ("memory", "1k", ["-m", "1k"]),
    ("memory", "-5m", ["--memory=-5m"]),
    ("cpus", "abc", ["--cpus", "abc"]),
    ("cpus", "-1", ["--cpus=-1"]),
    ("cpus", "0", ["--cpus", "0"]),
    ("env", "NOEQUALS", ["-e", "NOEQUALS"]),
    ("env", "1BAD=x", ["-e", "1BAD=x"]),
    ("ports", "99999:80", ["-p", "99999:80"]),
    ("ports", "80", ["-p", "80"]),
    ("ports", "8080:80/sctp", ["-p", "8080:80/sctp"]),
    ("ports", "8080:80 8080:80", ["-p", "8080:80", "-p", "8080:80"]),
    ("ports", "8080:80", ["-p", "8080:80"]),          # valid, but outside the user's (empty) port range
    ("volumes", "/etc:/x", ["-v", "/etc:/x"]),
    ("volumes", "data", ["-v", "data"]),
    ("volumes", "a:/d b:/d", ["-v", "a:/d", "-v", "b:/d"]),
]


class Backend:
    """The backend the dashboard holds: one Workspace of alice's."""

    def __init__(self, panel) -> None:
        self.settings = load_settings({"data_dir": panel.data_dir, "namespace": panel.namespace})
        self.store = open_store(self.settings)
        self.engine = Engine(self.settings)
        user = self.store.user_by_name("alice")
        self.workspace = Workspace(Principal(user.id, "alice", user.role, "SHA256:form", "tui-form"),
                                   self.store, self.engine, self.settings)

    def close(self) -> None:
        self.engine.close()
        self.store.close()


@pytest.fixture(scope="module")
def backend(panel):
    opened = Backend(panel)
    yield opened
    opened.close()


async def _submit(fields: dict[str, str]):
    """Fills the real form and presses Ctrl+S: (the request, "") when it
    closed, (None, the message it shows) when it stayed open."""
    app = FormHost()
    async with app.run_test(size=(100, 30)) as pilot:
        while not isinstance(app.screen, CreateContainerModal):
            await pilot.pause()
        form = app.screen
        for key, value in fields.items():
            widget = form.query_one(f"#create-{key}")
            if isinstance(widget, TextArea):
                widget.text = value
            else:
                widget.value = value
        await pilot.press("ctrl+s")
        for _ in range(50):
            if app.result is not None:
                return app.result.request, ""
            if form.error_text:
                return None, form.error_text
            await pilot.pause()
        raise AssertionError("the form neither closed nor said what is wrong")


def form_error(backend, fields: dict[str, str]) -> str:
    """What the user reads after submitting the form: its own message, or
    the backend's when the dashboard creates the container."""
    request, shown = asyncio.run(_submit(fields))
    if request is None:
        return shown
    try:
        view = backend.workspace.create_from(request, start=False)
    except PanelError as exc:
        return exc.message
    backend.workspace.remove(view.name, force=True)
    return ""


@pytest.mark.parametrize("field, text, flags", BAD, ids=[f"{f}={t[:20]}" for f, t, _ in BAD])
def test_run_and_the_form_refuse_alike(panel, backend, field, text, flags):
    result = panel.run(panel.users["alice"], "create", *flags, TEST_IMAGE, "true")
    assert result.returncode == 1, result.stdout
    message = result.stderr.strip().removeprefix("Error: ")
    assert message, result.stderr
    assert form_error(backend, {"name": "web", field: text} if field != "name" else {field: text}) == message


def test_the_form_publishes_ports_and_generates_a_missing_name(panel, backend, docker_client):
    admin = panel.add_user("portsadmin", admin=True)
    assert panel.run(admin, "user", "set-quota", "alice", "--ports", "20100-20110").returncode == 0
    try:
        request, shown = asyncio.run(_submit({"name": "", "ports": "20101:80", "command": "sleep 600"}))
        assert shown == "" and request is not None
        view = backend.workspace.create_from(request, start=True)
        try:
            assert view.name.startswith("busybox-"), view.name
            container = docker_client.containers.get(f"{panel.namespace}.alice.{view.name}")
            assert container.attrs["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == "20101"
        finally:
            with contextlib.suppress(NotFound):
                backend.workspace.remove(view.name, force=True)
        ran = panel.run(panel.users["alice"], "run", "-d", "-p", "20102:80", TEST_IMAGE, "sleep", "600")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip().startswith("busybox-")
        assert panel.run(panel.users["alice"], "rm", "-f", ran.stdout.strip()).returncode == 0
    finally:
        panel.run(admin, "user", "set-quota", "alice", "--ports", "none")
