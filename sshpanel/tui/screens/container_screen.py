"""Provides `ContainerScreen`, the base screen of the dashboard and of the
graphs screen: the actions that need the session's `PanelServices` (a shell
in the container, provisioning with a script, the scripts screen, logs, the
history)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.worker import Worker

from sshpanel.backend.user.provision import ScriptView
from sshpanel.backend.views import ContainerView
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.screens.history import HistoryScreen
from sshpanel.tui.screens.logs import LogScreen
from sshpanel.tui.screens.provision import ProvisionScreen, ScriptPickerModal
from sshpanel.tui.screens.scripts import ScriptsScreen

if TYPE_CHECKING:
    from sshpanel.tui.services import PanelServices

SERVICE_ACTIONS = frozenset(
    {"open_shell", "provision_container", "open_scripts", "open_logs", "open_history", "open_graphs"}
)
"""Actions offered only when the session has `PanelServices`."""


class ContainerScreen(PanelScreen[None]):
    """The base of the screens that act on one container (the dashboard,
    the graphs screen); each says which container by `current_container`.

    Args:
        services: The session's services; without them (rendering tests of
            the base dashboard) the keys of `SERVICE_ACTIONS` are not offered.
    """

    def __init__(self, services: PanelServices | None) -> None:
        super().__init__()
        self.services = services
        """The session's other services (shell, scripts, logs, stats, history)."""

    def current_container(self) -> ContainerView | None:
        """The container the keys act on, or None after telling the user
        there is none.

        Raises:
            NotImplementedError: A subclass must say.
        """
        raise NotImplementedError

    def history_scope(self) -> str | None:
        """Whose history `h` shows: None for all of the user's containers."""
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offers the keys of `SERVICE_ACTIONS` only when the session can do them."""
        if action in SERVICE_ACTIONS:
            return self.service_action_available(action)
        return True

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
        self.run_worker(self._shell(view.name), name="shell", group="shell", exit_on_error=False)

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

    def _my_workers(self) -> list[Worker[Any]]:
        return [worker for worker in self.app.workers if worker.node is self]

    # Logs and history ------------------------------------------------

    def action_open_logs(self) -> None:
        """Opens the selected container's log, following it."""
        view = self.current_container()
        if view is not None and self.services is not None:
            self.app.push_screen(LogScreen(self.services.logs, view.name))

    def action_open_history(self) -> None:
        """Opens the history: the user's, or the container's on its own screen."""
        if self.services is not None:
            screen = HistoryScreen(self.services.history, self.history_scope())
            self.app.push_screen(screen)

    # Scripts and provisioning --------------------------------------------

    def action_open_scripts(self) -> None:
        """Opens the user's provisioning scripts."""
        if self.services is not None:
            self.app.push_screen(ScriptsScreen(self.services.provisioner))

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
        self.app.push_screen(picker, callback=chosen)

    def open_provision(self, container: str, script: str) -> None:
        """Runs a script in a container on the provisioning screen.

        Args:
            container: The container's short name.
            script: The script's name.
        """
        if self.services is not None:
            screen = ProvisionScreen(self.services.provisioner, container, script)
            self.app.push_screen(screen)
