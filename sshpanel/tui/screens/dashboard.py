"""Provides `DashboardScreen`, the user's containers and what can be done to them."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static
from textual.worker import Worker, WorkerState, active_worker

from sshpanel.access.spec import ContainerSpec
from sshpanel.backend.views import ContainerView, ImageView
from sshpanel.errors import PanelError
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.create import CreateContainerModal
from sshpanel.tui.widgets.container_table import ContainerTable

if TYPE_CHECKING:
    from sshpanel.backend.workspace import Workspace

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 5.0
"""Seconds between fallback refreshes (Docker events drive the rest)."""

EVENT_DEBOUNCE = 0.2
"""Seconds to wait after a Docker event so that a burst causes one refresh."""

T = TypeVar("T")


def in_worker_thread(call: Callable[[], T]) -> T:
    """Runs a blocking call inside a thread worker, then forgets the worker.

    Textual's thread workers set the `active_worker` context variable in the
    executor thread's own context rather than a copy, so each pool thread
    would keep its last worker, and through it the whole app, alive after the
    session ended. Clearing the variable when done lets the app be freed.

    Args:
        call: The blocking call.

    Returns:
        What `call` returns.
    """
    try:
        return call()
    finally:
        active_worker.set(None)  # type: ignore[arg-type]


class DashboardScreen(Screen[None]):
    """The user's containers in a table that follows Docker, with actions.

    Every `Workspace` call runs in a thread worker (the calls block on Docker
    and the database); results and errors come back as worker state
    messages, and every error is shown by `show_error`.

    Args:
        workspace: The user's workspace.
    """

    BINDINGS = [
        Binding("c", "create_container", "Create"),
        Binding("s", "start_container", "Start"),
        Binding("x", "stop_container", "Stop"),
        Binding("t", "stop_container", "Stop", show=False),
        Binding("r", "restart_container", "Restart"),
        Binding("d", "remove_container", "Remove"),
        Binding("q", "app.quit", "Quit"),
    ]

    class EngineChanged(Message):
        """Docker reported a change to one of the user's containers."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        """The user's workspace; only ever called from thread workers."""
        self._unwatch: Callable[[], None] | None = None
        self._debounce: Timer | None = None
        self._refresh_worker: Worker[list[ContainerView]] | None = None
        self._refresh_again = False
        self._last_refresh_error: str | None = None

    def compose(self) -> ComposeResult:
        """Builds the header, the table, an empty-state hint and the key footer."""
        yield Header()
        yield ContainerTable(id="container-table")
        yield Static("No containers yet. Press c to create one.", id="empty-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """Shows who is logged in, follows Docker events and loads the table."""
        principal = self.workspace.principal
        self.title = "sshpanel"
        self.sub_title = f"{principal.name} ({principal.role})"
        # watch() only registers a callback (no I/O), so it may run on the loop.
        self._unwatch = self.workspace.watch(self._on_engine_event)
        self.set_interval(REFRESH_INTERVAL, self.refresh_containers)
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
        if self._refresh_worker is not None and not self._refresh_worker.is_finished:
            self._refresh_again = True
            return
        self._refresh_worker = self._load_containers()

    @work(thread=True, group="refresh", exit_on_error=False)
    def _load_containers(self) -> list[ContainerView]:
        return in_worker_thread(self.workspace.containers)

    def _show_containers(self, views: list[ContainerView]) -> None:
        self._last_refresh_error = None
        self.table.show_containers(views)
        self.set_class(not views, "-empty")

    # Actions --------------------------------------------------------------

    def action_create_container(self) -> None:
        """Loads the images, then opens the create form."""
        self._load_images()

    @work(thread=True, group="images", exclusive=True, exit_on_error=False)
    def _load_images(self) -> list[ImageView]:
        return in_worker_thread(self.workspace.images)

    def _open_create_form(self, images: list[ImageView]) -> None:
        settings = self.workspace.settings
        form = CreateContainerModal(
            [image.reference for image in images], settings.default_memory, settings.default_cpus
        )
        self.app.push_screen(form, callback=self._create_submitted)

    def _create_submitted(self, spec: ContainerSpec | None) -> None:
        if spec is not None:
            self.notify(f"Creating {spec.name}…", markup=False)
            self._act(functools.partial(self.workspace.create, spec, start=True), f"Created and started {spec.name}")

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

    @work(thread=True, group="action", exit_on_error=False)
    def _act(self, call: Callable[[], Any], done: str) -> str:
        """Runs one blocking workspace call; returns the message to show."""
        in_worker_thread(call)
        return done

    def _action_done(self, done: str) -> None:
        self.notify(done, markup=False)
        self.refresh_containers()

    def _selected(self) -> ContainerView | None:
        try:
            view = self.table.selected_container
        except NoMatches:
            return None
        if view is None:
            self.notify("No container selected.", severity="warning")
        return view

    # Results and errors ---------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Routes every worker's result to its handler and every error to `show_error`."""
        worker = event.worker
        if worker.group == "refresh" and worker.is_finished:
            self._refresh_finished(event.state, worker.error)
        elif event.state is WorkerState.ERROR and worker.error is not None:
            self.show_error(worker.error)
        if event.state is WorkerState.SUCCESS:
            handlers: dict[str, Callable[[Any], None]] = {
                "refresh": self._show_containers,
                "images": self._open_create_form,
                "action": self._action_done,
            }
            handlers[worker.group](worker.result)

    def _refresh_finished(self, state: WorkerState, error: BaseException | None) -> None:
        self._refresh_worker = None
        if state is WorkerState.ERROR and error is not None:
            # The periodic refresh would repeat the same error every few seconds.
            message = str(error)
            if message != self._last_refresh_error:
                self._last_refresh_error = message
                self.show_error(error)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh_containers()

    def show_error(self, error: BaseException) -> None:
        """Shows an error as a notification: the one place errors reach the user.

        A `PanelError` shows its title and message; anything else is logged
        with its traceback and shown without details (they may hold secrets).

        Args:
            error: The exception a worker raised.
        """
        if isinstance(error, PanelError):
            self.notify(error.message, title=error.title, severity="error", markup=False)
            return
        log.error("unexpected error in the dashboard", exc_info=error)
        self.notify(
            f"Something went wrong ({type(error).__name__}); the error was logged.",
            title="Unexpected error",
            severity="error",
            markup=False,
        )
