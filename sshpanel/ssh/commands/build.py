"""Provides the `build` command: `build NAME [DIR|-]` builds an image from a
folder of the home directory (default: the folder NAME) or from a tar stream
on stdin, tagged `<namespace>/<user>/NAME:<n>`, with a template's Dockerfile
when the folder has none; and `template ls|show|set|rm` (issue 6)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import IO

import asyncssh

from sshpanel.backend.pipeline.builds import Builder
from sshpanel.backend.pipeline.templates import MAX_TEMPLATE, Templates
from sshpanel.errors import PanelError, QuotaExceeded, UsageError
from sshpanel.ssh.channel_codec import input_bytes
from sshpanel.ssh.commands.account import read_stdin
from sshpanel.ssh.commands.base import Context, Handler, table

CHUNK = 64 * 1024


def register(sub) -> dict[str, Handler]:
    """Adds `build`; returns its handler."""
    build = sub.add_parser("build", help="build an image from a folder of your home directory or a tar on stdin")
    build.add_argument("name", metavar="NAME", help="image name; tagged <namespace>/<you>/NAME:<n>")
    build.add_argument("source", nargs="?", metavar="DIR|-", help="folder in your home directory (default NAME), or - for a tar on stdin")
    build.add_argument("--template", metavar="T", help="use template T's Dockerfile (default: the folder's own, else detected)")
    template = sub.add_parser("template", help="Dockerfile templates for builds without a Dockerfile")
    template_sub = template.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    ls = template_sub.add_parser("ls", help="list templates")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    template_sub.add_parser("show", help="print a template's Dockerfile").add_argument("name", metavar="T")
    put = template_sub.add_parser("set", help="add or replace a template from the Dockerfile on stdin (admin)")
    put.add_argument("name", metavar="T")
    put.add_argument("text", metavar="-", choices=("-",), help="read the Dockerfile from stdin")
    template_sub.add_parser("rm", help="remove an admin template (admin)").add_argument("name", metavar="T")
    return {"build": _build, "template": _template}


async def _build(ctx: Context, args: argparse.Namespace) -> int:
    builder = Builder(ctx.workspace)
    builder.repository(args.name)
    source = args.source or args.name
    if source == "-":
        context = await _read_tar(ctx)
    else:
        context = await asyncio.to_thread(builder.context_from_folder, source)
    try:
        result = await in_own_thread(builder.run, args.name, context, ctx.out, args.template)
    except PanelError as exc:
        ctx.err(f"Error: {exc.message}")
        return exc.exit_code
    finally:
        context.close()
    ctx.out(f"Successfully built {result.image_id[7:19]}")
    ctx.out(f"Successfully tagged {result.tag}")
    return 0


async def _template(ctx: Context, args: argparse.Namespace) -> int:
    templates = Templates(ctx.workspace)
    command = args.template_command
    if command == "ls":
        views = await asyncio.to_thread(templates.views)
        if args.format == "json":
            for view in views:
                ctx.out(json.dumps({"Name": view.name, "Source": view.source, "Base": view.base}))
        else:
            ctx.out(table(("NAME", "SOURCE", "BASE"), [(v.name, v.source, v.base) for v in views]))
    elif command == "show":
        view = await asyncio.to_thread(templates.get, args.name)
        ctx.write(view.text if view.text.endswith("\n") else view.text + "\n")
    elif command == "set":
        text = await read_stdin(ctx, MAX_TEMPLATE + 1)
        new = await asyncio.to_thread(templates.set, args.name, text)
        ctx.out(f"{'added' if new else 'replaced'} template {args.name}")
    else:
        left = await asyncio.to_thread(templates.remove, args.name)
        ctx.out(f"removed template {args.name}" + (" (the built-in one is used again)" if left else ""))
    return 0


async def _read_tar(ctx: Context) -> IO[bytes]:
    """Copies the tar stream on stdin into a temporary file, at most the
    user's disk quota in bytes.

    Raises:
        UsageError: The session has a terminal (the tar must be piped in).
        QuotaExceeded: The stream is larger than the disk quota.
    """
    if ctx.process.get_terminal_type() is not None:
        raise UsageError("pipe the build context in without a terminal: tar c . | ssh HOST build NAME -")
    limit = ctx.workspace.settings.quota_disk
    handle = await asyncio.to_thread(tempfile.TemporaryFile)
    size = 0
    try:
        while True:
            try:
                text = await ctx.process.stdin.read(CHUNK)
            except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged):
                continue
            if not text:
                break
            data = input_bytes(text)
            size += len(data)
            if size > limit:
                raise QuotaExceeded(f"the build context is larger than your disk quota ({limit} bytes)")
            await asyncio.to_thread(handle.write, data)
        await asyncio.to_thread(handle.seek, 0)
    except BaseException:
        handle.close()
        raise
    return handle


async def in_own_thread(function, *args):
    """Runs a long build in a thread of its own, so that minutes of building
    never hold one of the shared executor's few workers."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sshpanel-build")
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))
    finally:
        pool.shutdown(wait=False)
