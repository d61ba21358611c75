"""Provides `compose`, docker compose's verbs over SSH (issue 22): `up`,
`ps`, `logs`, `stop`, `start`, `restart`, `down`, `config`, `ls`.

`-f FILE` names a compose file in the user's home (uploaded with SFTP), `-f
-` reads it from standard input; `-p PROJECT` names the project. Both are
taken before or after the verb, as docker compose takes them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json

import yaml

from sshpanel.access.compose_yaml import MAX_FILE
from sshpanel.access.units import format_age
from sshpanel.backend.projects.compose import Projects, ServiceView
from sshpanel.backend.user.logs import WorkspaceLogs
from sshpanel.errors import InvalidValue, UsageError
from sshpanel.ssh.commands.base import Context, Handler, table
from sshpanel.ssh.commands.monitor import LOG_BUFFER, wait_for_quit, woken

VERBS = ("up", "ps", "logs", "stop", "start", "restart", "down", "config", "ls")


def _add_file_flags(parser: argparse.ArgumentParser, default, file: bool = True) -> None:
    if file:  # `logs -f` is --follow, as in docker compose
        parser.add_argument("-f", "--file", default=default, metavar="FILE",
                            help="compose file in your home, or - for standard input")
    parser.add_argument("-p", "--project-name", dest="project", default=default, metavar="PROJECT",
                        help="project name (default: the file's name: or its folder's)")


def register(sub) -> dict[str, Handler]:
    """Adds `compose` and its verbs to the parser; returns its handler."""
    compose = sub.add_parser("compose", help="manage compose projects (docker compose's verbs)")
    _add_file_flags(compose, None)
    verbs = compose.add_subparsers(dest="compose_verb", metavar="COMMAND", parser_class=type(compose))
    up = verbs.add_parser("up", help="create and start the project's containers")
    up.add_argument("-d", "--detach", action="store_true", help="accepted for docker's sake: up always detaches")
    up.add_argument("--build", action="store_true", help="build images of services with build: again")
    ps = verbs.add_parser("ps", help="list the project's containers")
    ps.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    ps.add_argument("--format", choices=("table", "json"), default="table")
    logs = verbs.add_parser("logs", help="print the logs of the project's services")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", default="all", metavar="N", help="only the last N lines of each (default all)")
    for verb in ("stop", "start", "restart"):
        verbs.add_parser(verb, help=f"{verb} the project's services")
    down = verbs.add_parser("down", help="remove the project's containers and network")
    down.add_argument("-v", "--volumes", action="store_true", help="remove its named volumes too")
    verbs.add_parser("config", help="print the project as the panel understands it")
    ls = verbs.add_parser("ls", help="list your projects")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    for verb, parser in verbs.choices.items():
        _add_file_flags(parser, argparse.SUPPRESS, file=verb != "logs")
        if verb in ("up", "ps", "logs", "stop", "start", "restart"):
            parser.add_argument("services", nargs="*", metavar="SERVICE")
    return {"compose": _compose}


async def _compose(ctx: Context, args: argparse.Namespace) -> int:
    verb = args.compose_verb
    if verb is None:
        raise UsageError("compose: give a command: " + ", ".join(VERBS) + "\nSee 'sshpanel compose --help'.")
    stdin = await _read_stdin(ctx) if args.file == "-" else None
    projects = Projects(ctx.workspace)
    if verb == "logs":
        return await _logs(ctx, args, projects, stdin)
    return await asyncio.to_thread(_run, ctx, args, projects, stdin)


def _run(ctx: Context, args: argparse.Namespace, projects: Projects, stdin: str | None) -> int:
    verb = args.compose_verb
    if verb == "ls":
        return _ls(ctx, args, projects)
    if verb in ("up", "config"):
        project, source = projects.load(args.file, stdin, args.project or "")
        if verb == "config":
            ctx.out(yaml.safe_dump(project.config(), sort_keys=False, default_flow_style=False).rstrip())
            return 0
        projects.up(project, source, args.services, build=args.build, on_step=ctx.err)
        return 0
    name = _name(args, projects, stdin)
    if verb == "ps":
        return _ps(ctx, args, projects.ps(name, all=args.all), args.services)
    if verb == "down":
        for line in projects.down(name, volumes=args.volumes):
            ctx.err(line)
        return 0
    for container in projects.act(verb, name, args.services):
        ctx.err(f"Container {container} {_PAST[verb]}")
    return 0


_PAST = {"stop": "Stopped", "start": "Started", "restart": "Restarted"}


def _name(args: argparse.Namespace, projects: Projects, stdin: str | None) -> str:
    """The project named by `-p`, else by the compose file."""
    if args.project:
        return args.project
    return projects.load(args.file, stdin)[0].name


async def _read_stdin(ctx: Context) -> str:
    """Reads the compose file from standard input, to its end (`-f -`)."""
    chunks, size = [], 0
    while True:
        data = await ctx.process.stdin.read(65536)
        if not data:
            break
        size += len(data)
        if size > MAX_FILE:
            raise InvalidValue(f"compose file too large: at most {MAX_FILE // 1024} KiB")
        chunks.append(data)
    text = "".join(chunks)
    return text if isinstance(text, str) else text.decode("utf-8", "replace")


def _ps(ctx: Context, args: argparse.Namespace, views: list[ServiceView], services: list[str]) -> int:
    if services:
        views = [view for view in views if view.service in services]
    if args.format == "json":
        for view in views:
            ctx.out(json.dumps(ps_json(view, ctx.workspace.settings.publish_address)))
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    rows = [(v.container.name, v.container.image, _command(v), v.service,
             format_age((now - v.container.created).total_seconds()), v.container.status, v.container.ports)
            for v in views]
    ctx.out(table(("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"), rows))
    return 0


def _command(view: ServiceView) -> str:
    text = " ".join(view.spec.command)
    return json.dumps(text[:20] + ("…" if len(text) > 20 else ""))


def ps_json(view: ServiceView, address: str) -> dict:
    """One `compose ps --format json` object, with docker compose's keys;
    `address` is the one published ports listen on (`publish_address`)."""
    c = view.container
    return {
        "ID": c.short_id,
        "Name": c.name,
        "Image": c.image,
        "Command": " ".join(view.spec.command),
        "Project": view.project,
        "Service": view.service,
        "CreatedAt": c.created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "State": c.state,
        "Status": c.status,
        "Health": "",
        "Publishers": [{"URL": address, "TargetPort": p.container, "PublishedPort": p.host,
                        "Protocol": p.protocol} for p in view.spec.ports],
    }


def _ls(ctx: Context, args: argparse.Namespace, projects: Projects) -> int:
    views = projects.ls()
    if args.format == "json":
        ctx.out(json.dumps([{"Name": v.name, "Status": v.status, "ConfigFiles": ",".join(v.config_files)}
                            for v in views]))
        return 0
    ctx.out(table(("NAME", "STATUS", "CONFIG FILES"), [(v.name, v.status, ",".join(v.config_files)) for v in views]))
    return 0


async def _logs(ctx: Context, args: argparse.Namespace, projects: Projects, stdin: str | None) -> int:
    """Every service's log, each line prefixed `SERVICE-1  | ` as docker
    compose does; with `-f` until the client leaves or every one ends."""
    tail = None if args.tail == "all" else int(args.tail) if args.tail.isdigit() else None
    if tail is None and args.tail != "all":
        raise UsageError(f"compose logs: invalid --tail {args.tail[:32]!r}: use a number of lines or 'all'")
    name = args.project or (await asyncio.to_thread(projects.load, args.file, stdin))[0].name
    rows = await asyncio.to_thread(projects.records, name, args.services)
    prefixes = {row.docker_id: row.name[len(name) + 1:] for row in rows}
    width = max(len(prefix) for prefix in prefixes.values())
    logs = WorkspaceLogs(ctx.workspace)
    followers = []
    wake = asyncio.Event()
    quit_task = asyncio.ensure_future(wait_for_quit(ctx.process, "\x03"))
    newline = "\r\n" if ctx.process.get_terminal_type() is not None else "\n"
    try:
        for row in rows:
            follower = await asyncio.to_thread(logs.open, row.docker_id, follow=args.follow, tail=tail,
                                               max_lines=LOG_BUFFER, drop_oldest=False)
            followers.append((prefixes[row.docker_id].ljust(width), follower))
            follower.subscribe(lambda: ctx.loop.call_soon_threadsafe(wake.set))
        while True:
            wake.clear()
            took = False
            for prefix, follower in followers:
                for line in follower.take(500):
                    took = True
                    ctx.process.stdout.write(f"{prefix}  | {line.text}{newline}")
            if took:
                await ctx.process.stdout.drain()
                continue
            if all(follower.ended for _prefix, follower in followers):
                break
            if not await woken(wake, quit_task):
                break
    finally:
        quit_task.cancel()
        for _prefix, follower in followers:
            follower.close()
    errors = [follower.error for _prefix, follower in followers if follower.error is not None]
    if errors:
        raise errors[0]
    return 0
