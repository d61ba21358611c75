"""Provides `CreateContainerModal`, the form that describes a new container."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from sshpanel.access.spec import RESTART_POLICIES, UNNAMED, CreateRequest, spec_from_request
from sshpanel.access.units import format_bytes
from sshpanel.errors import InvalidValue
from sshpanel.tui.widgets.log_view import drawn


@dataclass(frozen=True)
class NewContainer:
    """What the create form asks for.

    Attributes:
        request: The container, as typed (the backend's `create_from`
            generates a missing name and validates it, as for `run`).
        script: The user's script to run right after it started, or None.
    """

    request: CreateRequest
    script: str | None = None


class CreateContainerModal(ModalScreen[NewContainer | None]):
    """Asks for a new container's settings; dismisses with them or None.

    Invalid input is shown inside the form, which stays open.

    Args:
        images: Image references the user may choose from.
        default_memory: Memory limit shown first, bytes.
        default_cpus: CPU limit shown first.
        scripts: Names of the user's scripts, one of which may provision the
            container once started; without any the form does not ask.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Create"),
    ]

    def __init__(
        self, images: Sequence[str], default_memory: int, default_cpus: float, scripts: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.scripts = list(scripts)
        """Script names offered for provisioning."""
        self.images = list(images)
        """Image references offered in the image list."""
        self.default_memory = default_memory
        """Initial memory limit, bytes."""
        self.default_cpus = default_cpus
        """Initial CPU limit."""

    def compose(self) -> ComposeResult:
        """Builds the form: one row per field, label on the left."""
        options = [(Text(drawn(reference)), reference) for reference in self.images]
        with Vertical(id="create-dialog", classes="dialog") as dialog:
            dialog.border_title = "New container"
            dialog.border_subtitle = "Ctrl+S create · Esc cancel"
            yield self._row("Name", Input(placeholder="optional, generated when empty", id="create-name",
                                          compact=True))
            yield self._row(
                "Image",
                Select(
                    options,
                    prompt="No images on the engine" if not options else "Choose an image",
                    value=self.images[0] if self.images else Select.NULL,
                    id="create-image",
                    compact=True,
                ),
            )
            command = Input(placeholder="optional, e.g. sleep 3600", id="create-command", compact=True)
            yield self._row("Command", command)
            yield self._row("Environment", TextArea(
                    id="create-env", compact=True, soft_wrap=False, placeholder="optional, KEY=VALUE one per line"
                ))
            yield self._row("Memory", Input(format_bytes(self.default_memory), id="create-memory", compact=True))
            yield self._row("CPUs", Input(f"{self.default_cpus:g}", id="create-cpus", compact=True))
            yield Horizontal(  # two fields on one row, so that the form still fits 24 lines
                Label("Volumes", classes="form-label"),
                Input(placeholder="e.g. data:/data", id="create-volumes", compact=True),
                Label("Ports", id="create-ports-label"),
                Input(placeholder="optional, e.g. 8080:80", id="create-ports", compact=True),
                classes="form-row",
            )
            restart = Select(
                [(policy, policy) for policy in RESTART_POLICIES],
                value="no",
                allow_blank=False,
                id="create-restart",
                compact=True,
            )
            fields: list[Widget] = [Label("Restart", classes="form-label"), restart]
            if self.scripts:  # on the same row, so that the form still fits 24 lines
                script = Select(
                    [(Text(drawn(name)), name) for name in self.scripts], prompt="no script", id="create-script", compact=True
                )
                fields += [Label("Provision", id="create-script-label"), script]
            yield Horizontal(*fields, classes="form-row")
            yield Static("", id="create-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", id="create-submit", variant="primary", compact=True)
                yield Button("Cancel", id="create-cancel", compact=True)

    @staticmethod
    def _row(label: str, field: Widget) -> Horizontal:
        """One form row: a fixed-width label and the field."""
        return Horizontal(Label(label, classes="form-label"), field, classes="form-row")

    def on_mount(self) -> None:
        """Focuses the name field."""
        self.query_one("#create-name", Input).focus()

    @property
    def error_text(self) -> str:
        """The validation message shown in the form ('' when none)."""
        return str(self.query_one("#create-error", Static).content)

    @on(Input.Submitted)
    @on(Button.Pressed, "#create-submit")
    def action_submit(self) -> None:
        """Checks the form with the backend's own rules (`spec_from_request`,
        the same as `run`'s); dismisses with the typed request, or shows
        what is wrong and stays open."""
        request = self.request()
        try:
            spec_from_request(request, request.name or UNNAMED, self.default_memory, self.default_cpus)
        except InvalidValue as exc:
            self._show_error(exc.message)
            return
        script = self.query_one("#create-script", Select).value if self.scripts else None
        self.dismiss(NewContainer(request, script if isinstance(script, str) else None))

    def request(self) -> CreateRequest:
        """The form's fields as typed."""
        image = self.query_one("#create-image", Select).value
        restart = self.query_one("#create-restart", Select).value
        return CreateRequest(
            image=image if isinstance(image, str) else "",
            name=self.query_one("#create-name", Input).value,
            command=self.query_one("#create-command", Input).value,
            env=self.query_one("#create-env", TextArea).text,
            memory=self.query_one("#create-memory", Input).value,
            cpus=self.query_one("#create-cpus", Input).value,
            restart=restart if isinstance(restart, str) else "no",
            publish=self.query_one("#create-ports", Input).value,
            volumes=self.query_one("#create-volumes", Input).value,
        )

    @on(Button.Pressed, "#create-cancel")
    def action_cancel(self) -> None:
        """Closes the form without creating anything."""
        self.dismiss(None)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#create-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")
