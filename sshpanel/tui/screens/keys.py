"""Provides `UserKeysModal`: a user's public keys with their SHA256
fingerprints, a line to paste a new key into, and removal."""

from __future__ import annotations

from typing import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Static

from sshpanel.backend.records import KeyView
from sshpanel.errors import PanelError
from sshpanel.tui.screens.calls import PanelModal
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.widgets.admin_tables import KeyTable


class UserKeysModal(PanelModal[None]):
    """Lists, adds and removes one user's keys.

    The three calls block (database) and run in thread workers; they are the
    admin's (`Admin.keys` etc. bound to a user name) or the user's own
    (`Account`), so the same dialog serves both.

    Args:
        title: The dialog's title (`Keys of bob`).
        list_keys: Returns the keys, oldest first.
        add_key: Adds one OpenSSH public key line; returns the key.
        remove_key: Removes a key by fingerprint; returns the key.
    """

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("d,delete", "remove_key", "Remove"),
    ]

    def __init__(
        self,
        title: str,
        list_keys: Callable[[], list[KeyView]],
        add_key: Callable[[str], KeyView],
        remove_key: Callable[[str], KeyView],
    ) -> None:
        super().__init__()
        self.title_text = title
        """The dialog's title."""
        self.list_keys = list_keys
        """Returns the keys (blocking)."""
        self.add_key = add_key
        """Adds a key line (blocking)."""
        self.remove_key = remove_key
        """Removes a key by fingerprint (blocking)."""

    def compose(self) -> ComposeResult:
        """The key table, the paste line and an error line."""
        with Vertical(id="keys-dialog", classes="dialog") as dialog:
            dialog.border_title = self.title_text
            dialog.border_subtitle = "Enter add · Tab list · d remove · Esc close"
            yield KeyTable(id="key-table")
            yield Input(placeholder="paste a public key line (ssh-ed25519 AAAA… comment)", id="key-line",
                        compact=True)
            yield Static("", id="keys-error", classes="form-error", markup=False)

    def on_mount(self) -> None:
        """Loads the keys and focuses the paste line."""
        self.query_one("#key-line", Input).focus()
        self.reload()

    @property
    def table(self) -> KeyTable:
        """The key table."""
        return self.query_one(KeyTable)

    @property
    def error_text(self) -> str:
        """The message shown in the dialog ('' when none)."""
        return str(self.query_one("#keys-error", Static).content)

    def reload(self) -> None:
        """Reloads the key list."""
        self.call_backend(self.list_keys, self.table.show, group="keys", exclusive=True)

    @on(Input.Submitted, "#key-line")
    def submit_key(self) -> None:
        """Adds the pasted key line."""
        line = self.query_one("#key-line", Input).value.strip()
        if not line:
            self._show_error("paste an OpenSSH public key line first")
            return
        self._show_error("")
        self.call_backend(lambda: self.add_key(line), self._key_added, failed=self._failed)

    def _key_added(self, key: KeyView) -> None:
        self.query_one("#key-line", Input).value = ""
        self.notify(f"Added {key.fingerprint} ({key.algorithm})", markup=False)
        self.reload()

    def action_remove_key(self) -> None:
        """Asks, then removes the selected key."""
        key = self.table.selected
        if key is None:
            self.notify("No key selected.", severity="warning")
            return
        question = f"Remove key {key.fingerprint} ({key.comment or key.algorithm})?"

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                fingerprint = key.fingerprint
                self.call_backend(lambda: self.remove_key(fingerprint), self._key_removed, failed=self._failed)

        self.app.push_screen(ConfirmModal(question, "Remove"), callback=answered)

    def _key_removed(self, key: KeyView) -> None:
        self.notify(f"Removed {key.fingerprint}", markup=False)
        self.reload()

    def _failed(self, error: Exception) -> None:
        """Shows the reason in the dialog and reports it like every error."""
        self._show_error(error.message if isinstance(error, PanelError) else "the change failed")
        self.show_backend_error(error)

    def action_close(self) -> None:
        """Closes the dialog."""
        self.dismiss(None)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#keys-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")
