"""Provides `FilesScreen`, the file browser of the user's home directory
(what `sftp`/`scp` upload into): folders, sizes, modified times, the disk
usage; delete after a confirmation; build an image from a folder (issue 6)."""

from __future__ import annotations

import posixpath
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Static

from sshpanel.access.units import format_bytes
from sshpanel.backend.user.disk import DiskUsage, usage_of
from sshpanel.backend.user.home import FileEntry, Home
from sshpanel.backend.user.ledger import give_back
from sshpanel.tui.screens.build import BuildScreen
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import drawn

if TYPE_CHECKING:
    from sshpanel.backend.user.workspace import Workspace

UP = ".."
"""Row key of the entry that goes to the parent folder."""


class FilesScreen(PanelScreen[None]):
    """One folder of the home directory at a time.

    Enter opens a folder, Backspace goes up, `d` deletes the highlighted
    entry (asks first), `b` builds an image from the highlighted folder (or
    the current one), `r` reloads, Escape goes back.

    Args:
        workspace: The user's workspace (settings, principal; builds).
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("backspace", "up", "Up"),
        Binding("d", "delete", "Delete"),
        Binding("b", "build", "Build"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self, workspace: Workspace) -> None:
        super().__init__()
        self.workspace = workspace
        """The user's workspace; only ever called from thread workers."""
        self.home = Home(workspace.settings, workspace.principal.name,
                         on_removed=partial(give_back, workspace.store, workspace.principal.user_id))
        """The user's home directory (blocking calls); deletions give their
        bytes back to the disk ledger."""
        self.folder = ""
        """The folder shown, relative to the home directory ("" = the home)."""
        self.entries: dict[str, FileEntry] = {}
        """The entries shown, by path."""

    def compose(self) -> ComposeResult:
        """Header, the folder and usage line, the listing, the footer."""
        yield Header()
        yield Static("", id="files-status", markup=False)
        yield DataTable(id="files-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Sets the columns and loads the home directory."""
        self.title = "sshpanel"
        self.sub_title = "Files"
        table = self.query_one(DataTable)
        table.add_column("NAME", key="name")
        table.add_column("SIZE", key="size")
        table.add_column("MODIFIED (UTC)", key="modified")
        self.action_reload()

    def action_reload(self) -> None:
        """Reloads the folder and the disk usage."""
        folder = self.folder
        self.call_backend(lambda: (self.home.list(folder), usage_of(self.workspace)),
                          lambda loaded: self._show(folder, *loaded), group="files", exclusive=True)

    def _show(self, folder: str, entries: list[FileEntry], usage: DiskUsage) -> None:
        self.folder = folder
        self.entries = {entry.path: entry for entry in entries}
        where = "~/" + drawn(folder) if folder else "~ (your home directory)"
        engine_side = usage.volumes + usage.images + usage.containers  # measured once a minute
        self.query_one("#files-status", Static).update(
            Text(f"{where} · {format_bytes(usage.total)} of {format_bytes(usage.quota)} used (files "
                 f"{format_bytes(usage.home)}, on the engine {format_bytes(engine_side)}) · scp -r DIR HOST:")
        )
        table = self.query_one(DataTable)
        table.clear()
        if folder:
            table.add_row(Text("../", style="bold"), "", "", key=UP)
        for entry in entries:
            name = Text(drawn(entry.name) + ("/" if entry.is_dir else ""), style="bold" if entry.is_dir else "")
            if entry.is_link:
                name = Text(drawn(entry.name) + " (symlink)", style="dim")
            table.add_row(name, format_bytes(entry.size), entry.modified.strftime("%Y-%m-%d %H:%M"), key=entry.path)
        if not entries and not folder:
            self.notify("Your home directory is empty: upload with scp -r ./app HOST:", markup=False)

    def _highlighted(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key

    @on(DataTable.RowSelected)
    def _open(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key == UP:
            self.action_up()
        elif key in self.entries and self.entries[key].is_dir and not self.entries[key].is_link:
            self.folder = key
            self.action_reload()

    def action_up(self) -> None:
        """Goes to the parent folder."""
        if self.folder:
            self.folder = posixpath.dirname(self.folder)
            self.action_reload()

    def action_delete(self) -> None:
        """Deletes the highlighted entry after a confirmation."""
        path = self._highlighted()
        if path is None or path == UP:
            return
        entry = self.entries[path]
        what = f"the folder {path}/ and everything in it" if entry.is_dir else path

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.call_backend(lambda: self.home.delete(path), lambda _none: self._deleted(path), group="files")

        self.app.push_screen(ConfirmModal(f"Delete {what}? This cannot be undone.", "Delete"), callback=answered)

    def _deleted(self, path: str) -> None:
        self.notify(f"Deleted {path}", markup=False)
        self.action_reload()

    def action_build(self) -> None:
        """Builds an image from the highlighted folder (or the one shown)."""
        path = self._highlighted()
        folder = path if path and path != UP and self.entries[path].is_dir else self.folder
        if not folder:
            self.notify("Highlight a folder to build.", severity="warning")
            return
        self.app.push_screen(BuildScreen(self.workspace, folder))

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.app.pop_screen()
