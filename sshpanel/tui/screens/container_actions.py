"""Provides `ContainerActions`, the actions of the dashboard and of the
graphs screen that need the session's `PanelServices`: a shell in the
container, provisioning with a script, the scripts screen, logs, live graphs,
the history, and the dashboard's monitor and last-record line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from rich.text import Text
from textual.widgets import Static

from sshpanel.access.spec import CreateRequest
from sshpanel.backend.history import HistoryEntry
from sshpanel.backend.provision import ScriptView
from sshpanel.backend.views import ContainerView
from sshpanel.tui.screens.calls import BackendCalls
from sshpanel.tui.screens.history import HistoryScreen
from sshpanel.tui.screens.logs import LogScreen
from sshpanel.tui.screens.provision import ProvisionScreen, ScriptPickerModal
from sshpanel.tui.screens.scripts import ScriptsScreen
from sshpanel.tui.widgets.history_views import last_record_text
from sshpanel.tui.widgets.stats_panel import ContainerMonitor

if TYPE_CHECKING:
    from sshpanel.backend.workspace import Workspace
    from sshpanel.tui.services import PanelServices

SERVICE_ACTIONS = frozenset(
    {"open_shell", "provision_container", "open_scripts", "open_logs", "open_history", "open_graphs"}
)
"""Actions offered only when the session has `PanelServices`."""


class ContainerActions(BackendCalls):
    """Mixin for the screens that act on one container (the dashboard, the
    graphs screen); put it before the Textual base class.

    The screen provides `services` and `current_container()`; the dashboard
    also `workspace` and `_action_done(message)` for `create_and_provision`.
    """

    workspace: Workspace
    services: PanelServices | None
    _action_done: Callable[[str], None]
    _last_record_error: str | None = None

    def current_container(self) -> ContainerView | None:
        """The container the keys act on, or None after telling the user
        there is none; the dashboard's is the table's selection."""
        return self._selected()  # type: ignore[attr-defined]

    def history_scope(self) -> str | None:
        """Whose history `h` shows: None for all of the user's containers."""
        return None

    def service_action_available(self, action: str) -> bool:
        """Whether one of `SERVICE_ACTIONS` can be offered in this session.

        Args:
            action: The action name, without `action_`.
        """
        if self.services is None:
            return False
        if action == "open_shell":
            return self.services.open_shell is not None
        return True

    def script_names(self) -> list[str]:
        """The user's script names for the create form; blocks (database).

        Returns:
            The names, or an empty list when the session has no scripts service.
        """
        if self.services is None:
            return []
        return [script.name for script in self.services.provisioner.scripts()]

    # Shell ---------------------------------------------------------------

    def action_open_shell(self) -> None:
        """Opens a shell in the selected running container on this terminal;
        the dashboard comes back when the shell exits."""
        view = self.current_container()
        if view is None or self.services is None or self.services.open_shell is None:
            return
        if not view.running:
            self.notify(f"{view.name} is not running: start it first.", severity="warning", markup=False)
            return
        if any(worker.group == "shell" and not worker.is_finished for worker in self._my_workers()):
            return  # a second key press that arrived before the shell took over
        run_worker = self.run_worker  # type: ignore[attr-defined]
        run_worker(self._shell(view.name), name="shell", group="shell", exit_on_error=False)

    async def _shell(self, name: str) -> None:
        """Runs the shell (an async worker, so the screen keeps processing
        its messages meanwhile) and reports how it ended."""
        assert self.services is not None and self.services.open_shell is not None
        try:
            status = await self.services.open_shell(name)
        except Exception as exc:  # NotFound, Conflict, engine errors: shown, never fatal
            self.show_backend_error(exc)
            return
        if status:
            self.notify(f"The shell in {name} exited with status {status}.", markup=False)

    def _my_workers(self) -> list[Any]:
        return [worker for worker in self.app.workers if worker.node is self]  # type: ignore[attr-defined]

    # The dashboard's monitor and last record -------------------------------

    def selection_changed(self) -> None:
        """Shows the table's selected container in the monitor (dashboard only)."""
        for monitor in self.query(ContainerMonitor):  # type: ignore[attr-defined]
            monitor.select(self.table.selected_container)  # type: ignore[attr-defined]

    def refresh_last_record(self) -> None:
        """Loads the user's newest history record into the dashboard's line."""
        if self.services is not None:
            self.call_backend(self.services.history.last_record, self._show_last_record,
                              failed=self._last_record_failed, group="last-record", exclusive=True)

    def _show_last_record(self, entry: HistoryEntry | None) -> None:
        self._last_record_error = None
        line = self.query_one("#last-record", Static)  # type: ignore[attr-defined]
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

    # Logs, graphs, history ------------------------------------------------

    def action_open_logs(self) -> None:
        """Opens the selected container's log, following it."""
        view = self.current_container()
        if view is not None and self.services is not None:
            self.app.push_screen(LogScreen(self.services.logs, view.name))  # type: ignore[attr-defined]

    def action_open_graphs(self) -> None:
        """Opens the selected container's CPU and memory graphs."""
        view = self.current_container()
        if view is not None and self.services is not None:
            from sshpanel.tui.screens.container_stats import ContainerStatsScreen  # it mixes this class in

            self.app.push_screen(ContainerStatsScreen(self.services, view))  # type: ignore[attr-defined]

    def action_open_history(self) -> None:
        """Opens the history: the user's, or the container's on its own screen."""
        if self.services is not None:
            screen = HistoryScreen(self.services.history, self.history_scope())
            self.app.push_screen(screen)  # type: ignore[attr-defined]

    # Scripts and provisioning --------------------------------------------

    def action_open_scripts(self) -> None:
        """Opens the user's provisioning scripts."""
        if self.services is not None:
            self.app.push_screen(ScriptsScreen(self.services.provisioner))  # type: ignore[attr-defined]

    def action_provision_container(self) -> None:
        """Asks which script to run on the selected running container, then runs it."""
        view = self.current_container()
        if view is None or self.services is None:
            return
        if not view.running:
            self.notify(f"{view.name} is not running: start it first.", severity="warning", markup=False)
            return
        provisioner = self.services.provisioner
        self.call_backend(provisioner.scripts, lambda scripts: self._pick_script(view, scripts),
                          group="scripts", exclusive=True)

    def _pick_script(self, view: ContainerView, scripts: list[ScriptView]) -> None:
        if not scripts:
            self.notify("No scripts yet: press i to write one.", severity="warning")
            return

        def chosen(script: str | None) -> None:
            if script is not None:
                self.open_provision(view.name, script)

        picker = ScriptPickerModal(view.name, [script.name for script in scripts])
        self.app.push_screen(picker, callback=chosen)  # type: ignore[attr-defined]

    def open_provision(self, container: str, script: str) -> None:
        """Runs a script in a container on the provisioning screen.

        Args:
            container: The container's short name.
            script: The script's name.
        """
        if self.services is not None:
            screen = ProvisionScreen(self.services.provisioner, container, script)
            self.app.push_screen(screen)  # type: ignore[attr-defined]

    def create_and_provision(self, request: CreateRequest, script: str) -> None:
        """Creates and starts a container, then runs a script in it.

        Args:
            request: The container, as typed in the form.
            script: The script's name.
        """

        def created(view: ContainerView) -> None:
            self._action_done(f"Created and started {view.name}")
            self.open_provision(view.name, script)

        self.call_backend(lambda: self.workspace.create_from(request, start=True), created, group="create")
