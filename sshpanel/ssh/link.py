"""Provides `Link`, the message channel between the supervisor and one worker
process of `serve --workers N`: JSON messages over a `SOCK_SEQPACKET` Unix
socket pair, each message one record, an accepted connection's descriptor
passed along with its message (`SCM_RIGHTS`, `socket.send_fds`).

Both ends run on their event loop thread; nothing here blocks. A message
that does not fit the socket buffer now waits in an outbox until the peer
reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import deque
from typing import Callable

log = logging.getLogger("sshpanel.link")

MAX_MESSAGE = 64 * 1024
"""Largest message, bytes (the longest is a user name and a reason)."""
MAX_FDS = 4
"""Most descriptors one message may carry."""

Handler = Callable[[dict, list[int]], None]
"""Called with each message and the descriptors that came with it (the
handler owns them: it must close or adopt every one)."""


def link_pair() -> tuple[socket.socket, socket.socket]:
    """Returns a connected pair of `SOCK_SEQPACKET` Unix sockets (the
    supervisor's end first; the second is passed to the worker process)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Link:
    """One end of a supervisor–worker channel.

    Args:
        sock: A `SOCK_SEQPACKET` Unix socket (from `link_pair`).
        on_message: Called on the loop for each message received.
        on_closed: Called once on the loop when the peer has gone.
    """

    def __init__(self, sock: socket.socket, on_message: Handler, on_closed: Callable[[], None]) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._on_message = on_message
        self._on_closed = on_closed
        self._outbox: deque[tuple[bytes, list[int]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def start(self) -> None:
        """Starts reading (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock, self._read)

    def send(self, message: dict, fds: list[int] | None = None) -> None:
        """Sends one message, with descriptors the peer receives duplicates
        of (the caller keeps and closes its own). Does nothing once closed."""
        if self.closed:
            return
        data = json.dumps(message).encode()
        fds = list(fds or ())
        if self._outbox or (not self._write(data, fds) and not self.closed):
            if not self._outbox:
                assert self._loop is not None
                self._loop.add_writer(self.sock, self._flush)
            self._outbox.append((data, [socket.dup(fd) for fd in fds]))

    def _write(self, data: bytes, fds: list[int]) -> bool:
        """Writes one record; False when the socket buffer is full. A broken
        link is closed (check `closed`)."""
        try:
            socket.send_fds(self.sock, [data], fds)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            log.warning("link closed: %s", exc)
            self.close()
        return True

    def _flush(self) -> None:
        while self._outbox and not self.closed:
            data, fds = self._outbox[0]
            if not self._write(data, fds) or self.closed:
                return
            self._outbox.popleft()
            for fd in fds:
                socket.close(fd)
        if self._loop is not None and not self.closed:
            self._loop.remove_writer(self.sock)

    def _read(self) -> None:
        while not self.closed:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    socket.close(fd)
                self.close()
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.warning("dropped a malformed link message")
                for fd in fds:
                    socket.close(fd)
                continue
            self._on_message(message, fds)

    def close(self) -> None:
        """Closes this end (idempotent); `on_closed` runs once."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock)
            self._loop.remove_writer(self.sock)
        for _data, fds in self._outbox:
            for fd in fds:
                socket.close(fd)
        self._outbox.clear()
        self.sock.close()
        self._on_closed()
