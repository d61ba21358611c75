"""Provides the `build` command: `build NAME [DIR|-]` builds an image from a
folder of the home directory (default: the folder NAME) or from a tar stream
on stdin, tagged `<namespace>/<user>/NAME:<n>` (issue 6)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import IO

import asyncssh

from sshpanel.backend.builds import Builder
from sshpanel.errors import PanelError, QuotaExceeded, UsageError
from sshpanel.ssh.channel_codec import input_bytes
from sshpanel.ssh.commands.base import Context, Handler

CHUNK = 64 * 1024


def register(sub) -> dict[str, Handler]:
    """Adds `build`; returns its handler."""
    build = sub.add_parser("build", help="build an image from a folder of your home directory or a tar on stdin")
    build.add_argument("name", metavar="NAME", help="image name; tagged <namespace>/<you>/NAME:<n>")
    build.add_argument("source", nargs="?", metavar="DIR|-", help="folder in your home directory (default NAME), or - for a tar on stdin")
    return {"build": _build}


async def _build(ctx: Context, args: argparse.Namespace) -> int:
    builder = Builder(ctx.workspace)
    builder.repository(args.name)
    source = args.source or args.name
    if source == "-":
        context = await _read_tar(ctx)
    else:
        context = await asyncio.to_thread(builder.context_from_folder, source)
    try:
        result = await _in_own_thread(builder.run, args.name, context, ctx.out)
    except PanelError as exc:
        ctx.err(f"Error: {exc.message}")
        return exc.exit_code
    finally:
        context.close()
    ctx.out(f"Successfully built {result.image_id[7:19]}")
    ctx.out(f"Successfully tagged {result.tag}")
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


async def _in_own_thread(function, *args):
    """Runs a long build in a thread of its own, so that minutes of building
    never hold one of the shared executor's few workers."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sshpanel-build")
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))
    finally:
        pool.shutdown(wait=False)
