"""Provides `AdminSectionScreen`, the base of the admin area's sections
(users, containers, host, audit log) and `SectionBar`, the line that names them."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Header

from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin


class SectionBar(Widget):
    """One line naming the sections with their keys, the current one highlighted.

    Args:
        labels: Section labels, in key order (`1` is the first).
        current: Index of the section shown.
    """

    def __init__(self, labels: Sequence[str], current: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.labels = tuple(labels)
        """Section labels, in key order."""
        self.current = current
        """Index of the section shown."""

    def render(self) -> Text:
        """Draws ` 1 Users  2 Containers  3 Host  4 Audit log   Esc back`."""
        line = Text()
        for index, label in enumerate(self.labels):
            style = "bold reverse" if index == self.current else ""
            line.append_text(Text.assemble(" ", (str(index + 1), "bold"), f" {label} ", style=style))
            line.append(" ")
        return line


class AdminSectionScreen(PanelScreen[None]):
    """A section of the admin area; keys 1-4 switch sections, Esc goes back
    to the dashboard.

    Only `Admin` methods are called, in thread workers; the service checks on
    every call that the caller is still an enabled admin.

    Args:
        admin: The admin service (exists only for admins).
        sections: The section screen classes, in key order.
    """

    LABEL: ClassVar[str] = ""
    """The section's name in the section bar."""

    BINDINGS = [
        Binding("escape", "close", "Back"),
        *(Binding(str(number), f"section({number - 1})", show=False) for number in range(1, 10)),
    ]

    def __init__(self, admin: Admin, sections: Sequence[type[AdminSectionScreen]]) -> None:
        super().__init__()
        self.admin = admin
        """The admin service; only ever called from thread workers."""
        self.sections = tuple(sections)
        """The section screen classes, in key order."""
        self._last_load_error: str | None = None

    def compose(self) -> ComposeResult:
        """Header, section bar, the section's own widgets, key footer."""
        yield Header()
        yield SectionBar([section.LABEL for section in self.sections], self.sections.index(type(self)),
                         id="section-bar")
        yield from self.compose_section()
        yield KeyFooter()

    def compose_section(self) -> ComposeResult:
        """The section's own widgets (between the section bar and the footer)."""
        yield from ()

    def on_mount(self) -> None:
        """Names the area in the header."""
        self.title = "sshpanel admin"
        self.sub_title = f"{self.LABEL} · {self.admin.principal.name}"

    def action_section(self, index: int) -> None:
        """Replaces this section with another one."""
        if 0 <= index < len(self.sections) and self.sections[index] is not type(self):
            self.app.switch_screen(self.sections[index](self.admin, self.sections))

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.app.pop_screen()

    def load_failed(self, error: Exception) -> None:
        """Shows a failed refresh once, not again every time it repeats."""
        if str(error) != self._last_load_error:
            self._last_load_error = str(error)
            self.show_backend_error(error)

    def load_succeeded(self) -> None:
        """Forgets the last refresh error, so that it is shown if it returns."""
        self._last_load_error = None
