"""Rendering tests of the TUI with a fake workspace (allowed for rendering only).

Behaviour against Docker is tested through the real backend elsewhere; here
the fake returns fixed records so that what the screen shows can be checked.
"""

from __future__ import annotations

import re

import asyncio
import dataclasses
import datetime as dt
import functools
import gc
import threading
import weakref

import pytest

from sshpanel.access.principal import Principal
from sshpanel.backend.records import QuotaView
from sshpanel.backend.views import ContainerView, ImageView
from sshpanel.config import Settings
from sshpanel.errors import EngineUnavailable, InvalidValue, PanelError
from sshpanel.ssh.driver import neutralise_stdout_redirect
from sshpanel.tui import PanelApp
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.access.spec import CreateRequest, spec_from_request
from sshpanel.tui.screens.create import CreateContainerModal
from sshpanel.tui.widgets.container_table import ContainerTable

NOW = dt.datetime.now(dt.timezone.utc)


def async_test(function):
    """Runs an async test in its own event loop (no pytest plugin needed)."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        asyncio.run(function(*args, **kwargs))

    return run


def view(name: str, state: str = "running", status: str = "Up 3 minutes", minutes: int = 3) -> ContainerView:
    return ContainerView(
        id=(name.encode().hex() + "0" * 64)[:64],
        name=name,
        image="sshpanel-test/busybox:latest",
        state=state,
        status=status,
        ports="127.0.0.1:8080->80/tcp" if name == "web" else "",
        created=NOW - dt.timedelta(minutes=minutes),
        memory=256 * 1024 * 1024,
        cpus=0.5,
        owner="alice",
    )


class FakeWorkspace:
    """Stands in for `Workspace` with the attributes and methods the TUI uses."""

    def __init__(self, containers: list[ContainerView] | None = None) -> None:
        self.principal = Principal(user_id=1, name="alice", role="admin")
        self.settings = Settings()
        if containers is None:
            containers = [view("web"), view("db", "exited", "Exited (0) 1 hour ago", 90)]
        self.views = list(containers)
        self.calls: list[tuple] = []
        self.fail_with: PanelError | None = None
        self.watchers: list = []
        self.unwatched = 0
        self.threads: set[str] = set()

    def _record(self, *call) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)
        if self.fail_with is not None and call[0] not in ("containers", "quota"):
            raise self.fail_with

    def containers(self, all: bool = True) -> list[ContainerView]:
        self._record("containers")
        return list(self.views)

    def images(self) -> list[ImageView]:
        self._record("images")
        return [ImageView("sshpanel-test/busybox:latest", "sha256:" + "1" * 64, 1234)]

    def create_from(self, request, start: bool = False) -> ContainerView:
        spec = spec_from_request(request, request.name or "generated", 256 * 1024 * 1024, 0.5)
        self._record("create", spec, start)
        made = view(spec.name, minutes=0)
        self.views.insert(0, made)
        return made

    def start(self, ref: str) -> str:
        self._record("start", ref)
        return ref

    def stop(self, ref: str) -> str:
        self._record("stop", ref)
        return ref

    def restart(self, ref: str) -> str:
        self._record("restart", ref)
        return ref

    def remove(self, ref: str, force: bool = False) -> str:
        self._record("remove", ref, force)
        self.views = [v for v in self.views if v.name != ref]
        return ref

    def quota(self) -> QuotaView:
        self._record("quota")
        return QuotaView(len(self.views), 10, 256 * 1024 * 1024 * len(self.views), 2 * 1024**3,
                         0.5 * len(self.views), 2.0, 256, None)

    def watch(self, callback):
        self.watchers.append(callback)

        def unsubscribe() -> None:
            self.unwatched += 1
            self.watchers.remove(callback)

        return unsubscribe


def screen_text(app: PanelApp) -> str:
    """The characters on the screen, one line per row."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def settle(pilot, until=lambda: True, timeout: float = 5.0) -> None:
    """Lets workers and messages run until `until()` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await pilot.pause()
        if until():
            await pilot.pause()
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def table(app: PanelApp) -> ContainerTable:
    return app.screen.query_one(ContainerTable)


def notifications(app: PanelApp) -> list:
    return list(app._notifications)


@pytest.fixture
def workspace() -> FakeWorkspace:
    return FakeWorkspace()


@async_test
async def test_table_lists_containers_and_header_shows_user(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        text = screen_text(app)
        assert "alice (admin)" in text
        for column in ("NAME", "IMAGE", "STATE", "STATUS", "PORTS", "CREATED"):
            assert column in text
        assert "web" in text and "db" in text and "running" in text and "exited" in text
        assert re.search(r"\b\d+m ago", text)
        assert table(app).selected_container.name == "web"
        assert "Create" in text and "Remove" in text and "Quit" in text
        # Workspace calls ran in worker threads, never on the event loop's thread.
        assert threading.main_thread().name not in workspace.threads


@async_test
async def test_table_fits_at_120_columns_with_every_column(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        text = screen_text(app)
        assert "sshpanel-test/busybox:latest" in text
        assert "127.0.0.1:8080->80/tcp" in text


@async_test
async def test_empty_workspace_shows_hint():
    app = PanelApp(FakeWorkspace([]))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: "No containers yet" in screen_text(app))
        await pilot.press("s")
        await settle(pilot, lambda: notifications(app))
        assert "No container selected." in [n.message for n in notifications(app)]


@async_test
async def test_engine_event_refreshes_table(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        workspace.views = [dataclasses.replace(workspace.views[0], state="exited", status="Exited (137) 1 second ago")]
        # The events listener calls back from its own thread.
        watcher = workspace.watchers[0]
        thread = threading.Thread(target=lambda: [watcher() for _ in range(5)])
        thread.start()
        thread.join()
        await settle(pilot, lambda: table(app).row_count == 1)
        assert "Exited (137)" in screen_text(app)


@async_test
async def test_c_opens_create_modal_and_invalid_name_stays_open(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, CreateContainerModal))
        text = screen_text(app)
        assert "New container" in text and "256MiB" in text and "sshpanel-test/busybox:latest" in text
        await pilot.press(*"Bad Name!")
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen.error_text)
        assert isinstance(app.screen, CreateContainerModal)
        assert app.screen.error_text.startswith("invalid container name 'Bad Name!'")
        assert "invalid container name 'Bad Name!'" in screen_text(app)
        assert not [c for c in workspace.calls if c[0] == "create"]


@async_test
async def test_create_modal_submits_spec_and_dashboard_creates(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("c")
        await settle(pilot, lambda: isinstance(app.screen, CreateContainerModal))
        await pilot.press(*"cache")
        await pilot.press("enter")
        await settle(pilot, lambda: any(c[0] == "create" for c in workspace.calls))
        _, spec, start = next(c for c in workspace.calls if c[0] == "create")
        assert (spec.name, spec.image, spec.memory, spec.cpus, start) == (
            "cache",
            "sshpanel-test/busybox:latest",
            256 * 1024 * 1024,
            0.5,
            True,
        )
        await settle(pilot, lambda: table(app).row_count == 3)
        assert "Created and started cache" in [n.message for n in notifications(app)]


@async_test
async def test_d_asks_and_cancel_changes_nothing(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Remove container web?" in screen_text(app)
        await pilot.press("enter")  # Cancel has the focus
        await settle(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, ConfirmModal))
        assert not [c for c in workspace.calls if c[0] == "remove"]
        assert table(app).row_count == 2


@async_test
async def test_d_confirmed_removes_with_force_when_running(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await settle(pilot, lambda: table(app).row_count == 1)
        assert ("remove", "web", True) in workspace.calls


@async_test
async def test_panel_error_becomes_notification_and_app_keeps_running(workspace):
    workspace.fail_with = EngineUnavailable("cannot reach the Docker engine")
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("x")
        await settle(pilot, lambda: any(n.severity == "error" for n in notifications(app)))
        error = next(n for n in notifications(app) if n.severity == "error")
        assert (error.title, error.message) == ("Docker engine unavailable", "cannot reach the Docker engine")
        assert app.is_running
        workspace.fail_with = None
        await pilot.press("r")
        await settle(pilot, lambda: "Restarted web" in [n.message for n in notifications(app)])


@async_test
async def test_engine_down_shows_a_banner_until_a_refresh_succeeds(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        dashboard = app.screen
        banner = dashboard.query_one("#engine-banner")
        assert not banner.display
        down = EngineUnavailable("cannot reach the Docker engine")
        workspace.containers = lambda all=True: (_ for _ in ()).throw(down)  # type: ignore[method-assign]
        dashboard.refresh_containers()
        await settle(pilot, lambda: dashboard.has_class("-engine-down"))
        assert banner.display and "Docker engine unavailable" in str(banner.content)
        assert app.is_running
        del workspace.containers
        dashboard.refresh_containers()
        await settle(pilot, lambda: not dashboard.has_class("-engine-down"))
        assert not banner.display and table(app).row_count == 2
        assert "The Docker engine answers again." in [n.message for n in notifications(app)]


@async_test
async def test_unexpected_error_is_shown_without_details(workspace):
    workspace.fail_with = RuntimeError("secret detail")  # type: ignore[assignment]
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("s")
        await settle(pilot, lambda: any(n.severity == "error" for n in notifications(app)))
        error = next(n for n in notifications(app) if n.severity == "error")
        assert "secret" not in error.message and error.title == "Unexpected error"
        assert app.is_running


@async_test
async def test_watch_unsubscribed_when_app_exits(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        assert len(workspace.watchers) == 1
        await pilot.press("q")
    assert workspace.unwatched == 1
    assert workspace.watchers == []


@async_test
async def test_screenshot_is_not_offered_in_the_palette(workspace):
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Quit" in titles and "Screenshot" not in titles


def test_spec_from_request_parses_form_fields():
    request = CreateRequest("busybox:latest", "web", "sh -c 'sleep 1'", "A=1\n\n B=x,y \n", "64m", "1.5", "always")
    spec = spec_from_request(request, "web", 256 << 20, 0.5)
    assert spec.command == ("sh", "-c", "sleep 1")
    assert spec.env == (("A", "1"), ("B", "x,y"))
    assert (spec.memory, spec.cpus, spec.restart) == (64 * 1024 * 1024, 1.5, "always")


@pytest.mark.parametrize(
    "fields, fragment",
    [
        (("", "web", "", "", "64m", "1", "no"), "choose an image"),
        (("busybox:latest", "web", "sh -c 'x", "", "64m", "1", "no"), "invalid command"),
        (("busybox:latest", "web", "", "NOEQUALS", "64m", "1", "no"), "environment variable"),
        (("busybox:latest", "web", "", "", "lots", "1", "no"), "invalid size"),
        (("busybox:latest", "web", "", "", "64m", "-1", "no"), "CPU"),
    ],
)
def test_spec_from_request_rejects_form_fields(fields, fragment):
    with pytest.raises(InvalidValue, match=fragment):
        spec_from_request(CreateRequest(*fields), "web", 256 << 20, 0.5)


@async_test
async def test_app_is_freed_after_exit(workspace):
    # Production runs with the redirect neutralised (a thread started while
    # stderr is redirected keeps the app's capture object in Thread._stderr).
    neutralise_stdout_redirect()
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("s")
        await settle(pilot, lambda: "Started web" in [n.message for n in notifications(app)])
        await pilot.press("q")
    ref = weakref.ref(app)
    del app, pilot
    await asyncio.sleep(0.1)  # let the loop drop its last handles
    gc.collect()
    # The worker threads are still alive here: they must not pin the app.
    assert ref() is None


@async_test
async def test_refreshes_come_once_a_minute_unless_a_time_counts_seconds():
    from sshpanel.tui.screens.dashboard import QUIET_REFRESH, REFRESH_INTERVAL

    old = FakeWorkspace([view("web", minutes=90)])
    young = FakeWorkspace([view("web", status="Up 12 seconds", minutes=90)])
    for workspace, expected in ((old, QUIET_REFRESH), (young, REFRESH_INTERVAL)):
        app = PanelApp(workspace)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot, lambda: table(app).row_count == 1 and app.screen._next_refresh is not None)
            assert app.screen._next_refresh._interval == expected
            await pilot.press("q")
