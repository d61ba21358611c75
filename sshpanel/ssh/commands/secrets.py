"""Provides the `secret` command: `secret set NAME KEY -` (the value from
stdin), `secret ls NAME`, `secret rm NAME KEY` — environment secrets of a
container, encrypted at rest, never printed back (issue 6)."""

from __future__ import annotations

import argparse
import asyncio
import json

from sshpanel.backend.user.secrets import MAX_VALUE
from sshpanel.errors import UsageError
from sshpanel.ssh.commands.account import read_stdin
from sshpanel.ssh.commands.base import Context, Handler, table


def register(sub) -> dict[str, Handler]:
    """Adds `secret`; returns its handler."""
    secret = sub.add_parser("secret", help="environment secrets of a container (encrypted, never shown)")
    actions = secret.add_subparsers(dest="secret_command", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="set KEY of container NAME to the value on stdin")
    put.add_argument("name", metavar="NAME", help="container name (it may not exist yet)")
    put.add_argument("key", metavar="KEY", help="environment variable name")
    put.add_argument("value", metavar="-", choices=("-",), help="read the value from stdin (never from the command line)")
    ls = actions.add_parser("ls", help="list the keys of container NAME's secrets (never the values)")
    ls.add_argument("name", metavar="NAME")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    rm = actions.add_parser("rm", help="remove a secret")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("key", metavar="KEY")
    return {"secret": _secret}


async def _secret(ctx: Context, args: argparse.Namespace) -> int:
    workspace = ctx.workspace
    secrets = workspace.secrets()
    command = args.secret_command
    target = f"{args.name}/{getattr(args, 'key', '')}".rstrip("/")
    if command == "set":
        if ctx.process.get_terminal_type() is not None:
            raise UsageError("pipe the value in without a terminal: printf %s VALUE | ssh HOST secret set NAME KEY -")
        value = (await read_stdin(ctx, MAX_VALUE + 2)).removesuffix("\n")
        new = await asyncio.to_thread(_audited, workspace, "secret.set", target, secrets.set, args.name, args.key, value)
        ctx.out(f"{'added' if new else 'replaced'} secret {args.key} of {args.name} "
                "(containers get it when created: run `deploy` or recreate a running one)")
    elif command == "ls":
        views = await asyncio.to_thread(secrets.keys, args.name)
        if args.format == "json":
            for view in views:
                ctx.out(json.dumps({"Key": view.key, "Updated": view.updated.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        else:
            ctx.out(table(("KEY", "UPDATED"), [(v.key, v.updated.strftime("%Y-%m-%d %H:%M")) for v in views]))
    else:
        await asyncio.to_thread(_audited, workspace, "secret.rm", target, secrets.remove, args.name, args.key)
        ctx.out(f"removed secret {args.key} of {args.name}")
    return 0


def _audited(workspace, action: str, target: str, function, *args):
    """Runs `function(*args)` under an audit entry that names the target
    (`NAME/KEY`), never the value."""
    with workspace.audited(action, target):
        return function(*args)
