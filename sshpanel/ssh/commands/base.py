"""Provides what every exec command shares: the `Context` a handler gets,
the argparse subclass that raises instead of exiting, and table output."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Union

import asyncssh

from sshpanel.access.text import visible
from sshpanel.backend.admin.passwords import Passwords
from sshpanel.backend.engine.stats import StatsCollector
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import UsageError


@dataclass
class Context:
    """What a command handler works with.

    Attributes:
        workspace: The caller's Workspace (their containers only).
        process: The SSH channel (async handlers may read stdin from it).
        loop: The event loop owning the channel.
        stats: The shared CPU and memory sampler (`stats`).
        passwords: Password hashing and checks (`passwd`).
        close_user_sessions: Disconnects every connection of a user
            `(name, reason)`; call it on `loop` (admin `user disable`/`rm`).
    """

    workspace: Workspace
    process: asyncssh.SSHServerProcess
    loop: asyncio.AbstractEventLoop
    stats: StatsCollector
    passwords: Passwords
    close_user_sessions: Callable[[str, str], int]

    def out(self, text: str = "") -> None:
        """Writes one line to stdout (safe from any thread), every control
        character but tab and newline made `visible`: the text may hold what
        a user or a container controls."""
        self.write(visible(text) + "\n")

    def err(self, text: str) -> None:
        """Writes one line to stderr like `out`."""
        self.write(visible(text) + "\n", stderr=True)

    def write(self, text: str, stderr: bool = False) -> None:
        """Writes text as is to stdout or stderr (safe from any thread): only
        for data (`script show`, `template show`) and for the panel's own
        control codes; user text goes through `out`, `err` or `visible`."""
        stream = self.process.stderr if stderr else self.process.stdout
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            stream.write(text)
        else:
            self.loop.call_soon_threadsafe(_write_quietly, stream, text)


def _write_quietly(stream: asyncssh.SSHWriter, text: str) -> None:
    """Writes unless the client has gone (then there is no one to tell)."""
    try:
        stream.write(text)
    except (BrokenPipeError, ConnectionError):
        pass


Handler = Callable[[Context, argparse.Namespace], Union[int, Awaitable[int]]]
"""A command handler: a plain function runs in a worker thread (it may block
on Docker and the database); a coroutine function runs on the event loop
(for streaming) and must push blocking calls to threads itself."""


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting or printing to the process."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\nSee '{self.prog} --help'.")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise HelpShown(status, message or "")

    def print_help(self, file=None) -> None:  # type: ignore[override]
        raise HelpShown(0, self.format_help())


class HelpShown(Exception):
    """Raised by `Parser` where argparse would print help and exit."""

    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    """Formats rows as the docker CLI does: left-aligned, three-space gaps,
    every cell made `visible` (so the columns line up around escapes)."""
    rows = [tuple(visible(str(cell)) for cell in row) for row in rows]
    widths = [max([len(h)] + [len(str(row[i])) for row in rows]) for i, h in enumerate(headers)]
    lines = [
        "   ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)
