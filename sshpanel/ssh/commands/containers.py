"""Provides the container commands: `ps`, `images`, `run`, `create`,
`start`, `stop`, `restart`, `rm`, `inspect`, `whoami`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Callable

from sshpanel.access.spec import CreateRequest
from sshpanel.access.units import format_age
from sshpanel.backend.views import ContainerView
from sshpanel.errors import PanelError
from sshpanel.ssh.commands.base import Context, Handler, table


def _add_create_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="container name (generated when omitted)")
    parser.add_argument("-e", "--env", action="append", metavar="KEY=VALUE", help="set an environment variable")
    parser.add_argument("-m", "--memory", metavar="SIZE", help="memory limit (e.g. 256m, 1g)")
    parser.add_argument("--cpus", metavar="F", help="CPU limit (e.g. 0.5)")
    parser.add_argument("--restart", default="no", metavar="POLICY", help="no, always, unless-stopped, on-failure[:N]")
    parser.add_argument(
        "-p", "--publish", action="append", metavar="HOSTPORT:CONTAINERPORT[/PROTO]",
        help="publish a port (host port inside your range, see `quota`)",
    )
    parser.add_argument(
        "-v", "--volume", action="append", metavar="VOLUME:/PATH[:ro]",
        help="mount one of your named volumes (created when missing; host paths are refused)",
    )
    parser.add_argument("image", help="image on the engine (see `images`)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command and arguments")


def register(sub) -> dict[str, Handler]:
    """Adds the container commands to the parser; returns their handlers."""
    ps = sub.add_parser("ps", help="list your containers")
    ps.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    ps.add_argument("-q", "--quiet", action="store_true", help="only print IDs")
    ps.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    images = sub.add_parser("images", help="list images you can create containers from")
    images.add_argument("--format", choices=("table", "json"), default="table")
    run = sub.add_parser("run", help="create and start a container")
    run.add_argument("-d", "--detach", action="store_true", help="accepted for docker's sake: run always detaches")
    _add_create_flags(run)
    _add_create_flags(sub.add_parser("create", help="create a container without starting it"))
    for verb in ("start", "stop", "restart"):
        cmd = sub.add_parser(verb, help=f"{verb} one or more containers")
        cmd.add_argument("containers", nargs="+", metavar="CONTAINER")
    rm = sub.add_parser("rm", help="remove one or more containers")
    rm.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    rm.add_argument("containers", nargs="+", metavar="CONTAINER")
    inspect = sub.add_parser("inspect", help="show low-level information on containers")
    inspect.add_argument("containers", nargs="+", metavar="CONTAINER")
    sub.add_parser("whoami", help="show who you are logged in as")
    return {
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


def _ps(ctx: Context, args: argparse.Namespace) -> int:
    views = ctx.workspace.containers(all=args.all)
    if args.quiet:
        for view in views:
            ctx.out(view.short_id)
    elif args.format == "json":
        for view in views:
            ctx.out(json.dumps(ps_json(view)))
    else:
        now = dt.datetime.now(dt.timezone.utc)
        rows = [
            (v.short_id, v.image, format_age((now - v.created).total_seconds()), v.status, v.ports, v.name)
            for v in views
        ]
        ctx.out(table(("CONTAINER ID", "IMAGE", "CREATED", "STATUS", "PORTS", "NAMES"), rows))
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


def _images(ctx: Context, args: argparse.Namespace) -> int:
    views = ctx.workspace.images()
    if args.format == "json":
        for view in views:
            repo, _, tag = view.reference.rpartition(":")
            ctx.out(json.dumps({"Repository": repo, "Tag": tag, "ID": view.id.split(":")[-1][:12], "Size": view.size}))
    else:
        rows = []
        for view in views:
            repo, _, tag = view.reference.rpartition(":")
            rows.append((repo, tag, view.id.split(":")[-1][:12], f"{view.size / 1e6:.1f}MB"))
        ctx.out(table(("REPOSITORY", "TAG", "IMAGE ID", "SIZE"), rows))
    return 0


def _create_or_run(ctx: Context, args: argparse.Namespace) -> int:
    request = CreateRequest(
        image=args.image, name=args.name or "", command=tuple(args.command), env=tuple(args.env or ()),
        memory=args.memory or "", cpus=args.cpus or "", restart=args.restart, publish=tuple(args.publish or ()),
        volumes=tuple(args.volume or ()),
    )
    view = ctx.workspace.create_from(request, start=args.verb == "run")
    ctx.out(view.name)
    return 0


def _each(action: Callable[..., str]) -> Handler:
    """Applies an action to every named container, like docker: a failure is
    reported and the rest still run; the status is 1 if any failed."""

    def handler(ctx: Context, args: argparse.Namespace) -> int:
        status = 0
        for ref in args.containers:
            try:
                ctx.out(action(ctx.workspace, ref, args))
            except PanelError as exc:
                ctx.err(f"Error: {exc.message}")
                status = 1
        return status

    return handler


def _inspect(ctx: Context, args: argparse.Namespace) -> int:
    found, status = [], 0
    for ref in args.containers:
        try:
            found.append(ctx.workspace.inspect(ref))
        except PanelError as exc:
            ctx.err(f"Error: {exc.message}")
            status = 1
    ctx.out(json.dumps(found, indent=4))
    return status


def _whoami(ctx: Context, args: argparse.Namespace) -> int:
    p = ctx.workspace.principal
    ctx.out(f"{p.name} ({p.role})")
    ctx.out(f"key    {p.fingerprint}")
    if p.certificate:
        ctx.out(f"cert   {p.certificate}")
    ctx.out(f"from   {p.source}")
    return 0
