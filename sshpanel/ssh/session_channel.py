"""Provides the session channels the server opens: the client environment
allow-list, and a session slot held from channel open to channel close.

asyncssh accepts every `env` request a client sends
(docs/PITFALLS.md "asyncssh server defaults": e.g. `LD_PRELOAD`) and has no
public hook to refuse one, and with a `process_factory` it counts nothing
before a session starts. So the server opens its session channels itself
(`SSHServer.session_requested`): a channel class that refuses environment
variables outside `ALLOWED_ENV`, and a process that holds its place in the
session limits for as long as the channel is open, whether or not the client
ever sends shell, exec or a subsystem (OpenSSH `MaxSessions` also counts open
channels).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Callable

import asyncssh
from asyncssh.packet import SSHPacket

log = logging.getLogger("sshpanel.ssh")

ENCODING = "utf-8"
"""Encoding of every session channel (the TUI driver relies on `str`)."""
ERRORS = "replace"
"""Decoding errors never end a session."""
LINE_EDITOR = False
"""Textual reads raw keys (asyncssh's default is on:
docs/PITFALLS.md "asyncssh server defaults")."""

ALLOWED_ENV = re.compile(r"TERM|LANG|LC_[A-Z_]{1,32}")
"""Names of the client environment variables the server keeps
(docs/PITFALLS.md "asyncssh server defaults":
`TERM`, `LANG`, `LC_*`, as OpenSSH's usual `AcceptEnv LANG LC_*`); every
other one is refused."""

# asyncssh's defaults for a session channel (connection.py).
_WINDOW = 2 * 1024 * 1024
_MAX_PKTSIZE = 32768
_LINE_HISTORY = 1000
_MAX_LINE_LENGTH = 1024


def env_allowed(name: bytes) -> bool:
    """True when the client may set the environment variable `name`.

    Args:
        name: The variable name as sent in the `env` request (bytes).
    """
    try:
        text = name.decode("ascii")
    except UnicodeDecodeError:
        return False
    return ALLOWED_ENV.fullmatch(text) is not None


class AllowListChannel(asyncssh.SSHServerChannel):
    """A session channel that keeps only allowed environment variables.

    Args:
        conn: The server connection the channel belongs to.
    """

    def __init__(self, conn: asyncssh.SSHServerConnection) -> None:
        super().__init__(
            conn, asyncio.get_running_loop(), True, LINE_EDITOR, True, _LINE_HISTORY, _MAX_LINE_LENGTH,
            ENCODING, ERRORS, _WINDOW, _MAX_PKTSIZE,
        )

    def _process_env_request(self, packet: SSHPacket) -> bool:
        """asyncssh's handler of the `env` channel request: refuses (answers
        failure, stores nothing) a name outside `ALLOWED_ENV`."""
        key = packet.get_string()
        value = packet.get_string()
        packet.check_end()
        if not env_allowed(key):
            log.debug("refused client environment variable %r", key[:32])
            return False
        self._env[key] = value
        return True


class SlotProcess(asyncssh.SSHServerProcess):
    """A server process that gives its session slot back once, when its
    channel closes.

    Args:
        process_factory: The panel's handler of exec/shell sessions.
        sftp_factory: The panel's SFTP server factory.
        release: Gives the slot back to the session limits.

    An SFTP session takes its own place in the limits when it starts
    (`sftp.py`), so its channel's slot is given back at that moment.
    """

    def __init__(
        self,
        process_factory: Callable[[asyncssh.SSHServerProcess], object],
        sftp_factory: Callable[[asyncssh.SSHServerChannel], object],
        release: Callable[[], None],
    ) -> None:
        super().__init__(process_factory, sftp_factory, asyncssh.sftp.MIN_SFTP_VERSION, False)
        self._release: Callable[[], None] | None = release

    def give_back(self) -> None:
        """Releases the slot (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def session_started(self) -> None:
        if self.channel.get_subsystem() == "sftp":
            self.give_back()
        super().session_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self.give_back()
        super().connection_lost(exc)
