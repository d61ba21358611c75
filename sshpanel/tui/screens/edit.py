"""Provides `EditContainerModal`, the form that changes a container's memory
limit, CPU limit and restart policy live (`docker update`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from sshpanel.access.spec import RESTART_POLICIES
from sshpanel.access.units import format_bytes, parse_cpus, parse_size
from sshpanel.backend.views import ContainerView
from sshpanel.errors import InvalidValue, PanelError
from sshpanel.tui.screens.calls import PanelModal

if TYPE_CHECKING:
    from sshpanel.backend.user.workspace import Workspace


def restart_policy(inspect: dict) -> str:
    """Returns a container's restart policy as `update --restart` takes it.

    Args:
        inspect: Docker's inspect data of the container.

    Returns:
        `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    """
    policy = (inspect.get("HostConfig") or {}).get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    retries = int(policy.get("MaximumRetryCount") or 0)
    return f"{name}:{retries}" if name == "on-failure" and retries else name


class EditContainerModal(PanelModal[ContainerView | None]):
    """Changes a container's limits live, within the owner's quota.

    The form calls `Workspace.update` itself and stays open when it fails,
    showing why (a quota exceeded names the quota and by how much); it
    dismisses with the updated container, or None when cancelled.

    Args:
        open_workspace: Returns the owner's workspace; called in a worker
            thread (an admin's `Admin.workspace_of` reads the database).
        view: The container as the table shows it.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    def __init__(self, open_workspace: Callable[[], Workspace], view: ContainerView) -> None:
        super().__init__()
        self.open_workspace = open_workspace
        """Returns the owner's workspace (blocking)."""
        self.view = view
        """The container being edited."""

    def compose(self) -> ComposeResult:
        """Builds the form: memory, CPUs, restart policy."""
        with Vertical(id="edit-dialog", classes="dialog") as dialog:
            dialog.border_title = f"Edit {self.view.name}"
            dialog.border_subtitle = "Ctrl+S save · Esc cancel"
            yield self._row("Memory", Input(format_bytes(self.view.memory), id="edit-memory", compact=True))
            yield self._row("CPUs", Input(f"{self.view.cpus:g}", id="edit-cpus", compact=True))
            restart = Select[str](
                [(policy, policy) for policy in RESTART_POLICIES],
                prompt="(loading…)",
                id="edit-restart",
                compact=True,
            )
            yield self._row("Restart", restart)
            yield Static("", id="edit-error", classes="form-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="edit-submit", variant="primary", compact=True)
                yield Button("Cancel", id="edit-cancel", compact=True)

    @staticmethod
    def _row(label: str, field: Widget) -> Horizontal:
        """One form row: a fixed-width label and the field."""
        return Horizontal(Label(label, classes="form-label"), field, classes="form-row")

    def on_mount(self) -> None:
        """Focuses the memory field and reads the current restart policy."""
        self.query_one("#edit-memory", Input).focus()
        container = self.view.id
        self.call_backend(lambda: restart_policy(self.open_workspace().inspect(container)), self._show_restart)

    def _show_restart(self, current: str) -> None:
        select = self.query_one("#edit-restart", Select)
        policies = list(RESTART_POLICIES)
        if current not in policies:
            policies.append(current)
        select.set_options([(policy, policy) for policy in policies])
        select.value = current

    @property
    def error_text(self) -> str:
        """The message shown in the form ('' when none)."""
        return str(self.query_one("#edit-error", Static).content)

    @on(Input.Submitted)
    @on(Button.Pressed, "#edit-submit")
    def action_submit(self) -> None:
        """Validates the fields, then asks the backend for the update."""
        restart = self.query_one("#edit-restart", Select).value
        try:
            memory_text = self.query_one("#edit-memory", Input).value.strip()
            # The prefilled text is rounded: it stands for the exact limit it shows.
            memory = self.view.memory if memory_text == format_bytes(self.view.memory) else parse_size(memory_text)
            cpus = parse_cpus(self.query_one("#edit-cpus", Input).value)
        except InvalidValue as exc:
            self._show_error(exc.message)
            return
        self._show_error("")
        policy = restart if isinstance(restart, str) else None
        container = self.view.id
        self.call_backend(
            lambda: self.open_workspace().update(container, memory=memory, cpus=cpus, restart=policy),
            self.dismiss,
            failed=self._update_failed,
            group="edit-submit",
            exclusive=True,
        )

    def _update_failed(self, error: Exception) -> None:
        """Keeps the form open with the reason, and reports it like every error."""
        self._show_error(error.message if isinstance(error, PanelError) else "the update failed")
        self.show_backend_error(error)

    @on(Button.Pressed, "#edit-cancel")
    def action_cancel(self) -> None:
        """Closes the form without changing anything."""
        self.dismiss(None)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#edit-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")
