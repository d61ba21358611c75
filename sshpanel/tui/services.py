"""Provides `PanelServices`, the backend services a dashboard session uses
besides its `Workspace`: scripts and provisioning, logs, history, live
stats, and the shell that takes over the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable

from sshpanel.backend.user.history import WorkspaceHistory
from sshpanel.backend.user.logs import WorkspaceLogs
from sshpanel.backend.user.provision import Provisioner

if TYPE_CHECKING:
    from sshpanel.backend.engine.stats import WorkspaceStats
    from sshpanel.backend.user.workspace import Workspace

OpenShell = Callable[[str], Awaitable[int]]
"""`open_shell(ref)`: runs a shell in the user's container `ref` on the
session's own terminal (the app is suspended meanwhile) and returns its exit
status. Raises `NotFound`/`Conflict` before it touches the terminal."""


@dataclass(frozen=True)
class PanelServices:
    """The services of one session, all bound to the same user.

    Attributes:
        provisioner: The user's scripts and provisioning runs (blocking).
        logs: Opens the user's container logs (blocking).
        history: The user's events, daily counts and last record (blocking).
        stats: The user's view of the shared stats collector; None when the
            server runs without one.
        open_shell: Lends the terminal to a shell in a container; None when
            the session cannot (no SSH terminal, e.g. in rendering tests).
    """

    provisioner: Provisioner
    logs: WorkspaceLogs
    history: WorkspaceHistory
    stats: WorkspaceStats | None = None
    open_shell: OpenShell | None = None

    @classmethod
    def of(
        cls, workspace: Workspace, stats: WorkspaceStats | None = None, open_shell: OpenShell | None = None
    ) -> PanelServices:
        """Builds the services of one user's session.

        Args:
            workspace: The user's workspace.
            stats: The user's view of the shared collector.
            open_shell: See `OpenShell`.

        Returns:
            The services (building them does no I/O).
        """
        return cls(Provisioner(workspace), WorkspaceLogs(workspace), WorkspaceHistory(workspace), stats, open_shell)
