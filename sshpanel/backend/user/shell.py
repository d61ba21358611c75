"""Provides `open_exec`: a command run with Docker exec in one of the
user's running containers, never privileged, attached as an `ExecStream`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sshpanel.backend.engine import Engine, ExecStream, translate_errors
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import Conflict, InvalidValue

DEFAULT_SHELL = ("/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash; fi; exec /bin/sh")
"""The shell of `shell NAME`: `/bin/bash` when the image has it, else
`/bin/sh`. A constant: nothing the user types is ever part of it."""

MAX_ARGV_BYTES = 128 * 1024
"""Upper bound of a command line passed to exec (all arguments, bytes)."""

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_TERM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


@dataclass(frozen=True)
class ExecOptions:
    """What to run and how.

    Attributes:
        command: Program and arguments, passed as an argument vector (never
            through a shell); None runs `DEFAULT_SHELL`.
        tty: Give the process a terminal (`docker exec -t`); stdout and
            stderr then arrive merged, as the terminal shows them.
        user: `user`, `uid`, `user:group` or `uid:gid` inside the container;
            None runs as the container's default user.
        size: Initial terminal size as (columns, rows); with `tty` only.
        term: The client's terminal type, given to the process as `TERM`.
    """

    command: tuple[str, ...] | None = None
    tty: bool = False
    user: str | None = None
    size: tuple[int, int] | None = None
    term: str | None = None


def check_exec_options(options: ExecOptions) -> ExecOptions:
    """Validates exec options typed by a user.

    Raises:
        InvalidValue: An empty or oversized command, a NUL character, a
            malformed user, or a terminal size out of range.
    """
    if options.command is not None:
        if not options.command or not options.command[0]:
            raise InvalidValue("no command given")
        if any("\0" in arg for arg in options.command):
            raise InvalidValue("the command contains a NUL character")
        if sum(len(arg.encode("utf-8", "surrogateescape")) + 1 for arg in options.command) > MAX_ARGV_BYTES:
            raise InvalidValue("the command line is too long")
    if options.user is not None and not _USER.fullmatch(options.user):
        raise InvalidValue("invalid user: use NAME, UID, NAME:GROUP or UID:GID")
    if options.size is not None and not all(0 < n <= 10_000 for n in options.size):
        raise InvalidValue("invalid terminal size")
    return options


def open_exec(workspace: Workspace, ref: str, options: ExecOptions) -> ExecStream:
    """Starts a command in one of the user's running containers and attaches to it.

    The exec is never privileged and runs as the container's default user
    unless `options.user` names another (issue 5). Standard input is always
    attached; close it with `ExecStream.close_stdin()`.

    Args:
        workspace: The user's workspace (the container is resolved among
            their own only; docs/ARCHITECTURE.md invariant 1).
        ref: The container's short name or an ID prefix.
        options: What to run.

    Returns:
        The attached stream; the caller must `close()` it.

    Raises:
        NotFound: No such container of the user's.
        Conflict: The container is not running.
        InvalidValue: Bad options (see `check_exec_options`).
        EngineError, EngineUnavailable: The engine failed.
    """
    check_exec_options(options)
    with workspace.audited("exec", ref):
        row = workspace.resolve(ref)
        engine = workspace.engine
        require_running(engine, row)
        environment = []
        if options.tty and options.term and _TERM.fullmatch(options.term):
            environment.append(f"TERM={options.term}")
        stream = start_exec(
            engine,
            row,
            list(options.command or DEFAULT_SHELL),
            tty=options.tty,
            stdin=True,
            user=options.user or "",
            environment=environment,
        )
    if options.tty and options.size is not None:
        stream.resize_when_started(*options.size)
    return stream


def require_running(engine: Engine, row) -> None:
    """Checks that a resolved container of the user's runs (exec needs it).

    Args:
        engine: The engine the container is on.
        row: The container's record (from `Workspace.resolve`).

    Raises:
        Conflict: The container is stopped or paused.
        NotFound: It is gone from the engine.
    """
    with translate_errors(f"no such container: {row.name}"):
        state = engine.inspect_container(row.docker_id).get("State") or {}
    if not state.get("Running") or state.get("Paused"):
        raise Conflict(f"container {row.name} is not running: start it first")


def start_exec(
    engine: Engine,
    row,
    argv: list[str],
    *,
    tty: bool = False,
    stdin: bool = False,
    user: str = "",
    environment: list[str] | None = None,
) -> ExecStream:
    """Creates and starts an exec in a resolved container; never privileged.

    Args:
        engine: The engine the container is on.
        row: The container's record (from `Workspace.resolve`).
        argv: Program and arguments (no shell is involved).
        tty: Give the process a terminal.
        stdin: Attach standard input.
        user: User inside the container; empty for its default user.
        environment: `KEY=VALUE` items added to the container's environment.

    Returns:
        The attached stream; the caller must `close()` it.

    Raises:
        NotFound: The container is gone.
        EngineError, EngineUnavailable: The engine failed.
    """
    with translate_errors(f"no such container: {row.name}"):
        return engine.exec_attach(row.docker_id, argv, tty=tty, stdin=stdin, user=user, environment=environment)
