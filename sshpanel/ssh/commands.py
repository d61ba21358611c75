"""Provides the docker-like command line over SSH (`ssh panel.host ps -a`).

Exit status: 0 on success, 1 on a failed action (reason on stderr), 2 on a
usage error (DESIGN.md "Command line over SSH"). Commands run in a worker
thread (they call Docker and the database); output goes back to the channel
through the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import shlex
from typing import Callable

import asyncssh

from sshpanel.access.names import generate_name
from sshpanel.access.spec import make_spec
from sshpanel.access.units import format_age, parse_cpus, parse_size
from sshpanel.backend.views import ContainerView
from sshpanel.backend.workspace import Workspace
from sshpanel.errors import PanelError, UsageError

MAX_COMMAND_LINE = 64 * 1024


class Output:
    """Thread-safe writer onto the SSH channel's stdout and stderr."""

    def __init__(self, process: asyncssh.SSHServerProcess, loop: asyncio.AbstractEventLoop) -> None:
        self._process = process
        self._loop = loop

    def out(self, text: str = "") -> None:
        """Writes one line to stdout."""
        self._write(self._process.stdout, text + "\n")

    def err(self, text: str) -> None:
        """Writes one line to stderr."""
        self._write(self._process.stderr, text + "\n")

    def _write(self, stream: asyncssh.SSHWriter, text: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            stream.write(text)
        else:
            self._loop.call_soon_threadsafe(stream.write, text)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting or printing to the process."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\nSee '{self.prog} --help'.")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _HelpShown(status)

    def print_help(self, file=None) -> None:  # type: ignore[override]
        raise _HelpShown(0, self.format_help())


class _HelpShown(Exception):
    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _add_create_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="container name (generated when omitted)")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set an environment variable")
    parser.add_argument("-m", "--memory", metavar="SIZE", help="memory limit (e.g. 256m, 1g)")
    parser.add_argument("--cpus", metavar="F", help="CPU limit (e.g. 0.5)")
    parser.add_argument("--restart", default="no", metavar="POLICY", help="no, always, unless-stopped, on-failure[:N]")
    parser.add_argument("image", help="image on the engine (see `images`)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of every command a user may run."""
    root = _Parser(prog="sshpanel", description="Manage your containers over SSH.", add_help=True)
    sub = root.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    ps = sub.add_parser("ps", help="list your containers")
    ps.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    ps.add_argument("-q", "--quiet", action="store_true", help="only print IDs")
    ps.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    images = sub.add_parser("images", help="list images you can create containers from")
    images.add_argument("--format", choices=("table", "json"), default="table")
    _add_create_flags(sub.add_parser("run", help="create and start a container"))
    _add_create_flags(sub.add_parser("create", help="create a container without starting it"))
    for verb, text in (("start", "start"), ("stop", "stop"), ("restart", "restart")):
        cmd = sub.add_parser(verb, help=f"{text} one or more containers")
        cmd.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm = sub.add_parser("rm", help="remove one or more containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    inspect = sub.add_parser("inspect", help="show low-level information on containers")
    inspect.add_argument("containers", nargs="+", metavar="CONTAINER")
    sub.add_parser("whoami", help="show who you are logged in as")
    sub.add_parser("help", help="show this help")
    return root


async def run_command(process: asyncssh.SSHServerProcess, workspace: Workspace, command: str) -> int:
    """Parses and runs one exec command; returns the exit status."""
    loop = asyncio.get_running_loop()
    output = Output(process, loop)
    try:
        if len(command) > MAX_COMMAND_LINE:
            raise UsageError("command line too long")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"cannot parse the command line: {exc}") from None
        args = build_parser().parse_args(argv)
    except _HelpShown as shown:
        output.out(shown.text.rstrip() or build_parser().format_help().rstrip())
        return shown.status
    except UsageError as exc:
        output.err(exc.message)
        return exc.exit_code
    if args.verb in (None, "help"):
        output.out(build_parser().format_help().rstrip())
        return 0 if args.verb == "help" else 2
    handler = HANDLERS[args.verb]
    try:
        return await asyncio.to_thread(handler, workspace, args, output)
    except PanelError as exc:
        output.err(f"Error: {exc.message}")
        return exc.exit_code


def _ps(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
    views = ws.containers(all=args.all)
    if args.quiet:
        for view in views:
            out.out(view.short_id)
    elif args.format == "json":
        for view in views:
            out.out(json.dumps(ps_json(view)))
    else:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [
            (v.short_id, v.image, format_age((now - v.created).total_seconds()), v.status, v.ports, v.name)
            for v in views
        ]
        out.out(_table(("CONTAINER ID", "IMAGE", "CREATED", "STATUS", "PORTS", "NAMES"), rows))
    return 0


def ps_json(view: ContainerView) -> dict[str, str]:
    """Returns one `ps --format json` object with the docker CLI's keys."""
    return {
        "ID": view.short_id,
        "Names": view.name,
        "Image": view.image,
        "State": view.state,
        "Status": view.status,
        "Ports": view.ports,
        "CreatedAt": view.created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
    }


def _images(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
    views = ws.images()
    if args.format == "json":
        for view in views:
            repo, _, tag = view.reference.rpartition(":")
            out.out(json.dumps({"Repository": repo, "Tag": tag, "ID": view.id.split(":")[-1][:12], "Size": view.size}))
    else:
        rows = []
        for view in views:
            repo, _, tag = view.reference.rpartition(":")
            rows.append((repo, tag, view.id.split(":")[-1][:12], f"{view.size / 1e6:.1f}MB"))
        out.out(_table(("REPOSITORY", "TAG", "IMAGE ID", "SIZE"), rows))
    return 0


def _create_or_run(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
    memory = parse_size(args.memory) if args.memory else ws.settings.default_memory
    cpus = parse_cpus(args.cpus) if args.cpus else ws.settings.default_cpus
    name = args.name
    if name is None:
        taken = {view.name for view in ws.containers(all=True)}
        name = generate_name(args.image, taken, secrets.token_hex(8))
    spec = make_spec(name, args.image, memory, cpus, args.command, args.env, args.restart)
    view = ws.create(spec, start=args.verb == "run")
    out.out(view.name)
    return 0


def _each(action: Callable[[Workspace, str, argparse.Namespace], str]) -> Callable[[Workspace, argparse.Namespace, Output], int]:
    """Applies an action to every named container, like docker: a failure is
    reported and the rest still run; the status is 1 if any failed."""

    def handler(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
        status = 0
        for ref in args.containers:
            try:
                out.out(action(ws, ref, args))
            except PanelError as exc:
                out.err(f"Error: {exc.message}")
                status = 1
        return status

    return handler


def _inspect(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
    found, status = [], 0
    for ref in args.containers:
        try:
            found.append(ws.inspect(ref))
        except PanelError as exc:
            out.err(f"Error: {exc.message}")
            status = 1
    out.out(json.dumps(found, indent=4))
    return status


def _whoami(ws: Workspace, args: argparse.Namespace, out: Output) -> int:
    p = ws.principal
    out.out(f"{p.name} ({p.role})")
    out.out(f"key    {p.fingerprint}")
    out.out(f"from   {p.source}")
    return 0


def _table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    """Formats rows as the docker CLI does: left-aligned, three-space gaps."""
    widths = [max([len(h)] + [len(str(row[i])) for row in rows]) for i, h in enumerate(headers)]
    lines = ["   ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in [headers, *rows]]
    return "\n".join(lines)


HANDLERS: dict[str, Callable[[Workspace, argparse.Namespace, Output], int]] = {
    "ps": _ps,
    "images": _images,
    "run": _create_or_run,
    "create": _create_or_run,
    "start": _each(lambda ws, ref, args: ws.start(ref)),
    "stop": _each(lambda ws, ref, args: ws.stop(ref)),
    "restart": _each(lambda ws, ref, args: ws.restart(ref)),
    "rm": _each(lambda ws, ref, args: ws.remove(ref, force=args.force)),
    "inspect": _inspect,
    "whoami": _whoami,
}
