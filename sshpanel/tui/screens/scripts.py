"""Provides `ScriptsScreen`, the user's provisioning scripts: list, preview,
new, edit and delete."""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static, TextArea

from sshpanel.access.text import visible
from sshpanel.access.units import format_age, format_bytes
from sshpanel.backend.user.provision import ScriptView
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.screens.script_editor import ScriptEditorScreen, code_view
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import drawn

if TYPE_CHECKING:
    from sshpanel.backend.user.provision import Provisioner


class ScriptsScreen(PanelScreen[None]):
    """Lists the user's scripts with a preview of the selected one.

    Every `Provisioner` call blocks (database) and runs in a thread worker.

    Args:
        provisioner: The user's scripts and runs.
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("n", "new_script", "New"),
        Binding("e", "edit_script", "Edit"),
        Binding("d,delete", "remove_script", "Delete"),
    ]

    def __init__(self, provisioner: Provisioner) -> None:
        super().__init__()
        self.provisioner = provisioner
        """The user's scripts; only ever called from thread workers."""
        self.scripts: dict[str, ScriptView] = {}
        """The scripts shown, by name, in display order."""

    def compose(self) -> ComposeResult:
        """Header, the script table, an empty-state hint, the preview, the footer."""
        yield Header()
        table: DataTable[Text] = DataTable(id="script-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("No scripts yet. Press n to write one.", id="script-hint", markup=False)
        yield code_view("", id="script-preview", read_only=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Adds the columns and loads the scripts."""
        self.title = "sshpanel"
        self.sub_title = "Provisioning scripts"
        self.table.add_columns("NAME", "SIZE", "SHA256", "CREATED")
        self.reload()

    @property
    def table(self) -> DataTable[Text]:
        """The script table."""
        return self.query_one("#script-table", DataTable)

    @property
    def selected(self) -> ScriptView | None:
        """The script under the cursor, or None when there is none."""
        if not self.scripts or self.table.row_count == 0:
            return None
        row = min(max(self.table.cursor_row, 0), self.table.row_count - 1)
        return list(self.scripts.values())[row]

    def reload(self, select: str | None = None) -> None:
        """Reloads the list, then puts the cursor on `select` if given."""
        self.call_backend(
            self.provisioner.scripts, functools.partial(self._show_scripts, select=select),
            group="scripts", exclusive=True,
        )

    def _show_scripts(self, scripts: list[ScriptView], select: str | None = None) -> None:
        current = select or (self.selected.name if self.selected else None)
        now = dt.datetime.now(dt.timezone.utc)
        self.scripts = {script.name: script for script in scripts}
        table = self.table
        table.clear()
        for script in scripts:
            created = script.created.replace(tzinfo=dt.timezone.utc)
            table.add_row(
                Text(drawn(script.name), style="bold"),
                Text(format_bytes(script.size)),
                Text(script.sha256[:12]),
                Text(format_age((now - created).total_seconds())),
                key=script.name,
            )
        if current in self.scripts:
            table.move_cursor(row=list(self.scripts).index(current), animate=False)
        self.set_class(not scripts, "-empty")
        self._preview()

    @on(DataTable.RowHighlighted, "#script-table")
    def _preview(self) -> None:
        """Shows the selected script's text."""
        script = self.selected
        self.query_one("#script-preview", TextArea).load_text(visible(script.body) if script else "")

    @on(DataTable.RowSelected, "#script-table")
    def action_edit_script(self) -> None:
        """Opens the selected script in the editor."""
        script = self.selected
        if script is None:
            self.notify("No script selected.", severity="warning")
            return
        self.app.push_screen(ScriptEditorScreen(self.provisioner, script), callback=self._edited)

    def action_new_script(self) -> None:
        """Opens the editor on a new script."""
        self.app.push_screen(ScriptEditorScreen(self.provisioner), callback=self._edited)

    def _edited(self, saved: str | None) -> None:
        if saved is not None:
            self.reload(select=saved)

    def action_remove_script(self) -> None:
        """Asks, then deletes the selected script (past runs stay in the history)."""
        script = self.selected
        if script is None:
            self.notify("No script selected.", severity="warning")
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                name = script.name
                self.call_backend(lambda: self.provisioner.remove(name), lambda _: self._removed(name))

        self.app.push_screen(ConfirmModal(f"Delete script {script.name}?", "Delete"), callback=answered)

    def _removed(self, name: str) -> None:
        self.notify(f"Deleted script {name}", markup=False)
        self.reload()

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.app.pop_screen()
