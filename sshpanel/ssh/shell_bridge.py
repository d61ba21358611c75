"""Provides `bridge_shell` and `bridge_exec`, which connect an SSH channel
raw to a Docker exec in one of the user's containers, in both directions.

The socket to the engine blocks, so each bridge reads and writes it in two
threads of its own (not the shared default executor, which a few
long-running shells would otherwise fill). Bytes pass unchanged: the channel
is under the codec of `sshpanel.ssh.channel_codec` while bridged.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

import asyncssh

from sshpanel.backend.engine import STDERR, STDOUT, ExecStream
from sshpanel.backend.user.shell import ExecOptions, open_exec
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import PanelError
from sshpanel.ssh.channel_codec import byte_exact, input_bytes, output_decoder
from sshpanel.ssh.pty import pty_size

READ_SIZE = 64 * 1024
"""Characters read from the SSH channel at a time."""

"""Terminal size used when the client sent none."""

HANGUP_STATUS = 129
"""Exit status reported when the client went away first (128 + SIGHUP)."""


async def bridge_shell(
    process: asyncssh.SSHServerProcess,
    workspace: Workspace,
    ref: str,
    command: list[str] | None = None,
    user: str | None = None,
) -> int:
    """Runs a shell (or `command`) with a terminal in one of the user's
    containers, bridged raw to the SSH channel, until it exits.

    Keystrokes, Ctrl+C/Ctrl+D/Ctrl+Z included, reach the container's terminal
    as bytes; window changes are forwarded. The caller must not read the
    channel's stdin meanwhile (a TUI driver stops its reader first).

    Args:
        process: The SSH session, with a PTY.
        workspace: The user's workspace.
        ref: The container's short name or ID prefix (the user's own only).
        command: Program and arguments; None for `/bin/bash`, else `/bin/sh`.
        user: User inside the container; None for its default user.

    Returns:
        The exit status of the shell; 129 when the client went away first.

    Raises:
        NotFound: No such container of the user's.
        Conflict: The container is not running.
        InvalidValue: Bad command or user.
        EngineError, EngineUnavailable: The engine failed.
    """
    width, height = terminal_size(process)
    options = ExecOptions(
        command=tuple(command) if command else None,
        tty=True,
        user=user,
        size=(width, height),
        term=process.get_terminal_type(),
    )
    return await bridge_exec(process, workspace, ref, options)


async def bridge_exec(
    process: asyncssh.SSHServerProcess, workspace: Workspace, ref: str, options: ExecOptions
) -> int:
    """Runs an exec in one of the user's containers, bridged to the channel.

    Without a terminal stdout and stderr stay separate and end of input is
    passed on; with one, input end is not passed on (the engine would drop
    the whole attachment) and the exec runs until it exits. When the client
    goes away first, the process is hung up (`ExecStream.hang_up`).

    Args:
        process: The SSH session (the server's text encoding).
        workspace: The user's workspace.
        ref: The container's short name or ID prefix (the user's own only).
        options: What to run (see `ExecOptions`).

    Returns:
        The exec's exit status; 129 when the client went away first.

    Raises:
        NotFound, Conflict, InvalidValue, EngineError, EngineUnavailable:
            As `open_exec`.
    """
    stream = await asyncio.to_thread(open_exec, workspace, ref, options)
    with byte_exact(process):
        return await _bridge(process, stream)


async def _bridge(process: asyncssh.SSHServerProcess, stream: ExecStream) -> int:
    """Pumps both directions until the exec ends or the client goes away."""
    channel = process.channel
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sshpanel-exec")
    loop = asyncio.get_running_loop()
    output = asyncio.create_task(_forward_output(process, stream, loop, pool))
    feeding = asyncio.create_task(_forward_input(process, stream, loop, pool))
    closed = asyncio.create_task(channel.wait_closed())
    try:
        await asyncio.wait({output, closed}, return_when=asyncio.FIRST_COMPLETED)
        if output.done() and output.exception() is None:
            return await asyncio.to_thread(stream.wait)
        # The client went away (the channel closed, or writing to it failed).
        stream.interrupt()
        await asyncio.gather(output, return_exceptions=True)
        await asyncio.to_thread(stream.hang_up)
        return HANGUP_STATUS
    finally:
        for task in (output, feeding, closed):
            task.cancel()
        await asyncio.gather(output, feeding, closed, return_exceptions=True)
        stream.interrupt()  # unblocks a thread still writing input
        await asyncio.to_thread(pool.shutdown)
        await asyncio.to_thread(stream.close)


def terminal_size(process: asyncssh.SSHServerProcess) -> tuple[int, int]:
    """The client's terminal size as (columns, rows), clamped (`pty_size`);
    80×24 when it sent none."""
    width, height, *_ = process.get_terminal_size()
    return pty_size(width, height)


async def _forward_output(process, stream: ExecStream, loop, pool) -> None:
    """Copies the exec's output to the channel until it ends, at the pace the
    client reads (each chunk is drained before the next is read)."""
    decoders = {STDOUT: output_decoder(), STDERR: output_decoder()}
    while True:
        chunk = await loop.run_in_executor(pool, stream.read)
        if chunk is None:
            for which, decoder in decoders.items():  # bytes of an unfinished UTF-8 sequence
                tail = decoder.decode(b"", True)
                if tail:
                    (process.stderr if which == STDERR else process.stdout).write(tail)
            return
        which, data = chunk
        writer = process.stderr if which == STDERR else process.stdout
        writer.write(decoders[which].decode(data))
        await writer.drain()


async def _forward_input(process, stream: ExecStream, loop, pool) -> None:
    """Copies channel input to the exec and window changes to its terminal."""
    while True:
        try:
            text = await process.stdin.read(READ_SIZE)
        except asyncssh.TerminalSizeChanged as change:
            if stream.tty and change.width > 0 and change.height > 0:
                with contextlib.suppress(PanelError):
                    await asyncio.to_thread(stream.resize, *pty_size(change.width, change.height))
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue
        if not text:
            if not stream.tty:
                await loop.run_in_executor(pool, stream.close_stdin)
            return
        try:
            await loop.run_in_executor(pool, stream.write, input_bytes(text))
        except OSError:
            return  # the process no longer reads its input
