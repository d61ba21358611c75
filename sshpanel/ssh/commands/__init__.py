"""Provides the docker-like command line over SSH (`ssh panel.host ps -a`).

Exit status: 0 on success, 1 on a failed action (reason on stderr), 2 on a
usage error (docs/ARCHITECTURE.md "Command line"). Each module of this package
registers its own verbs; plain handlers run in a worker thread (they call
Docker and the database), coroutine handlers on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import shlex

import asyncssh

from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import PanelError, UsageError
from sshpanel.ssh.commands import (
    account, admin, build, compose, containers, deploy, images, monitor, secrets, shell, volumes,
)
from sshpanel.ssh.commands.base import Context, Handler, HelpShown, Parser
from sshpanel.ssh.services import SessionServices
from sshpanel.tui.start import StartAt

MAX_COMMAND_LINE = 64 * 1024
COMMAND_MODULES = (containers, account, admin, shell, monitor, build, images, deploy, secrets, volumes, compose)
"""Every module with a `register(subparsers) -> {verb: handler}`."""


@functools.cache
def build_parser() -> tuple[Parser, dict[str, Handler]]:
    """Returns the parser of every command and the handler of each verb.

    Built once per process and shared by every command (building it takes
    about 27 ms of CPU, a tenth of a `ps` round trip: issue 8). Sharing is
    safe: `parse_args` keeps no state in the parser, and no argument has a
    mutable default a handler could change for the next command.
    """
    root = Parser(prog="sshpanel", description="Manage your containers over SSH.")
    sub = root.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)
    handlers: dict[str, Handler] = {}
    for module in COMMAND_MODULES:
        handlers.update(module.register(sub))
    sub.add_parser("help", help="show this help")
    return root, handlers


def deep_link(command: str) -> StartAt | None:
    """Reads a command line that opens the dashboard instead of printing:
    `dashboard [CONTAINER]` and `logs --tui [-f] CONTAINER` (run with a
    terminal, `ssh -t panel.host ...`).

    Returns:
        Where the dashboard opens (`StartAt` with an empty container: the
        dashboard as it is), or None for every other command line and for
        one that does not parse (`run_command` then says why).
    """
    if len(command) > MAX_COMMAND_LINE:
        return None
    parser, _ = build_parser()
    try:
        args = parser.parse_args(shlex.split(command))
    except (ValueError, HelpShown, UsageError):
        return None
    if args.verb == "dashboard":
        return StartAt(args.container or "")
    if args.verb == "logs" and args.tui:
        return StartAt(args.container, logs=True)
    return None


async def run_command(
    services: SessionServices, process: asyncssh.SSHServerProcess, workspace: Workspace, command: str
) -> int:
    """Parses and runs one exec command; returns the exit status.

    Args:
        services: The process's session services; the command gets those
            it uses (`Context`).
        process: The exec session.
        workspace: The caller's workspace.
        command: The command line as the client sent it.
    """
    ctx = Context(
        workspace, process, asyncio.get_running_loop(),
        stats=services.stats, passwords=services.passwords, close_user_sessions=services.close_user_sessions,
    )
    parser, handlers = build_parser()
    try:
        if len(command) > MAX_COMMAND_LINE:
            raise UsageError("command line too long")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"cannot parse the command line: {exc}") from None
        args = parser.parse_args(argv)
    except HelpShown as shown:
        ctx.out(shown.text.rstrip())
        return shown.status
    except UsageError as exc:
        ctx.err(exc.message)
        return exc.exit_code
    if args.verb in (None, "help"):
        ctx.out(parser.format_help().rstrip())
        return 0 if args.verb == "help" else 2
    handler = handlers[args.verb]
    try:
        if inspect.iscoroutinefunction(handler):
            return await handler(ctx, args)
        return await asyncio.to_thread(handler, ctx, args)
    except PanelError as exc:
        ctx.err(f"Error: {exc.message}")
        return exc.exit_code
