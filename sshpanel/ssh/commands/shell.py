"""Provides the shell and provisioning commands: `exec`, `shell`,
`script add|ls|show|rm` and `provision`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import asyncssh

from sshpanel.access.text import visible
from sshpanel.access.units import format_age
from sshpanel.backend.engine import STDERR, STDOUT
from sshpanel.backend.user.provision import Provisioner
from sshpanel.backend.user.scripts import MAX_SCRIPT_BYTES
from sshpanel.backend.user.shell import ExecOptions
from sshpanel.errors import InvalidValue, PanelError, UsageError
from sshpanel.ssh.commands.base import Context, Handler, Parser, table
from sshpanel.ssh.channel_codec import byte_exact, output_decoder
from sshpanel.ssh.shell_bridge import bridge_exec, bridge_shell, terminal_size

T = TypeVar("T")


def register(sub) -> dict[str, Handler]:
    """Adds the shell and provisioning commands; returns their handlers."""
    run = sub.add_parser("exec", help="run a command in a running container")
    run.add_argument("-i", "--interactive", action="store_true", help="keep stdin open (stdin is always passed)")
    run.add_argument("-t", "--tty", action="store_true", help="allocate a terminal (needs ssh -t with -i)")
    run.add_argument("-u", "--user", metavar="USER", help="user inside the container (name|uid[:group|gid])")
    run.add_argument("container", metavar="CONTAINER")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")
    shell = sub.add_parser("shell", help="open a shell in a running container (needs ssh -t)")
    shell.add_argument("-u", "--user", metavar="USER", help="user inside the container")
    shell.add_argument("container", metavar="CONTAINER")

    script = sub.add_parser("script", help="manage your provisioning scripts")
    verbs = script.add_subparsers(dest="script_verb", metavar="ACTION", parser_class=Parser)
    verbs.required = True
    add = verbs.add_parser("add", help="create or replace a script: script add NAME - < install.sh")
    add.add_argument("name", metavar="NAME")
    add.add_argument("source", metavar="-", choices=("-",), help="read the script from stdin")
    listed = verbs.add_parser("ls", help="list your scripts")
    listed.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    show = verbs.add_parser("show", help="print a script")
    show.add_argument("name", metavar="NAME")
    remove = verbs.add_parser("rm", help="remove scripts")
    remove.add_argument("names", nargs="+", metavar="NAME")

    provision = sub.add_parser("provision", help="run one of your scripts (or - for stdin) in a container")
    provision.add_argument("--timeout", type=float, metavar="SECONDS", help="kill the script after this long")
    provision.add_argument("container", metavar="CONTAINER")
    provision.add_argument("script", metavar="SCRIPT", help="a script name, or - to read it from stdin")
    return {"exec": _exec, "shell": _shell, "script": _script, "provision": _provision}


async def _exec(ctx: Context, args: argparse.Namespace) -> int:
    command = args.command
    if not command:
        raise UsageError("exec: a command is required\nSee 'exec --help'.")
    has_pty = ctx.process.get_terminal_type() is not None
    if args.tty and args.interactive and not has_pty:
        raise UsageError("the input device is not a TTY: connect with ssh -t")
    options = ExecOptions(
        command=tuple(command),
        tty=args.tty,
        user=args.user,
        size=terminal_size(ctx.process) if args.tty else None,
        term=ctx.process.get_terminal_type() if args.tty else None,
    )
    return await bridge_exec(ctx.process, ctx.workspace, args.container, options)


async def _shell(ctx: Context, args: argparse.Namespace) -> int:
    if ctx.process.get_terminal_type() is None:
        raise UsageError("shell needs a terminal: connect with ssh -t")
    return await bridge_shell(ctx.process, ctx.workspace, args.container, user=args.user)


async def _script(ctx: Context, args: argparse.Namespace) -> int:
    provisioner = Provisioner(ctx.workspace)
    if args.script_verb == "add":
        body = await _read_script(ctx)
        view, _created = await asyncio.to_thread(provisioner.save, args.name, body)
        ctx.out(view.name)
    elif args.script_verb == "ls":
        views = await asyncio.to_thread(provisioner.scripts)
        if args.format == "json":
            for view in views:
                created = view.created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
                ctx.out(json.dumps({"Name": view.name, "Size": view.size, "SHA256": view.sha256, "CreatedAt": created}))
        else:
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            rows = [
                (v.name, v.size, v.sha256[:12], format_age((now - v.created).total_seconds()))
                for v in views
            ]
            ctx.out(table(("NAME", "SIZE", "SHA256", "CREATED"), rows))
    elif args.script_verb == "show":
        view = await asyncio.to_thread(provisioner.script, args.name)
        ctx.write(view.body)
    else:
        status = 0
        for name in args.names:
            try:
                await asyncio.to_thread(provisioner.remove, name)
                ctx.out(name)
            except PanelError as exc:
                ctx.err(f"Error: {exc.message}")
                status = 1
        return status
    return 0


async def _provision(ctx: Context, args: argparse.Namespace) -> int:
    script, body = args.script, None
    if script == "-":
        script, body = None, await _read_script(ctx)
    provisioner = Provisioner(ctx.workspace)
    cancel = threading.Event()
    closed = asyncio.create_task(ctx.process.channel.wait_closed())
    closed.add_done_callback(lambda _task: cancel.set())
    try:
        with byte_exact(ctx.process):
            on_output, flush = _output_writer(ctx.process, ctx.loop)
            try:
                result = await _in_own_thread(
                    provisioner.run, args.container, script, body, on_output, cancel, args.timeout
                )
            finally:
                flush()
    finally:
        closed.cancel()
    return result.exit_code


async def _read_script(ctx: Context) -> str:
    """Reads a script from stdin until EOF.

    Raises:
        UsageError: The session has a terminal (the script must be piped in).
        InvalidValue: The script is larger than `MAX_SCRIPT_BYTES`.
    """
    if ctx.process.get_terminal_type() is not None:
        raise UsageError("pipe the script in without a terminal: ssh HOST ... - < install.sh")
    parts: list[str] = []
    size = 0
    while True:
        try:
            text = await ctx.process.stdin.read(64 * 1024)
        except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged):
            continue
        if not text:
            return "".join(parts)
        size += len(text)
        if size > MAX_SCRIPT_BYTES:
            raise InvalidValue(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
        parts.append(text)


def _output_writer(
    process: asyncssh.SSHServerProcess, loop: asyncio.AbstractEventLoop
) -> tuple[Callable[[int, bytes], None], Callable[[], None]]:
    """Returns an `on_output` callback for a worker thread, and `flush`.

    The callback writes to the channel on the event loop and waits until the
    client took the data, so a slow client slows the reading instead of
    filling memory. The output is the container's, so it is made `visible`
    (the run's record keeps it as it came). Once the client is gone, output is dropped (the run's
    record keeps its last lines). `flush()`, called on the loop at the end,
    writes the bytes of an unfinished UTF-8 sequence.
    """
    decoders = {STDOUT: output_decoder(), STDERR: output_decoder()}
    gone = threading.Event()

    def writer(which: int) -> asyncssh.SSHWriter:
        return process.stderr if which == STDERR else process.stdout

    async def write(which: int, data: bytes) -> None:
        writer(which).write(visible(decoders[which].decode(data)))
        await writer(which).drain()

    def on_output(which: int, data: bytes) -> None:
        if gone.is_set():
            return
        try:
            asyncio.run_coroutine_threadsafe(write(which, data), loop).result()
        except Exception:  # the channel closed under us; the run goes on
            gone.set()

    def flush() -> None:
        for which, decoder in decoders.items():
            tail = decoder.decode(b"", True)
            if tail and not gone.is_set() and not process.channel.is_closing():
                writer(which).write(visible(tail))

    return on_output, flush


async def _in_own_thread(function: Callable[..., T], *args) -> T:
    """Runs a long blocking call in a thread of its own, so that minutes of
    provisioning never hold one of the shared executor's few workers."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sshpanel-provision")
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))
    finally:
        pool.shutdown(wait=False)
