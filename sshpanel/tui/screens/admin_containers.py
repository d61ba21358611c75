"""Provides `AdminContainersScreen`: every container the panel manages, with
its owner, and the owner's actions on it (start, stop, restart, edit, remove)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer

from sshpanel.backend.views import ContainerView
from sshpanel.tui.screens.admin_base import AdminSectionScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.edit import EditContainerModal
from sshpanel.tui.widgets.admin_tables import AllContainersTable

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin
    from sshpanel.backend.user.workspace import Workspace

REFRESH_INTERVAL = 5.0
"""Seconds between fallback refreshes (Docker events drive the rest)."""

EVENT_DEBOUNCE = 0.3
"""Seconds to wait after a Docker event so that a burst causes one refresh."""


class AdminContainersScreen(AdminSectionScreen):
    """All users' containers. Each action goes through the owner's workspace
    (`Admin.workspace_of`): the owner's quotas apply, the audit log names
    the admin as the actor."""

    LABEL = "Containers"

    BINDINGS = [
        Binding("s", "start_container", "Start"),
        Binding("x", "stop_container", "Stop"),
        Binding("r", "restart_container", "Restart"),
        Binding("e", "edit_container", "Edit"),
        Binding("d", "remove_container", "Remove"),
    ]

    class EngineChanged(Message):
        """Docker reported a change to a container of the panel."""

    def __init__(self, admin: Admin, sections: Sequence[type[AdminSectionScreen]]) -> None:
        super().__init__(admin, sections)
        self._debounce: Timer | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def compose_section(self) -> ComposeResult:
        """The container table."""
        yield AllContainersTable(id="all-containers-table")

    def on_mount(self) -> None:
        """Loads the table, follows Docker events and refreshes now and then."""
        super().on_mount()
        events = self.admin.workspace.events
        if events is not None:
            # subscribe() only registers a callback (no I/O), so it may run on the loop.
            self._unsubscribe = events.subscribe(self._on_engine_event)
        self.set_interval(REFRESH_INTERVAL, self.refresh_containers)
        self.refresh_containers()

    def on_unmount(self) -> None:
        """Stops following Docker events, so the listener lets go of this screen."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_engine_event(self, _owner: str, _container: str, _action: str) -> None:
        """Runs in the events listener thread: only posts a message (thread-safe)."""
        self.post_message(self.EngineChanged())

    def on_admin_containers_screen_engine_changed(self, message: EngineChanged) -> None:
        """Refreshes once after a burst of Docker events."""
        if self._debounce is None:
            self._debounce = self.set_timer(EVENT_DEBOUNCE, self._debounced_refresh)

    def _debounced_refresh(self) -> None:
        self._debounce = None
        self.refresh_containers()

    @property
    def table(self) -> AllContainersTable:
        """The container table."""
        return self.query_one(AllContainersTable)

    def refresh_containers(self) -> None:
        """Reloads the table (a reload still running is superseded)."""
        self.call_backend(
            self.admin.containers, self._show_containers, failed=self.load_failed, group="containers", exclusive=True
        )

    def _show_containers(self, views: list[ContainerView]) -> None:
        self.load_succeeded()
        self.table.show(views)

    # Actions --------------------------------------------------------------

    def _selected(self) -> ContainerView | None:
        view = self.table.selected
        if view is None:
            self.notify("No container selected.", severity="warning")
        return view

    def _owner_call(self, view: ContainerView, act: Callable[[Workspace], object], done: str) -> None:
        """Runs `act` on the owner's workspace (fresh, so the admin check runs)."""
        owner = view.owner

        def call() -> object:
            return act(self.admin.workspace_of(owner))

        self.call_backend(call, lambda _result: self._done(done))

    def _done(self, message: str) -> None:
        self.notify(message, markup=False)
        self.refresh_containers()

    def action_start_container(self) -> None:
        """Starts the selected container."""
        if view := self._selected():
            self._owner_call(view, lambda w: w.start(view.name), f"Started {view.owner}/{view.name}")

    def action_stop_container(self) -> None:
        """Stops the selected container (10 s grace, then SIGKILL)."""
        if view := self._selected():
            self.notify(f"Stopping {view.owner}/{view.name}…", markup=False)
            self._owner_call(view, lambda w: w.stop(view.name), f"Stopped {view.owner}/{view.name}")

    def action_restart_container(self) -> None:
        """Restarts the selected container."""
        if view := self._selected():
            self._owner_call(view, lambda w: w.restart(view.name), f"Restarted {view.owner}/{view.name}")

    def action_edit_container(self) -> None:
        """Opens the limits form of the selected container (the owner's quota applies)."""
        if view := self._selected():
            owner = view.owner
            modal = EditContainerModal(lambda: self.admin.workspace_of(owner), view)
            self.app.push_screen(modal, callback=self._edited)

    def _edited(self, view: ContainerView | None) -> None:
        if view is not None:
            self._done(f"Updated {view.owner}/{view.name}")

    def action_remove_container(self) -> None:
        """Asks, then removes the selected container (killed first if it runs)."""
        view = self._selected()
        if view is None:
            return
        question = f"Remove {view.owner}'s container {view.name}?"
        if view.running:
            question += " It is running and will be killed."

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self._owner_call(
                    view, lambda w: w.remove(view.name, force=view.running), f"Removed {view.owner}/{view.name}"
                )

        self.app.push_screen(ConfirmModal(question, "Remove"), callback=answered)
