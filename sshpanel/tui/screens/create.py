"""Provides `CreateContainerModal`, the form that describes a new container."""

from __future__ import annotations

import shlex
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

from sshpanel.access.spec import RESTART_POLICIES, ContainerSpec, make_spec
from sshpanel.access.units import format_bytes, parse_cpus, parse_size
from sshpanel.errors import InvalidValue


def spec_from_form(
    name: str,
    image: str,
    command: str,
    env: str,
    memory: str,
    cpus: str,
    restart: str,
    volumes: str = "",
) -> ContainerSpec:
    """Turns the form's text into a validated spec.

    Args:
        name: Short container name.
        image: Image reference (empty when none was chosen).
        command: Command line, split as a POSIX shell would (`shlex`).
        env: `KEY=VALUE` lines; blank lines are skipped.
        memory: Memory limit (`256m`, `1g`, `256MiB`).
        cpus: CPU limit (`0.5`).
        restart: Restart policy.
        volumes: `VOLUME:/path[:ro]` items of the user's named volumes,
            separated by spaces or commas (`run -v`); host paths are refused.

    Returns:
        The spec.

    Raises:
        InvalidValue: A field is invalid; the message says which and why.
    """
    if not image:
        raise InvalidValue("choose an image")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise InvalidValue(f"invalid command: {exc}") from None
    variables = [line.strip() for line in env.splitlines() if line.strip()]
    return make_spec(
        name.strip(),
        image,
        parse_size(memory),
        parse_cpus(cpus),
        command=argv,
        env=variables,
        restart=restart,
        volumes=volumes.replace(",", " ").split(),
    )


@dataclass(frozen=True)
class NewContainer:
    """What the create form asks for.

    Attributes:
        spec: The container.
        script: The user's script to run right after it started, or None.
    """

    spec: ContainerSpec
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
        options = [(Text(reference), reference) for reference in self.images]
        with Vertical(id="create-dialog", classes="dialog") as dialog:
            dialog.border_title = "New container"
            dialog.border_subtitle = "Ctrl+S create · Esc cancel"
            yield self._row("Name", Input(placeholder="e.g. web", id="create-name", compact=True))
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
            yield self._row("Volumes", Input(placeholder="optional, e.g. data:/data", id="create-volumes",
                                             compact=True))
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
                    [(Text(name), name) for name in self.scripts], prompt="no script", id="create-script", compact=True
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
        """Validates the form; dismisses with the spec, or shows what is wrong."""
        image = self.query_one("#create-image", Select).value
        restart = self.query_one("#create-restart", Select).value
        try:
            spec = spec_from_form(
                name=self.query_one("#create-name", Input).value,
                image=image if isinstance(image, str) else "",
                command=self.query_one("#create-command", Input).value,
                env=self.query_one("#create-env", TextArea).text,
                memory=self.query_one("#create-memory", Input).value,
                cpus=self.query_one("#create-cpus", Input).value,
                restart=restart if isinstance(restart, str) else "no",
                volumes=self.query_one("#create-volumes", Input).value,
            )
        except InvalidValue as exc:
            self._show_error(exc.message)
            return
        script = self.query_one("#create-script", Select).value if self.scripts else None
        self.dismiss(NewContainer(spec, script if isinstance(script, str) else None))

    @on(Button.Pressed, "#create-cancel")
    def action_cancel(self) -> None:
        """Closes the form without creating anything."""
        self.dismiss(None)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#create-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")
