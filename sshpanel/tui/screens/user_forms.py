"""Provides the admin's user forms: `NewUserModal` (name, role, first key)
and `QuotaModal` (a user's quotas). Each form calls the backend itself and
stays open with the reason when the call fails."""

from __future__ import annotations

from typing import Any, Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Static

from sshpanel.access.units import format_bytes, parse_cpus, parse_size
from sshpanel.backend.records import QuotaView, UserView
from sshpanel.errors import InvalidValue, PanelError
from sshpanel.tui.screens.calls import PanelModal


def parse_count(text: str, what: str) -> int:
    """Parses a whole number ≥ 0 typed into a form.

    Args:
        text: The field's text.
        what: The field's name, for the message.

    Raises:
        InvalidValue: Not a whole number ≥ 0.
    """
    text = text.strip()
    if not text.isdigit():
        raise InvalidValue(f"invalid {what} {text[:16]!r}: use a whole number")
    return int(text)


def quota_changes(quota: QuotaView, containers: str, memory: str, cpus: str, pids: str, ports: str) -> dict[str, Any]:
    """Returns the quotas that the form changes, as `Admin.set_quota` takes them.

    Args:
        quota: The quotas before.
        containers: Maximum number of containers.
        memory: Total memory (`2g`, `512m`; `0` forbids any).
        cpus: Total CPUs (`1.5`; `0` forbids any).
        pids: Process limit of each new container.
        ports: Host port range `LOW-HIGH`, or `none`.

    Returns:
        Keyword arguments for `set_quota`; only the values that differ.

    Raises:
        InvalidValue: A field does not parse; the message says which.
    """
    new: dict[str, Any] = {
        "containers": parse_count(containers, "container count"),
        "memory": _memory(memory, quota.max_memory),
        "cpus": 0.0 if cpus.strip() in ("0", "0.0") else parse_cpus(cpus),
        "pids": parse_count(pids, "pids limit"),
        "ports": ports.strip().lower() or "none",
    }
    old = {
        "containers": quota.max_containers,
        "memory": quota.max_memory,
        "cpus": quota.max_cpus,
        "pids": quota.pids,
        "ports": quota.ports,
    }
    return {key: value for key, value in new.items() if value != old[key]}


def _memory(text: str, before: int) -> int:
    """Parses the memory field; the prefilled text (rounded by `format_bytes`)
    stands for the exact value it was made from."""
    text = text.strip()
    if text == format_bytes(before):
        return before
    return 0 if text == "0" else parse_size(text)


class _Form(PanelModal[Any]):
    """What the two forms share: rows, an error line, submit and cancel."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    @staticmethod
    def row(label: str, field: Widget) -> Horizontal:
        """One form row: a fixed-width label and the field."""
        return Horizontal(Label(label, classes="form-label"), field, classes="form-row")

    def buttons(self, label: str) -> ComposeResult:
        """The error line and the Save/Cancel buttons."""
        yield Static("", id="form-error", classes="form-error", markup=False)
        with Horizontal(classes="dialog-buttons"):
            yield Button(label, id="form-submit", variant="primary", compact=True)
            yield Button("Cancel", id="form-cancel", compact=True)

    @property
    def error_text(self) -> str:
        """The message shown in the form ('' when none)."""
        return str(self.query_one("#form-error", Static).content)

    def show_form_error(self, message: str) -> None:
        """Shows `message` in the form ('' hides the error line)."""
        error = self.query_one("#form-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")

    def call_failed(self, error: Exception) -> None:
        """Keeps the form open with the reason, and reports it like every error."""
        self.show_form_error(error.message if isinstance(error, PanelError) else "the change failed")
        self.show_backend_error(error)

    @on(Input.Submitted)
    @on(Button.Pressed, "#form-submit")
    def submit_pressed(self) -> None:
        """Enter in a field or the Save button submits."""
        self.action_submit()

    def action_submit(self) -> None:
        """Validates and saves; implemented by each form."""
        raise NotImplementedError

    @on(Button.Pressed, "#form-cancel")
    def action_cancel(self) -> None:
        """Closes the form without changing anything."""
        self.dismiss(None)


class NewUserModal(_Form):
    """Creates a user: name, admin role, an optional first public key.

    Dismisses with the new `UserView`, or None when cancelled.

    Args:
        add_user: `Admin.add_user` (blocking; runs in a worker thread).
    """

    def __init__(self, add_user: Callable[..., UserView]) -> None:
        super().__init__()
        self.add_user = add_user
        """Creates the user (blocking)."""

    def compose(self) -> ComposeResult:
        """Name, role, key line."""
        with Vertical(id="new-user-dialog", classes="dialog") as dialog:
            dialog.border_title = "New user"
            dialog.border_subtitle = "Ctrl+S create · Esc cancel"
            yield self.row("Name", Input(placeholder="login name, e.g. carol", id="new-user-name", compact=True))
            yield self.row("Role", Checkbox("admin", id="new-user-admin", compact=True))
            yield self.row("Public key", Input(placeholder="optional: ssh-ed25519 AAAA… comment",
                                               id="new-user-key", compact=True))
            yield from self.buttons("Create")

    def on_mount(self) -> None:
        """Focuses the name field."""
        self.query_one("#new-user-name", Input).focus()

    def action_submit(self) -> None:
        """Asks the backend to create the user (it validates name and key)."""
        name = self.query_one("#new-user-name", Input).value.strip()
        admin = self.query_one("#new-user-admin", Checkbox).value
        key = self.query_one("#new-user-key", Input).value.strip()
        if not name:
            self.show_form_error("give the user a name")
            return
        self.show_form_error("")
        self.call_backend(lambda: self.add_user(name, admin=admin, keys=key), self.dismiss,
                          failed=self.call_failed, group="form-submit", exclusive=True)


class QuotaModal(_Form):
    """Changes a user's quotas; only the values that differ are sent.

    Dismisses with the new `QuotaView`, or None when cancelled or unchanged.

    Args:
        name: The user.
        quota: Their quotas now.
        set_quota: `Admin.set_quota` bound to the user (blocking).
    """

    def __init__(self, name: str, quota: QuotaView, set_quota: Callable[..., QuotaView]) -> None:
        super().__init__()
        self.user_name = name
        """Whose quotas."""
        self.quota = quota
        """The quotas before."""
        self.set_quota = set_quota
        """Saves quotas (blocking)."""

    def compose(self) -> ComposeResult:
        """One row per quota, prefilled."""
        q = self.quota
        with Vertical(id="quota-dialog", classes="dialog") as dialog:
            dialog.border_title = f"Quotas of {self.user_name}"
            dialog.border_subtitle = "Ctrl+S save · Esc cancel"
            yield self.row("Containers", Input(str(q.max_containers), id="quota-containers", compact=True))
            yield self.row("Memory", Input(format_bytes(q.max_memory), id="quota-memory", compact=True))
            yield self.row("CPUs", Input(f"{q.max_cpus:g}", id="quota-cpus", compact=True))
            yield self.row("Pids", Input(str(q.pids), id="quota-pids", compact=True))
            yield self.row("Ports", Input(q.ports, placeholder="LOW-HIGH or none", id="quota-ports", compact=True))
            yield Static(
                f"In use: {q.containers} container(s), {format_bytes(q.memory)}, {q.cpus:g} CPUs",
                classes="form-note", markup=False,
            )
            yield from self.buttons("Save")

    def on_mount(self) -> None:
        """Focuses the first field."""
        self.query_one("#quota-containers", Input).focus()

    def action_submit(self) -> None:
        """Validates the fields, then saves what changed."""
        value = {name: self.query_one(f"#quota-{name}", Input).value
                 for name in ("containers", "memory", "cpus", "pids", "ports")}
        try:
            changes = quota_changes(self.quota, **value)
        except InvalidValue as exc:
            self.show_form_error(exc.message)
            return
        if not changes:
            self.dismiss(None)
            return
        self.show_form_error("")
        self.call_backend(lambda: self.set_quota(**changes), self.dismiss,
                          failed=self.call_failed, group="form-submit", exclusive=True)
