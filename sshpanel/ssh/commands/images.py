"""Provides the `image` command: `image ls` (the images you may use; admins
also see the rules), `image rm` of your own builds (issue 21: they count in
the disk quota) and the admin's allow-list, `image allow|deny [--rm]
PATTERN` (issue 6 "Allowed base images")."""

from __future__ import annotations

import argparse
import asyncio
import json

from sshpanel.backend.pipeline.builds import Builder
from sshpanel.backend.user.images import ImageRules
from sshpanel.backend.views import ImageView
from sshpanel.errors import PanelError, PermissionDenied
from sshpanel.ssh.commands.base import Context, Handler, table


def register(sub) -> dict[str, Handler]:
    """Adds `image`; returns its handler."""
    image = sub.add_parser("image", help="images you may use; the admin's allow/deny rules")
    image_sub = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    ls = image_sub.add_parser("ls", help="list the images you may use (admins: and the rules)")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    rm = image_sub.add_parser("rm", help="remove your own builds (NAME:N), as docker image rm")
    rm.add_argument("images", nargs="+", metavar="NAME:N", help="a build of yours, e.g. web:3")
    for kind, text in (
        ("allow", "allow images matching PATTERN; once any allow rule exists, only matching images (admin)"),
        ("deny", "refuse images matching PATTERN, whatever the allow rules say (admin)"),
    ):
        rule = image_sub.add_parser(kind, help=text)
        rule.add_argument("pattern", metavar="PATTERN", help="fnmatch pattern on repository:tag, e.g. 'busybox:*'")
        rule.add_argument("--rm", action="store_true", help="remove this rule instead")
    return {"image": _image}


async def _image(ctx: Context, args: argparse.Namespace) -> int:
    if args.image_command == "ls":
        return _ls(ctx, args)
    if args.image_command == "rm":
        return await _rm(ctx, args)
    rules = ImageRules(ctx.workspace)
    kind, pattern = args.image_command, args.pattern
    if args.rm:
        rules.remove(kind, pattern)
        ctx.out(f"removed {kind} rule {pattern}")
    elif rules.add(kind, pattern):
        ctx.out(f"added {kind} rule {pattern}")
    else:
        ctx.out(f"{kind} rule {pattern} already exists")
    return 0


async def _rm(ctx: Context, args: argparse.Namespace) -> int:
    """Removes each image named; like docker, goes on after a failure and
    exits 1 when any failed."""
    builder = Builder(ctx.workspace)
    failed = False
    for reference in args.images:
        try:
            for line in await asyncio.to_thread(builder.remove_image, reference):
                ctx.out(line)
        except PanelError as exc:
            ctx.err(f"Error: {exc.message}")
            failed = True
    return 1 if failed else 0


def _ls(ctx: Context, args: argparse.Namespace) -> int:
    views = ctx.workspace.images()
    rules = None
    if ctx.workspace.principal.is_admin:
        try:
            rules = ImageRules(ctx.workspace).rules()
        except PermissionDenied:
            rules = None
    if args.format == "json":
        for view in views:
            ctx.out(json.dumps(_image_json(view)))
        for rule in rules or []:
            ctx.out(json.dumps({"Rule": rule.kind, "Pattern": rule.pattern, "Author": rule.author}))
        return 0
    ctx.out(table(("REPOSITORY", "TAG", "IMAGE ID", "SIZE"), [_image_row(view) for view in views]))
    if rules is not None:
        ctx.out()
        if rules:
            ctx.out(table(("RULE", "PATTERN", "AUTHOR"), [(r.kind, r.pattern, r.author) for r in rules]))
        else:
            ctx.out("No allow or deny rules: every image on the engine may be used.")
    return 0


def _image_row(view: ImageView) -> tuple:
    repo, _, tag = view.reference.rpartition(":")
    return (repo, tag, view.id.split(":")[-1][:12], f"{view.size / 1e6:.1f}MB")


def _image_json(view: ImageView) -> dict:
    repo, _, tag = view.reference.rpartition(":")
    return {"Repository": repo, "Tag": tag, "ID": view.id.split(":")[-1][:12], "Size": view.size}
