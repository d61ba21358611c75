"""Provides `ScriptEditorScreen`, where a provisioning script is written,
with shell syntax highlighting, and `code_view`, the text area it uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, Input, Label, Static, TextArea

from sshpanel.access.text import visible
from sshpanel.backend.user.provision import ScriptView
from sshpanel.errors import PanelError
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from sshpanel.backend.user.provision import Provisioner

LANGUAGE = "bash"
"""Highlighting of scripts: tree-sitter's bash grammar (`tree-sitter-bash`)."""

NEW_SCRIPT = "#!/bin/sh\nset -e\n\n"
"""The text a new script starts with."""


def code_view(text: str, *, id: str, read_only: bool = False) -> TextArea:
    """Returns a code editor for shell scripts: line numbers, Tab indents,
    bash highlighting when the grammar is installed (plain text otherwise).

    Args:
        text: The initial text.
        id: Widget id.
        read_only: A viewer rather than an editor.
    """
    area = TextArea.code_editor(text, id=id, read_only=read_only, soft_wrap=False)
    if LANGUAGE in area.available_languages:
        area.language = LANGUAGE
    return area


class ScriptEditorScreen(PanelScreen[str | None]):
    """Edits one script (or writes a new one) and saves it.

    Saving under another name creates a script of that name (the original
    stays). The screen dismisses with the saved name, or None when closed
    without saving; unsaved changes are confirmed before they are dropped.

    Args:
        provisioner: The user's scripts.
        script: The script to edit; None for a new one.
    """

    BINDINGS = [
        Binding("ctrl+s", "save_script", "Save"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, provisioner: Provisioner, script: ScriptView | None = None) -> None:
        super().__init__()
        self.provisioner = provisioner
        """The user's scripts; only ever called from thread workers."""
        self.original_name = script.name if script else ""
        """The name the script had when opened ('' for a new one)."""
        self.original_body = script.body if script else NEW_SCRIPT
        """The text the script had when opened, as stored."""
        self.shown_body = visible(self.original_body)
        """The text in the editor: the stored one, control characters made
        `visible` (an editor is a terminal view too)."""

    def compose(self) -> ComposeResult:
        """Header, the name field, the editor, an error line, the footer."""
        yield Header()
        with Horizontal(id="script-name-row"):
            yield Label("Name", classes="form-label")
            yield Input(self.original_name, placeholder="e.g. install-nginx", id="script-name", compact=True)
        yield code_view(self.shown_body, id="script-body")
        yield Static("", id="script-error", classes="form-error", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Focuses the name of a new script, the text of an existing one."""
        self.title = "sshpanel"
        self.sub_title = f"Script {self.original_name}" if self.original_name else "New script"
        editor = self.query_one("#script-body", TextArea)
        editor.move_cursor(editor.document.end)
        if self.shown_body != self.original_body:
            self.notify("This script holds control characters, shown as \\xNN escapes: saving it unchanged "
                        "keeps them; an edit saves the text as shown.", severity="warning", markup=False)
        if self.original_name:
            editor.focus()
        else:
            self.query_one("#script-name", Input).focus()

    @property
    def name_text(self) -> str:
        """The name typed, without surrounding blanks."""
        return self.query_one("#script-name", Input).value.strip()

    @property
    def body_text(self) -> str:
        """The script text to save: the stored one while the editor shows it unchanged."""
        text = self.query_one("#script-body", TextArea).text
        return self.original_body if text == self.shown_body else text

    @property
    def modified(self) -> bool:
        """True when the name or the text differ from what was opened."""
        return self.name_text != self.original_name or self.body_text != self.original_body

    @property
    def error_text(self) -> str:
        """The message shown under the editor ('' when none)."""
        return str(self.query_one("#script-error", Static).content)

    @on(Input.Submitted, "#script-name")
    def _name_entered(self) -> None:
        self.query_one("#script-body", TextArea).focus()

    def action_save_script(self) -> None:
        """Saves the script (the backend checks the name and the text)."""
        name, body = self.name_text, self.body_text
        self._show_error("")
        self.call_backend(
            lambda: self.provisioner.save(name, body),
            self._saved,
            failed=self._save_failed,
            group="save-script",
            exclusive=True,
        )

    def _saved(self, saved: tuple[ScriptView, bool]) -> None:
        script, created = saved
        self.notify(f"{'Created' if created else 'Saved'} script {script.name}", markup=False)
        self.dismiss(script.name)

    def _save_failed(self, error: Exception) -> None:
        """Keeps the editor open with the reason, and reports it like every error."""
        self._show_error(error.message if isinstance(error, PanelError) else "the script was not saved")
        self.show_backend_error(error)

    def action_close(self) -> None:
        """Closes the editor; asks first when there are unsaved changes."""
        if not self.modified:
            self.dismiss(None)
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.dismiss(None)

        self.app.push_screen(ConfirmModal("Discard the unsaved changes?", "Discard"), callback=answered)

    def _show_error(self, message: str) -> None:
        error = self.query_one("#script-error", Static)
        error.update(message)
        error.set_class(bool(message), "-visible")
