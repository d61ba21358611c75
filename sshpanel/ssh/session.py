"""Provides the per-channel dispatch: a PTY with no command gets the TUI, a
command gets the docker-like command line, anything else a one-line message.

An exception inside one session ends that session with a message, never the
server (docs/ARCHITECTURE.md invariant 5).
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncssh

from sshpanel.backend.admin.admin import Admin
from sshpanel.backend.user.workspace import Workspace
from sshpanel.ssh.commands import deep_link, run_command
from sshpanel.ssh.services import SessionServices
from sshpanel.tui.start import StartAt

log = logging.getLogger("sshpanel.session")

NO_TERMINAL = (
    "sshpanel: this session has no terminal. Use `ssh -t` for the dashboard, "
    "or give a command (try `help`).\r\n"
)


def tui_admin(services: SessionServices, workspace: Workspace) -> Admin | None:
    """Returns the admin service of a dashboard session: only an admin gets
    one, and without it the TUI offers no admin screens.

    Disabling or deleting a user from the TUI closes that user's sessions
    through `services.close_user_sessions`, called on the event loop.

    Args:
        services: The process's session services.
        workspace: The session's workspace.
    """
    if not workspace.principal.is_admin:
        return None
    loop = asyncio.get_running_loop()

    def disconnect(user: str, reason: str) -> None:
        loop.call_soon_threadsafe(services.close_user_sessions, user, reason)

    return Admin(workspace, disconnect)


async def run_dashboard(services: SessionServices, process: asyncssh.SSHServerProcess, workspace: Workspace,
                        start: StartAt | None = None) -> int:
    """Runs the Textual dashboard on a PTY session, with the services it
    offers: the shared stats collector, and shells in the user's containers
    on this session's terminal (the dashboard is suspended meanwhile).

    Args:
        start: A deep link to follow (`ssh -t panel.host dashboard NAME`).

    Returns:
        The session's exit status: 0 when the user quit, 1 when the app failed.
    """
    from sshpanel.backend.engine.stats import WorkspaceStats
    from sshpanel.ssh.driver import TerminalHandOver, run_tui
    from sshpanel.ssh.shell_bridge import bridge_shell
    from sshpanel.tui.app import PanelApp
    from sshpanel.tui.services import PanelServices

    hand_over = TerminalHandOver()

    async def open_shell(ref: str) -> int:
        return await hand_over(lambda: bridge_shell(process, workspace, ref))

    offered = PanelServices.of(workspace, WorkspaceStats(workspace, services.stats), open_shell)
    app = PanelApp(workspace, tui_admin(services, workspace), services=offered, start=start)
    await run_tui(process, app, hand_over, services.settings.idle_timeout)
    return 0 if app.return_code in (0, None) else 1


async def handle_process(services: SessionServices, process: asyncssh.SSHServerProcess) -> None:
    """Runs one SSH session channel to completion and sets its exit status.

    Args:
        services: The process's session services.
        process: The session; its connection's owner (`server.PanelSSHServer`)
            holds the principal that authenticated.
    """
    principal = process.get_extra_info("connection").get_owner().principal
    if principal is None:
        process.exit(1)
        return
    # The channel already holds its place in the session limits, from open
    # to close (`session_channel.SlotProcess`).
    workspace = services.workspace(principal)
    started = time.monotonic()
    link = deep_link(process.command) if process.command and process.get_terminal_type() else None
    kind = "tui" if process.command is None or link is not None else "exec"
    log.info("session start user=%s source=%s kind=%s", principal.name, principal.source, kind)
    status = 1
    try:
        if process.subsystem is not None:
            process.stderr.write(f"sshpanel: unknown subsystem {process.subsystem[:32]!r}\n")
        elif process.command is None:
            if process.get_terminal_type() is None:
                process.stderr.write(NO_TERMINAL)
            else:
                status = await run_dashboard(services, process, workspace)
        elif link is not None:
            status = await run_dashboard(services, process, workspace, link if link.container else None)
        else:
            status = await run_command(services, process, workspace, process.command)
    except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged):
        status = 130
    except (BrokenPipeError, ConnectionError, asyncssh.DisconnectError):
        status = 1
    except Exception:
        log.exception("session failed user=%s", principal.name)
        try:
            process.stderr.write("sshpanel: internal error; the session was closed\r\n")
        except Exception:  # the channel may already be gone
            pass
        status = 1
    finally:
        log.info(
            "session end user=%s kind=%s status=%d seconds=%.1f",
            principal.name, kind, status, time.monotonic() - started,
        )
        try:
            process.exit(status)
        except Exception:  # the channel may already be gone
            pass
