"""Provides the `volume` command: `volume ls`, `volume create VOLUME`,
`volume rm VOLUME` — the user's named volumes, mounted with
`run -v VOLUME:/path` (issue 6)."""

from __future__ import annotations

import argparse
import json

from sshpanel.backend.user.volumes import Volumes, volume_created
from sshpanel.errors import PanelError
from sshpanel.ssh.commands.base import Context, Handler, table


def register(sub) -> dict[str, Handler]:
    """Adds `volume`; returns its handler."""
    volume = sub.add_parser("volume", help="your named volumes (persistent data for containers)")
    actions = volume.add_subparsers(dest="volume_command", metavar="ACTION", required=True)
    ls = actions.add_parser("ls", help="list your volumes and their sizes")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    actions.add_parser("create", help="create a volume").add_argument("name", metavar="VOLUME")
    rm = actions.add_parser("rm", help="remove volumes and their data (not while a container uses them)")
    rm.add_argument("names", nargs="+", metavar="VOLUME")
    return {"volume": _volume}


def _volume(ctx: Context, args: argparse.Namespace) -> int:
    workspace = ctx.workspace
    volumes = Volumes(workspace)
    command = args.volume_command
    if command == "ls":
        views = volumes.ls()
        if args.format == "json":
            for view in views:
                ctx.out(json.dumps({"Name": view.name, "Size": view.size, "CreatedAt": view.created}))
        else:
            rows = [(v.name, f"{v.size / 1e6:.1f}MB" if v.size >= 0 else "-", volume_created(v.created)) for v in views]
            ctx.out(table(("VOLUME NAME", "SIZE", "CREATED"), rows))
        return 0
    if command == "create":
        with workspace.audited("volume.create", args.name):
            volumes.create(args.name)
        ctx.out(args.name)
        return 0
    status = 0
    for name in args.names:
        try:
            with workspace.audited("volume.rm", name):
                volumes.remove(name)
            ctx.out(name)
        except PanelError as exc:
            ctx.err(f"Error: {exc.message}")
            status = 1
    return status
