"""Provides `PanelApp`, the Textual app of one SSH session (wiring only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from textual.app import App, SystemCommand
from textual.driver import Driver
from textual.notifications import SeverityLevel
from textual.screen import Screen

from sshpanel.access.text import visible
from sshpanel.tui.screens.dashboard import DashboardScreen
from sshpanel.tui.start import StartAt

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin
    from sshpanel.backend.user.workspace import Workspace
    from sshpanel.tui.services import PanelServices

HIDDEN_SYSTEM_COMMANDS = frozenset({"Screenshot"})
"""Command palette entries removed: a screenshot is saved on the *server's* disk."""


class PanelApp(App[None]):
    """The dashboard of one user, one instance per SSH session.

    Args:
        workspace: The logged-in user's workspace.
        admin: The admin service, given only when the user is an admin; the
            admin screens cannot be opened without it.
        services: Scripts, provisioning, logs, history, stats and the shell;
            without them (rendering tests of the base dashboard) those
            screens are not offered.
        start: Where the session opens (a deep link: the dashboard on one
            container, or its log view); None: the dashboard as it is.
        driver_class: The Textual driver (the SSH driver in production).
        **kwargs: Passed on to `textual.app.App`.
    """

    CSS_PATH = "app.tcss"
    TITLE = "sshpanel"

    def __init__(
        self,
        workspace: Workspace,
        admin: Admin | None = None,
        *,
        services: PanelServices | None = None,
        start: StartAt | None = None,
        driver_class: type[Driver] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(driver_class=driver_class, **kwargs)
        self.start = start
        """Where the session opens (`ssh -t panel.host dashboard NAME`), None: the dashboard as it is."""
        self.workspace = workspace
        """The user's workspace, handed to the screens."""
        self.admin = admin
        """The admin service (None for everyone but admins)."""
        self.services = services
        """The session's other backend services (see `PanelServices`)."""

    def get_default_screen(self) -> Screen[Any]:
        """The dashboard is the first screen."""
        return DashboardScreen(self.workspace, self.admin, self.services, start=self.start)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """`App.notify`, with the message and title made `visible`: every
        notification of every screen passes here, and many name what a user
        typed (a file, a key comment, an error about either)."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=markup)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's palette commands, minus those that act on the server."""
        for command in super().get_system_commands(screen):
            if command.title not in HIDDEN_SYSTEM_COMMANDS:
                yield command
