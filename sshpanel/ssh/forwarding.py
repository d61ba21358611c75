"""Provides `open_forward`, the `direct-tcpip` channels (`ssh -L`, `ssh -D`,
`ssh -W`) that reach a port of one of the user's own running containers and
nothing else (issue 25; the destination is decided by
`backend.forwarding.Forwards`), and `ForwardSession`, which carries the
bytes both ways and counts them for the forward's audit entry.

`PanelSSHServer.connection_requested` returns the coroutine `open_forward`,
asyncssh's documented way to do blocking work before a TCP session exists:
the channel is confirmed only when the container's port answered, and any
refusal reaches the client as a channel open failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Callable

import asyncssh

from sshpanel.backend.user.forwarding import ForwardTarget, Forwards
from sshpanel.errors import DatabaseUnavailable, EngineUnavailable, PanelError

log = logging.getLogger("sshpanel.forward")

CONNECT_TIMEOUT = 10.0
"""Seconds the container's port has to accept the connection."""
REFUSED = "forwarding reaches only your own running containers, by name or ID (ssh -L PORT:NAME:PORT)"
"""What the client reads for every refused destination, whatever the reason:
so someone else's container reads exactly as a name that does not exist."""


class _ContainerSide(asyncio.Protocol):
    """The TCP connection to the container's port; hands every event to its
    `ForwardSession` (reading waits until the channel is open)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.session: ForwardSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.container_data(data)

    def eof_received(self) -> bool:
        return self.session.container_eof() if self.session is not None else False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is not None:
            self.session.close()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_client()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_client()


class ForwardSession(asyncssh.SSHTCPSession[bytes]):
    """One open forward: the channel from the client and the TCP connection
    to the container, bytes passed both ways with flow control and
    half-close as `asyncssh.forward.SSHForwarder` does, and counted.

    Args:
        side: The connected container side.
        finished: Called once when the forward ends, with the bytes sent
            (client to container), the bytes received and the seconds it
            was open.
    """

    def __init__(self, side: _ContainerSide, finished: Callable[[int, int, float], None]) -> None:
        assert side.transport is not None
        self._transport = side.transport
        self._finished = finished
        self._chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._client_eof = False
        self._container_eof = False
        self._closed = False
        self.sent = 0
        self.received = 0
        self.started = time.monotonic()
        side.session = self

    # The client's side (asyncssh.SSHTCPSession) ---------------------------

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._chan = chan
        if self._transport.is_closing():  # the container hung up before the channel opened
            self.close()
            return
        self._transport.resume_reading()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.sent += len(data)
        if not self._transport.is_closing():
            self._transport.write(data)

    def eof_received(self) -> bool:
        self._client_eof = True
        if not self._transport.is_closing() and self._transport.can_write_eof():
            self._transport.write_eof()
        return not self._container_eof

    def pause_writing(self) -> None:
        self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    # The container's side (from `_ContainerSide`) ---------------------------

    def container_data(self, data: bytes) -> None:
        """Passes bytes from the container to the client."""
        self.received += len(data)
        if self._chan is not None:
            self._chan.write(data)

    def container_eof(self) -> bool:
        """The container stopped sending: so does the channel. Returns True
        (keep the socket) while the client may still send."""
        self._container_eof = True
        if self._chan is not None:
            self._chan.write_eof()
        return not self._client_eof

    def pause_client(self) -> None:
        """The container's socket is full: stop reading the channel."""
        if self._chan is not None:
            self._chan.pause_reading()

    def resume_client(self) -> None:
        """The container's socket drained: read the channel again."""
        if self._chan is not None:
            self._chan.resume_reading()

    def close(self) -> None:
        """Ends the forward on both sides (either side's close calls it),
        then reports it, once."""
        if self._closed:
            return
        self._closed = True
        self._transport.close()
        if self._chan is not None:
            self._chan.close()
        self._finished(self.sent, self.received, time.monotonic() - self.started)


async def open_forward(forwards: Forwards, conn: asyncssh.SSHServerConnection, host: str, port: int,
                       release: Callable[[], None]) -> ForwardSession:
    """Opens a forward to `host`:`port` for the user of `forwards`.

    Resolving and inspecting run in a thread; the connection to the
    container's port is made on the event loop, within `CONNECT_TIMEOUT`.

    Args:
        forwards: The user's forwards (a fresh `Workspace` of the principal).
        conn: The SSH connection the channel belongs to.
        host: The requested host (hostile text): a container's name or ID prefix.
        port: The requested port.
        release: Gives back the forward's place in the per-user limit; called
            once, when the forward ends or is refused.

    Returns:
        The session asyncssh attaches to the confirmed channel.

    Raises:
        asyncssh.ChannelOpenError: "administratively prohibited" with
            `REFUSED` for every destination that is not a running container
            of the user's; "connect failed" when the engine or the database
            does not answer, the container's port does not accept, or
            anything else went wrong (asyncssh answers the client only for
            this exception).
    """
    handed = False
    opened: list[asyncio.BaseTransport] = []
    try:
        session = await _open(forwards, conn, host, port, release, opened)
        handed = True
        return session
    except asyncssh.ChannelOpenError:
        raise
    except Exception:
        log.exception("forward to %r port %d failed", host[:64], port)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "internal error") from None
    finally:
        if not handed:
            for transport in opened:
                transport.close()
            release()


async def _open(forwards: Forwards, conn: asyncssh.SSHServerConnection, host: str, port: int,
                release: Callable[[], None], opened: list[asyncio.BaseTransport]) -> ForwardSession:
    """`open_forward`'s steps; the container's transport, once made, is put
    in `opened` (closed by the caller unless the session was handed over)."""
    try:
        target = await asyncio.to_thread(forwards.target, host, port)
    except (EngineUnavailable, DatabaseUnavailable) as exc:
        log.warning("forward to %r port %d not resolved: %s", host[:64], port, exc.message)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, exc.message) from None
    except PanelError as exc:
        log.info("refused tcp forwarding to %r port %d user=%s: %s", host[:64], port,
                 forwards.workspace.principal.name, exc.message)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, REFUSED) from None
    loop = asyncio.get_running_loop()
    try:
        transport, side = await asyncio.wait_for(
            loop.create_connection(_ContainerSide, target.address, target.port), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else "no answer"
        await asyncio.to_thread(_audit, forwards, target, 0, 0, 0.0, reason)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED,
                                        f"{target.name} port {target.port}: {reason}") from None
    opened.append(transport)
    # asyncssh drops the session of a connection that closed meanwhile
    # without telling it; checked here, with no await until it attaches.
    if conn.is_closed():
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "SSH connection closed")
    log.info("forward user=%s to %s (%s)", forwards.workspace.principal.name, target.shown, target.address)
    return ForwardSession(side, _reporter(forwards, target, release))


def _reporter(forwards: Forwards, target: ForwardTarget, release: Callable[[], None]) -> Callable[[int, int, float], None]:
    """The `finished` callback of a session: gives back its place, logs it
    and writes its audit entry in a thread."""

    def finished(sent: int, received: int, seconds: float) -> None:
        release()
        log.info("forward end user=%s to %s sent=%d received=%d seconds=%.1f",
                 forwards.workspace.principal.name, target.shown, sent, received, seconds)
        try:
            asyncio.get_running_loop().run_in_executor(None, _audit, forwards, target, sent, received, seconds)
        except RuntimeError:  # the process is shutting down: the log line above stays
            log.warning("forward audit entry of %s not written: shutting down", target.shown)

    return finished


def _audit(forwards: Forwards, target: ForwardTarget, sent: int, received: int, seconds: float,
           error: str | None = None) -> None:
    """Writes a forward's audit entry (`Forwards.finished`, in a thread); a
    database that does not answer is logged, not raised into nowhere."""
    try:
        forwards.finished(target, sent, received, seconds, error)
    except PanelError as exc:
        log.warning("forward audit entry of %s not written: %s", target.shown, exc.message)
