"""Rendering tests of the quota bar, the edit form and the admin area with
fake services (allowed for rendering only).

What the admin actions do to users, keys and containers is tested against
the real server in tests/test_admin.py and tests/test_tui_admin_e2e.py;
here fixed records check what the screens show and which calls they make.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest

from sshpanel.access.principal import Principal
from sshpanel.backend.admin.host import HostView
from sshpanel.backend.records import AuditView, KeyView, QuotaView, UserView
from sshpanel.errors import PermissionDenied, QuotaExceeded
from sshpanel.tui import PanelApp
from sshpanel.tui.screens.admin_audit import AuditLogScreen
from sshpanel.tui.screens.admin_containers import AdminContainersScreen
from sshpanel.tui.screens.admin_host import HostScreen
from sshpanel.tui.screens.admin_users import AdminUsersScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.edit import EditContainerModal, restart_policy
from sshpanel.tui.screens.keys import UserKeysModal
from sshpanel.tui.screens.user_forms import NewUserModal, QuotaModal, quota_changes
from sshpanel.tui.widgets.admin_tables import AllContainersTable, AuditTable, UserTable
from sshpanel.tui.widgets.quota_bar import QuotaBar, meter
from tests.test_tui_render import FakeWorkspace, async_test, notifications, screen_text, settle, view

MIB = 1024 * 1024
NOW = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
FINGERPRINT = "SHA256:" + "A" * 43


def quota(containers: int = 2, memory: int = 512 * MIB, cpus: float = 1.0) -> QuotaView:
    return QuotaView(containers, 10, memory, 2048 * MIB, cpus, 2.0, 256, None)


def user(name: str, role: str = "user", disabled: bool = False, containers: int = 2) -> UserView:
    return UserView(name, role, disabled, 1, 1, quota(containers), False, NOW, NOW - dt.timedelta(hours=3))


class EditableWorkspace(FakeWorkspace):
    """A fake workspace that also answers `inspect`, `update` and `quota`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events = None
        self.update_fails: Exception | None = None

    def inspect(self, ref: str) -> dict:
        self._record("inspect", ref)
        return {"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}}

    def update(self, ref: str, memory=None, cpus=None, restart=None):
        self._record("update", ref, memory, cpus, restart)
        if self.update_fails is not None:
            raise self.update_fails
        return next(v for v in self.views if v.id == ref)


class FakeAdmin:
    """Stands in for `Admin` with the methods the admin screens call."""

    def __init__(self) -> None:
        self.workspace = EditableWorkspace()
        self.workspace.principal = Principal(user_id=1, name="root1", role="admin")
        self.principal = self.workspace.principal
        self.calls: list[tuple] = []
        self.threads: set[str] = set()
        self.fail_with: Exception | None = None
        self.user_list = [user("alice", containers=0), user("bob"), user("root1", "admin")]
        self.key_list = [KeyView("ssh-ed25519", FINGERPRINT, "bob@laptop", "ssh-ed25519 AAAA bob@laptop", NOW, None)]
        self.owned = {"alice": EditableWorkspace(), "bob": EditableWorkspace([view("api")])}
        self.unprivileged = True

    def _record(self, *call) -> None:
        self.threads.add(threading.current_thread().name)
        self.calls.append(call)
        if self.fail_with is not None and call[0] not in ("users", "containers"):
            raise self.fail_with

    def users(self):
        self._record("users")
        return list(self.user_list)

    def add_user(self, name, admin=False, keys=""):
        self._record("add_user", name, admin, keys)
        made = user(name, "admin" if admin else "user", containers=0)
        self.user_list.append(made)
        return made

    def remove_user(self, name, force=False):
        self._record("remove_user", name, force)
        self.user_list = [u for u in self.user_list if u.name != name]
        return []

    def set_disabled(self, name, disabled):
        self._record("set_disabled", name, disabled)
        self.user_list = [dataclasses.replace(u, disabled=disabled) if u.name == name else u for u in self.user_list]

    def set_role(self, name, role):
        self._record("set_role", name, role)

    def set_quota(self, name, **changes):
        self._record("set_quota", name, changes)
        return quota()

    def keys(self, name):
        self._record("keys", name)
        return list(self.key_list)

    def add_key(self, name, line):
        self._record("add_key", name, line)
        key = KeyView("ssh-ed25519", "SHA256:" + "B" * 43, "new", line, NOW, None)
        self.key_list.append(key)
        return key

    def remove_key(self, name, fingerprint):
        self._record("remove_key", name, fingerprint)
        key = next(k for k in self.key_list if k.fingerprint == fingerprint)
        self.key_list.remove(key)
        return key

    def containers(self):
        self._record("containers")
        alice = [dataclasses.replace(v, owner="alice") for v in self.owned["alice"].views]
        bob = [dataclasses.replace(v, owner="bob") for v in self.owned["bob"].views]
        return alice + bob

    def workspace_of(self, name):
        self._record("workspace_of", name)
        return self.owned[name]

    def audit_log(self, user=None, since=None, action=None, outcome=None, limit=200):
        self._record("audit_log", user, action, outcome)
        entries = [
            AuditView(NOW, "bob", "SHA256:x", "127.0.0.1:5000", "run", "web", "ok"),
            AuditView(NOW - dt.timedelta(minutes=1), "alice", "SHA256:y", "127.0.0.1:5001", "user.ls", "",
                      "failed: permission denied"),
        ]
        return [e for e in entries if (user is None or e.actor == user)
                and (outcome is None or e.outcome.startswith(outcome))]

    def host(self):
        self._record("host")
        return HostView(37.5, (25.0, 50.0), 4096 * MIB, 1024 * MIB, 0, 0, "/var/lib/docker", 100 * 1024 * MIB,
                        40 * 1024 * MIB, (0.5, 0.25, 0.1), 3 * 86400 + 4 * 3600 + 5 * 60, "20.10.24", "1.41",
                        3, 0, 2, 5, 4, self.unprivileged)


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


def admin_app(admin: FakeAdmin) -> PanelApp:
    return PanelApp(admin.workspace, admin)


async def open_users(app: PanelApp, pilot) -> None:
    await settle(pilot, lambda: app.screen.query("QuotaBar") and app.screen.query_one(QuotaBar).quota is not None)
    await pilot.press("a")
    await settle(pilot, lambda: isinstance(app.screen, AdminUsersScreen) and app.screen.table.row_count == 3)


def messages(app: PanelApp) -> list[str]:
    return [n.message for n in notifications(app)]


# Dashboard: quota bar, edit form, admin key ----------------------------------


@async_test
async def test_quota_bar_shows_usage_against_quota_at_80_columns():
    workspace = EditableWorkspace()
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.screen.query_one(QuotaBar).quota is not None)
        line = next(line for line in screen_text(app).splitlines() if "Containers" in line)
        assert "2/10" in line and "512MiB/2GiB" in line and "1/2" in line
        assert len(line.rstrip()) <= 80


def test_meter_colours_and_bounds():
    assert meter(1, 4, 8).plain == "██░░░░░░"
    assert meter(0.01, 100, 4).plain == "█░░░"  # a little use stays visible
    assert meter(5, 4, 4).plain == "████" and meter(5, 4, 4).spans[0].style == "red"
    assert meter(0, 0, 3).plain == "███"  # nothing allowed reads as full
    assert meter(1, 2, 0).plain == ""


@async_test
async def test_e_opens_edit_form_with_current_limits_and_saves():
    workspace = EditableWorkspace()
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.screen.query_one(QuotaBar).quota is not None)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, EditContainerModal))
        await settle(pilot, lambda: "on-failure:3" in screen_text(app))
        text = screen_text(app)
        assert "Edit web" in text and "256MiB" in text and "0.5" in text
        await pilot.press("ctrl+a", "ctrl+k", *"1g", "enter")
        await settle(pilot, lambda: not isinstance(app.screen, EditContainerModal))
        update = next(c for c in workspace.calls if c[0] == "update")
        assert update[2:] == (1024 * MIB, 0.5, "on-failure:3")
        await settle(pilot, lambda: "Updated web" in messages(app))
        assert threading.main_thread().name not in workspace.threads


@async_test
async def test_edit_form_shows_quota_error_inline_and_stays_open():
    workspace = EditableWorkspace()
    workspace.update_fails = QuotaExceeded("memory quota exceeded by 1.75GiB (2GiB allowed)")
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.screen.query_one(QuotaBar).quota is not None)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, EditContainerModal))
        await pilot.press("ctrl+a", "ctrl+k", *"4g", "ctrl+s")
        await settle(pilot, lambda: app.screen.error_text)
        assert isinstance(app.screen, EditContainerModal)
        assert "memory quota exceeded by 1.75GiB" in screen_text(app)
        assert "Quota exceeded" in [n.title for n in notifications(app)]
        await pilot.press("ctrl+a", "ctrl+k", *"lots", "enter")
        await settle(pilot, lambda: app.screen.error_text.startswith("invalid size"))
        assert len([c for c in workspace.calls if c[0] == "update"]) == 1


@async_test
async def test_admin_key_is_hidden_and_refused_for_users():
    workspace = EditableWorkspace()
    workspace.principal = Principal(user_id=2, name="bob", role="user")
    workspace.audit = []
    workspace.audited = lambda action, target: _Audit(workspace.audit, action, target)
    app = PanelApp(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: app.screen.query_one(QuotaBar).quota is not None)
        assert "Admin" not in screen_text(app).splitlines()[-1]
        await pilot.press("a")
        await settle(pilot, lambda: any(n.severity == "error" for n in notifications(app)))
        error = next(n for n in notifications(app) if n.severity == "error")
        assert error.title == "Permission denied"
        assert not isinstance(app.screen, AdminUsersScreen)
        assert workspace.audit == [("admin", "dashboard", "failed")]


class _Audit:
    """Records what `Workspace.audited` would write."""

    def __init__(self, log: list, action: str, target: str) -> None:
        self.log, self.action, self.target = log, action, target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        self.log.append((self.action, self.target, "ok" if kind is None else "failed"))
        return False


# Users -----------------------------------------------------------------------


@async_test
async def test_users_table_at_80x24(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        text = screen_text(app)
        assert "sshpanel admin" in text
        for heading in ("NAME", "ROLE", "STATUS", "KEYS", "LAST"):
            assert heading in text
        assert "1 Users" in text and "4 Audit log" in text
        assert "bob" in text and "admin" in text and "enabled" in text and "3h ago" in text
        assert "512MiB/2GiB" in text
        assert all(len(line) <= 80 for line in text.splitlines())
        assert threading.main_thread().name not in admin.threads


@async_test
async def test_disable_asks_first_then_disables(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("down")  # bob
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Disable bob?" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot, lambda: isinstance(app.screen, AdminUsersScreen))
        assert not [c for c in admin.calls if c[0] == "set_disabled"]
        await pilot.press("x")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await settle(pilot, lambda: "Disabled bob" in messages(app))
        assert ("set_disabled", "bob", True) in admin.calls
        await settle(pilot, lambda: "disabled" in screen_text(app))
        await pilot.press("x")  # enabling needs no confirmation
        await settle(pilot, lambda: ("set_disabled", "bob", False) in admin.calls)


@async_test
async def test_delete_user_with_containers_confirms_and_forces(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("down", "d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Their 2 container(s) will be removed too" in app.screen.question
        await pilot.press("y")
        await settle(pilot, lambda: ("remove_user", "bob", True) in admin.calls)
        await settle(pilot, lambda: app.screen.table.row_count == 2)


@async_test
async def test_new_user_form_creates_and_shows_backend_error_inline(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, NewUserModal))
        await pilot.press(*"carol", "tab", "space", "ctrl+s")
        await settle(pilot, lambda: ("add_user", "carol", True, "") in admin.calls)
        await settle(pilot, lambda: isinstance(app.screen, AdminUsersScreen) and app.screen.table.row_count == 4)
        admin.fail_with = PermissionDenied("permission denied: you are no longer an admin")
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, NewUserModal))
        await pilot.press(*"dave", "enter")
        await settle(pilot, lambda: app.screen.error_text)
        assert "no longer an admin" in screen_text(app)
        assert "Permission denied" in [n.title for n in notifications(app)]


@async_test
async def test_quota_form_sends_only_changes(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("down", "e")
        await settle(pilot, lambda: isinstance(app.screen, QuotaModal))
        assert "Quotas of bob" in screen_text(app) and "2GiB" in screen_text(app)
        await pilot.press("ctrl+a", "ctrl+k", *"3", "ctrl+s")
        await settle(pilot, lambda: any(c[0] == "set_quota" for c in admin.calls))
        assert ("set_quota", "bob", {"containers": 3}) in admin.calls
        await settle(pilot, lambda: "Saved the quotas of bob" in messages(app))


def test_quota_changes_parses_and_compares():
    before = QuotaView(0, 10, 0, 1234567890, 0.0, 2.0, 256, None)
    # The prefilled memory text is rounded; unchanged it changes nothing.
    assert quota_changes(before, "10", "1.15GiB", "2", "256", "none") == {}
    assert quota_changes(before, "0", "0", "0", "100", "8000-8099") == {
        "containers": 0, "memory": 0, "cpus": 0.0, "pids": 100, "ports": "8000-8099"}
    with pytest.raises(Exception, match="container count"):
        quota_changes(before, "-1", "1g", "1", "256", "none")


@async_test
async def test_keys_modal_lists_adds_and_removes(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("down", "k")
        await settle(pilot, lambda: isinstance(app.screen, UserKeysModal) and app.screen.table.row_count == 1)
        text = screen_text(app)
        assert "Keys of bob" in text and FINGERPRINT in text and "ssh-ed25519" in text
        line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB new"
        await pilot.press(*line, "enter")
        await settle(pilot, lambda: app.screen.table.row_count == 2)
        assert ("add_key", "bob", line) in admin.calls
        await pilot.press("tab", "d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await settle(pilot, lambda: ("remove_key", "bob", FINGERPRINT) in admin.calls)
        await settle(pilot, lambda: isinstance(app.screen, UserKeysModal) and app.screen.table.row_count == 1)


# Containers, host, audit -----------------------------------------------------


@async_test
async def test_all_containers_with_owner_and_actions_through_owner(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("2")
        await settle(pilot, lambda: isinstance(app.screen, AdminContainersScreen)
                     and app.screen.query_one(AllContainersTable).row_count == 3)
        text = screen_text(app)
        assert "OWNER" in text and "alice" in text and "bob" in text and "api" in text
        assert all(len(line) <= 80 for line in text.splitlines())
        await pilot.press("down", "down", "x")  # bob's api
        await settle(pilot, lambda: ("stop", "api") in admin.owned["bob"].calls)
        assert ("workspace_of", "bob") in admin.calls
        await pilot.press("d")
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert "Remove bob's container api?" in screen_text(app)
        await pilot.press("y")
        await settle(pilot, lambda: ("remove", "api", True) in admin.owned["bob"].calls)


@async_test
async def test_host_screen_refreshes_only_while_shown(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("3")
        await settle(pilot, lambda: isinstance(app.screen, HostScreen) and "Docker 20.10.24" in screen_text(app))
        text = screen_text(app)
        assert "37.5%" in text and "cpu0" in text and "cpu1" in text and "50%" in text
        assert "1GiB / 4GiB (25%)" in text and "/var/lib/docker" in text
        assert "3 days, 4:05" in text and "3 running" in text and "5 total" in text
        assert "Unprivileged true" in text
        screen = app.screen
        assert screen._timer._active.is_set()  # measuring while shown
        app.push_screen(ConfirmModal("covering the host screen?"))
        await settle(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert not screen._timer._active.is_set()  # paused while covered
        await pilot.press("escape")
        await settle(pilot, lambda: screen._timer._active.is_set())
        await pilot.press("4")
        await settle(pilot, lambda: isinstance(app.screen, AuditLogScreen))
        assert not screen.is_attached  # gone, and its timer with it


@async_test
async def test_host_screen_says_when_container_root_is_host_root(admin):
    admin.unprivileged = False
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("3")
        await settle(pilot, lambda: isinstance(app.screen, HostScreen) and "Docker 20.10.24" in screen_text(app))
        assert "Unprivileged false (root in a container is root on the host)" in screen_text(app)



@async_test
async def test_audit_log_newest_first_and_filters(admin):
    app = admin_app(admin)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_users(app, pilot)
        await pilot.press("4")
        await settle(pilot, lambda: isinstance(app.screen, AuditLogScreen)
                     and app.screen.query_one(AuditTable).row_count == 2)
        text = screen_text(app)
        assert text.index(" run ") < text.index("user.ls")
        assert "127.0.0.1:5000" in text  # the selected entry in full
        await pilot.click("#audit-user")
        await pilot.press(*"alice")
        await settle(pilot, lambda: app.screen.query_one(AuditTable).row_count == 1)
        assert ("audit_log", "alice", None, None) in admin.calls
        assert "permission denied" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, AuditLogScreen))


@async_test
async def test_admin_screens_fit_120x35(admin):
    app = admin_app(admin)
    async with app.run_test(size=(120, 35)) as pilot:
        await open_users(app, pilot)
        for key, screen_type in (("2", AdminContainersScreen), ("3", HostScreen), ("4", AuditLogScreen)):
            await pilot.press(key)
            await settle(pilot, lambda: isinstance(app.screen, screen_type))
        await pilot.press("1")
        await settle(pilot, lambda: isinstance(app.screen, AdminUsersScreen) and app.screen.table.row_count == 3)
        assert "CONTAINERS" in screen_text(app) and "LAST LOGIN" in screen_text(app)


def test_restart_policy_from_inspect():
    assert restart_policy({}) == "no"
    assert restart_policy({"HostConfig": {"RestartPolicy": {"Name": "always"}}}) == "always"
    assert restart_policy({"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5}}}) == (
        "on-failure:5")


def test_user_table_formats_usage():
    cells = UserTable().cells(user("bob"))
    assert [cell.plain for cell in cells][:5] == ["bob", "user", "enabled", "1", "1/2 of 10"]
