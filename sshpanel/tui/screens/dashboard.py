"""Provides `DashboardScreen`, the user's containers and what can be done to them."""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Header, Static

from sshpanel.access.text import quoted
from sshpanel.backend.pipeline.deploy import Deployer, DeployResult
from sshpanel.backend.user.history import HistoryEntry
from sshpanel.backend.records import QuotaView
from sshpanel.backend.views import ContainerView, ImageView
from sshpanel.errors import EngineUnavailable, PermissionDenied
from sshpanel.tui.screens.admin import admin_area
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.container_screen import ContainerScreen
from sshpanel.tui.screens.container_stats import ContainerStatsScreen
from sshpanel.tui.screens.create import CreateContainerModal, NewContainer
from sshpanel.tui.screens.edit import EditContainerModal
from sshpanel.tui.screens.files import FilesScreen
from sshpanel.tui.start import StartAt
from sshpanel.tui.widgets.container_table import ContainerTable
from sshpanel.tui.widgets.history_views import last_record_text
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.quota_bar import QuotaBar
from sshpanel.tui.widgets.stats_panel import ContainerMonitor

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin
    from sshpanel.backend.user.workspace import Workspace
    from sshpanel.tui.services import PanelServices

REFRESH_INTERVAL = 5.0
"""Seconds between retries while the engine is down or the last refresh
failed."""

QUIET_REFRESH = 60.0
"""Seconds between refreshes while all is well and no relative time on the
screen counts seconds. Docker events bring every change (and the listener's
loss of the engine); this only renews relative times ("Up 3 minutes", which
Docker words in whole minutes past the first; while a container is younger
than that, the refresh comes every `REFRESH_INTERVAL`) and quotas an admin
changed. A poll every 5 s by each of 100 idle sessions
cost 13 % of a core, every 15 s 5-9 % (issue 8, benchmarks/RESULTS.md)."""

EVENT_DEBOUNCE = 0.2
"""Seconds to wait after a Docker event so that a burst causes one refresh."""


class DashboardScreen(ContainerScreen):
    """The user's containers in a table that follows Docker, with actions.

    Every `Workspace` call runs in a thread worker (the calls block on Docker
    and the database) through `call_backend`; results and errors come back
    as messages, and every error is shown by `show_error`.

    Args:
        workspace: The user's workspace.
        admin: The admin service, only for admins: without it the admin
            area cannot be opened (and the `a` key is not even shown).
        services: The session's other services (shell, scripts, logs,
            stats, history); without them those keys are not offered.
        start: A deep link: the container to select, and whether to open
            its log view (see `StartAt`).
    """

    BINDINGS = [
        Binding("c", "create_container", "Create"),
        Binding("s", "start_container", "Start"),
        Binding("x", "stop_container", "Stop"),
        Binding("t", "stop_container", "Stop", show=False),
        Binding("r", "restart_container", "Restart"),
        Binding("d", "remove_container", "Remove"),
        Binding("e", "edit_container", "Edit", show=False),
        Binding("o", "open_shell", "Shell", show=False),
        Binding("l", "open_logs", "Logs", show=False),
        Binding("p", "provision_container", "Provision", show=False),
        Binding("h", "open_history", "History"),
        Binding("f", "open_files", "Files", show=False),
        Binding("b", "deploy_container", "Deploy", show=False),
        Binding("B", "rollback_container", "Rollback", show=False),
        Binding("i", "open_scripts", "Scripts"),
        Binding("y", "copy_container", "Copy", show=False),
        Binding("a", "open_admin", "Admin"),
        Binding("a", "refuse_admin", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    class EngineChanged(Message):
        """Docker reported a change to one of the user's containers."""

    def __init__(self, workspace: Workspace, admin: Admin | None = None, services: PanelServices | None = None,
                 start: StartAt | None = None) -> None:
        super().__init__(services)
        self.start = start
        """A deep link still to follow, once the first table is shown."""
        self.workspace = workspace
        """The user's workspace; only ever called from thread workers."""
        self.admin = admin
        """The admin service (None unless the user is an admin)."""
        self._unwatch: Callable[[], None] | None = None
        self._debounce: Timer | None = None
        self._refreshing = False
        """Whether a reload of the table is under way."""
        self._refresh_again = False
        self._last_refresh_error: str | None = None
        self._last_record_error: str | None = None
        self._next_refresh: Timer | None = None
        self._counting_seconds = False
        """Whether a relative time shown counts seconds ("Up 12 seconds")."""

    def compose(self) -> ComposeResult:
        """Builds the header, the table, an empty-state hint and the key footer."""
        yield Header()
        yield Static("", id="engine-banner", markup=False)
        yield QuotaBar(id="quota-bar")
        yield ContainerTable(cursor_moved=self.selection_changed, id="container-table")
        yield Static("No containers yet. Press c to create one.", id="empty-hint", markup=False)
        if self.services is not None:
            yield ContainerMonitor(self.services.stats, id="container-monitor")
            yield Static("", id="last-record", markup=False)
        yield KeyFooter(show_command_palette=False)

    def on_mount(self) -> None:
        """Shows who is logged in, follows Docker events and loads the table."""
        principal = self.workspace.principal
        self.title = "sshpanel"
        self.sub_title = f"{principal.name} ({principal.role})"
        # watch() only registers a callback (no I/O), so it may run on the loop.
        self._unwatch = self.workspace.watch(self._on_engine_event)
        self.refresh_containers()

    def on_unmount(self) -> None:
        """Stops following Docker events, so the listener lets go of this screen."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    @property
    def table(self) -> ContainerTable:
        """The container table."""
        return self.query_one(ContainerTable)

    # Refreshing -----------------------------------------------------------

    def _on_engine_event(self) -> None:
        """Runs in the events listener thread: only posts a message (thread-safe)."""
        self.post_message(self.EngineChanged())

    def on_dashboard_screen_engine_changed(self, message: EngineChanged) -> None:
        """Refreshes once after a burst of Docker events."""
        if self._debounce is None:
            self._debounce = self.set_timer(EVENT_DEBOUNCE, self._debounced_refresh)

    def _debounced_refresh(self) -> None:
        self._debounce = None
        self.refresh_containers()

    def refresh_containers(self) -> None:
        """Reloads the table; while a reload runs, asks for one more afterwards.

        Coalescing keeps a slow engine from stacking up threads.
        """
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        self.call_backend(lambda: (self.workspace.containers(), self.workspace.quota()),
                          self._show_containers, failed=self._refresh_failed, group="refresh")

    def _show_containers(self, loaded: tuple[list[ContainerView], QuotaView]) -> None:
        views, quota = loaded
        self._last_refresh_error = None
        now = dt.datetime.now(dt.timezone.utc)
        self._counting_seconds = any(
            "second" in view.status or (now - view.created).total_seconds() < 60 for view in views)
        if self.has_class("-engine-down"):
            self.set_class(False, "-engine-down")
            self.notify("The Docker engine answers again.", markup=False)
        self.table.show_containers(views)
        self.query_one(QuotaBar).show_quota(quota)
        for widget in self.query("#container-table, #empty-hint, #container-monitor"):
            widget.set_class(not views, "-empty")
        self.selection_changed()
        self.refresh_last_record()
        self._follow_start(views)
        # After the result is shown: the next refresh depends on what it showed.
        self._refresh_finished(failed=False)

    def _follow_start(self, views: list[ContainerView]) -> None:
        """Follows the deep link once, after the first table: selects the
        container (by name or ID prefix among the user's own, as `resolve`
        does) and opens its log view; an unknown one is said, as a command
        would say it."""
        start, self.start = self.start, None
        if start is None:
            return
        ref = start.container
        matches = [v for v in views if v.name == ref] or [v for v in views if ref and v.id.startswith(ref.lower())]
        if len(matches) != 1 or not self.table.select_container(matches[0].name):
            self.notify(f"no such container: {quoted(ref)}", severity="error", markup=False)
            return
        if start.logs:
            self.action_open_logs()

    def _refresh_failed(self, error: Exception) -> None:
        """Shows the engine banner or the error (once while it lasts), then
        plans the next try."""
        if isinstance(error, EngineUnavailable):
            self.set_class(True, "-engine-down")
            self.query_one("#engine-banner", Static).update(
                f"Docker engine unavailable: {error.message} — retrying every {REFRESH_INTERVAL:g} s; "
                "your session stays open."
            )
        # The periodic refresh would repeat the same error every few seconds.
        message = str(error)
        if message != self._last_refresh_error:
            self._last_refresh_error = message
            self.show_backend_error(error)
        self._refresh_finished(failed=True)

    def _refresh_finished(self, *, failed: bool) -> None:
        """Plans the next refresh: `REFRESH_INTERVAL` after a failure or
        while a shown time counts seconds, else `QUIET_REFRESH` (one timer,
        reset by every refresh, so an idle session has one wake-up a minute);
        then runs the one asked for meanwhile."""
        self._refreshing = False
        if self._next_refresh is not None:
            self._next_refresh.stop()
        soon = failed or self._counting_seconds
        self._next_refresh = self.set_timer(REFRESH_INTERVAL if soon else QUIET_REFRESH, self.refresh_containers)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh_containers()

    def selection_changed(self) -> None:
        """Shows the table's selected container in the monitor."""
        for monitor in self.query(ContainerMonitor):
            monitor.select(self.table.selected_container)

    def refresh_last_record(self) -> None:
        """Loads the user's newest history record into the last-record line."""
        if self.services is not None:
            self.call_backend(self.services.history.last_record, self._show_last_record,
                              failed=self._last_record_failed, group="last-record", exclusive=True)

    def _show_last_record(self, entry: HistoryEntry | None) -> None:
        self._last_record_error = None
        line = self.query_one("#last-record", Static)
        text = last_record_text(entry)
        shown = line.content
        # An update re-lays out the screen: only when the line changed (issue 8, idle CPU).
        if not isinstance(shown, Text) or (shown.plain, shown.style, shown.spans) != (
                text.plain, text.style, text.spans):
            line.update(text)

    def _last_record_failed(self, error: Exception) -> None:
        """Shows a failure once, not at every refresh while it lasts."""
        if str(error) != self._last_record_error:
            self._last_record_error = str(error)
            self.show_backend_error(error)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter opens the selected container's graphs."""
        if self.check_action("open_graphs", ()):
            self.action_open_graphs()

    # Actions --------------------------------------------------------------

    def action_create_container(self) -> None:
        """Loads the images, then opens the create form."""
        self.call_backend(lambda: (self.workspace.images(), self.script_names()), self._open_create_form,
                          group="images", exclusive=True)

    def _open_create_form(self, loaded: tuple[list[ImageView], list[str]]) -> None:
        images, scripts = loaded
        settings = self.workspace.settings
        form = CreateContainerModal(
            [image.reference for image in images], settings.default_memory, settings.default_cpus, scripts
        )
        self.app.push_screen(form, callback=self._create_submitted)

    def _create_submitted(self, new: NewContainer | None) -> None:
        if new is None:
            return
        request = new.request
        self.notify(f"Creating {request.name or 'a container'}…", markup=False)
        script = new.script
        self.call_backend(lambda: self.workspace.create_from(request, start=True),
                          functools.partial(self._created, script), group="create")

    def _created(self, script: str | None, view: ContainerView) -> None:
        """Tells the user, then runs the script chosen in the form, if any."""
        self._action_done(f"Created and started {view.name}")
        if script is not None:
            self.open_provision(view.name, script)

    def action_copy_container(self) -> None:
        """Copies the selected container's name and full ID to the user's
        clipboard, through the terminal (OSC 52, which works over SSH and in
        tmux with `set-clipboard on`)."""
        if view := self._selected():
            self.app.copy_to_clipboard(f"{view.name} {view.id}")
            self.notify(f"Copied {view.name} {view.short_id} to your clipboard", markup=False)

    def action_start_container(self) -> None:
        """Starts the selected container."""
        if view := self._selected():
            self._act(functools.partial(self.workspace.start, view.name), f"Started {view.name}")

    def action_stop_container(self) -> None:
        """Stops the selected container (Docker waits 10 s, then kills it)."""
        if view := self._selected():
            self.notify(f"Stopping {view.name}…", markup=False)
            self._act(functools.partial(self.workspace.stop, view.name), f"Stopped {view.name}")

    def action_restart_container(self) -> None:
        """Restarts the selected container."""
        if view := self._selected():
            self._act(functools.partial(self.workspace.restart, view.name), f"Restarted {view.name}")

    def action_remove_container(self) -> None:
        """Asks for confirmation, then removes the selected container."""
        view = self._selected()
        if view is None:
            return
        question = f"Remove container {view.name}?"
        if view.running:
            question += " It is running and will be killed."
        self.app.push_screen(
            ConfirmModal(question, "Remove"), callback=functools.partial(self._remove_confirmed, view)
        )

    def _remove_confirmed(self, view: ContainerView, confirmed: bool | None) -> None:
        if confirmed:
            call = functools.partial(self.workspace.remove, view.name, force=view.running)
            self._act(call, f"Removed {view.name}")

    def action_edit_container(self) -> None:
        """Opens the limits form of the selected container (it saves them itself)."""
        if view := self._selected():
            self.app.push_screen(EditContainerModal(lambda: self.workspace, view), callback=self._edited)

    def _edited(self, view: ContainerView | None) -> None:
        if view is not None:
            self._action_done(f"Updated {view.name}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The `a` key opens the admin area for admins; for everyone else it
        is hidden and only refused."""
        if action == "open_admin":
            return self.admin is not None
        if action == "refuse_admin":
            return self.admin is None
        return super().check_action(action, parameters)

    def action_open_files(self) -> None:
        """Opens the file browser of the home directory (builds start there)."""
        self.app.push_screen(FilesScreen(self.workspace))

    def action_open_graphs(self) -> None:
        """Opens the selected container's CPU and memory graphs."""
        view = self.current_container()
        if view is not None and self.services is not None:
            self.app.push_screen(ContainerStatsScreen(self.services, view))

    def action_deploy_container(self) -> None:
        """Asks, then deploys the newest build of the selected container's name."""
        self._ask_deploy(False)

    def action_rollback_container(self) -> None:
        """Asks, then deploys the selected container's previous image again."""
        self._ask_deploy(True)

    def _ask_deploy(self, back: bool) -> None:
        view = self._selected()
        if view is None:
            return
        what = "the previous image" if back else "the newest build"
        question = (f"Deploy {what} of {view.name}? The container is replaced (its settings kept); "
                    "if the new one does not stay up, the current one comes back.")
        self.app.push_screen(ConfirmModal(question, "Rollback" if back else "Deploy"),
                             callback=functools.partial(self._deploy_confirmed, view.name, back))

    def _deploy_confirmed(self, name: str, back: bool, confirmed: bool | None) -> None:
        if confirmed:
            self.notify(f"Deploying {name}…", markup=False)
            deployer = Deployer(self.workspace)
            self.call_backend(lambda: deployer.rollback(name) if back else deployer.deploy(name),
                              self._deployed, group="deploy")

    def _deployed(self, result: DeployResult) -> None:
        self._action_done(result.message if result.ok else f"Deployment failed: {result.message}")

    def action_open_admin(self) -> None:
        """Opens the admin area; the gate is holding an `Admin` (admins only)."""
        if self.admin is not None:
            self.app.push_screen(admin_area(self.admin))

    def action_refuse_admin(self) -> None:
        """Refuses the admin area to a non-admin, and writes the attempt to the audit log."""
        self._act(self._refuse_admin, "")

    def _refuse_admin(self) -> None:
        with self.workspace.audited("admin", "dashboard"):
            raise PermissionDenied("permission denied: the admin area is for admins")

    def _act(self, call: Callable[[], Any], done: str) -> None:
        """Runs one blocking workspace call, then shows `done` and reloads."""
        self.call_backend(call, lambda _result: self._action_done(done), group="action")

    def _action_done(self, done: str) -> None:
        self.notify(done, markup=False)
        self.refresh_containers()

    def current_container(self) -> ContainerView | None:
        """The table's selected container, or None after telling the user."""
        return self._selected()

    def _selected(self) -> ContainerView | None:
        try:
            view = self.table.selected_container
        except NoMatches:
            return None
        if view is None:
            self.notify("No container selected.", severity="warning")
        return view
