"""Provides `ConfirmModal`, a yes/no question that must be answered."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from sshpanel.access.text import visible


class ConfirmModal(ModalScreen[bool]):
    """Asks a question; dismisses with True (confirm) or False (cancel).

    Cancel has the focus first, so pressing Enter by habit changes nothing.

    Args:
        question: The question, plain text (never read as markup).
        confirm_label: Label of the confirming button.
    """

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y", "confirm", "Confirm"),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        """The question shown."""
        self.confirm_label = confirm_label
        """Label of the confirming button."""

    def compose(self) -> ComposeResult:
        """Builds the dialog."""
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Label(visible(self.question), id="confirm-question", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, id="confirm-yes", variant="error", compact=True)
                yield Button("Cancel", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        """Focuses Cancel."""
        self.query_one("#confirm-no", Button).focus()

    @on(Button.Pressed, "#confirm-yes")
    def action_confirm(self) -> None:
        """Answers yes."""
        self.dismiss(True)

    @on(Button.Pressed, "#confirm-no")
    def action_cancel(self) -> None:
        """Answers no."""
        self.dismiss(False)
