"""Provides `ExecStream`, a running Docker exec attached through the
engine's raw socket: output as it comes, input, terminal size, exit status."""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from typing import Any, Protocol

from sshpanel.backend.engine.errors import translate_errors
from sshpanel.backend.engine.frames import STDERR, STDOUT, FrameDecoder
from sshpanel.errors import EngineError, PanelError

log = logging.getLogger(__name__)

__all__ = ["ExecControl", "ExecStream", "STDERR", "STDOUT"]


class ExecControl(Protocol):
    """What an `ExecStream` asks of its engine (`Engine` has all four)."""

    def exec_resize(self, exec_id: str, width: int, height: int) -> None: ...

    def exec_inspect(self, exec_id: str) -> dict[str, Any]: ...

    def inspect_container(self, container_id: str) -> dict[str, Any]: ...

    def exec_run(self, container_id: str, argv: list[str], user: str = "0") -> bytes: ...

READ_SIZE = 64 * 1024
"""Bytes read from the engine's socket at a time."""

EXIT_WAIT = 10.0
"""Seconds to wait for the engine to report an exit code after the output ended."""


class ExecStream:
    """A running Docker exec attached through the engine's socket.

    Every method blocks; call them from threads. One thread may read while
    another writes; `interrupt()` unblocks both.

    Made by `Engine.exec_attach`.

    Args:
        engine: The engine the exec runs on.
        exec_id: The exec instance ID.
        raw: What the SDK's `exec_start(socket=True)` returned.
        tty: Whether the exec has a terminal (the stream is then not
            multiplexed).
    """

    def __init__(self, engine: ExecControl, exec_id: str, raw: Any, tty: bool) -> None:
        self.engine = engine
        self.exec_id = exec_id
        self.tty = tty
        self._raw = raw
        self._sock = _duplex_socket(raw)
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN | select.POLLPRI)
        self._frames = FrameDecoder(tty)
        self._eof = False
        self._closed = False

    def read(self, timeout: float | None = None) -> tuple[int, bytes] | None:
        """Returns the next piece of output.

        Args:
            timeout: Seconds to wait at most; None waits until output comes.

        Returns:
            (`STDOUT` or `STDERR`, bytes), or None once the output has ended
            (the process exited or the exec was closed). With a terminal every
            piece is `STDOUT`.

        Raises:
            TimeoutError: Nothing arrived within `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._frames.next()
            if frame is not None:
                return frame
            if self._eof:
                return None
            self._receive(deadline)

    def write(self, data: bytes) -> None:
        """Sends bytes to the process's standard input.

        Raises:
            OSError: The exec has ended or its input was closed.
        """
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        """Signals end of input to a process without a terminal (it reads
        EOF). Do not call it with a terminal: the engine then drops the whole
        attachment while the process goes on."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed: the process has no input to end

    def resize(self, width: int, height: int) -> None:
        """Sets the size of the exec's terminal.

        Args:
            width: Columns, > 0.
            height: Rows, > 0.

        Raises:
            NotFound, EngineError: The exec is gone or has not started yet.
        """
        with translate_errors("the command has ended"):
            self.engine.exec_resize(self.exec_id, width, height)

    def resize_when_started(self, width: int, height: int, attempts: int = 10) -> bool:
        """Sets the initial terminal size, retrying while the process starts.

        The engine refuses a resize until the exec's process exists, which
        may be a moment after `exec_start` answered (the docker CLI retries
        the same way).

        Returns:
            True when the size was set; False when the process ended first
            or never accepted it.
        """
        for attempt in range(attempts):
            try:
                self.resize(width, height)
                return True
            except PanelError:
                time.sleep(0.01 * (attempt + 1))
        return False

    def wait(self, timeout: float = EXIT_WAIT) -> int:
        """Returns the exit code once the engine reports the process ended.

        Call after `read()` returned None. The engine may still report the
        process running for a moment after its output ended.

        Args:
            timeout: Seconds to wait at most.

        Returns:
            The exit status (126/127 when the command could not be started,
            128+N when killed by signal N).

        Raises:
            EngineError: No exit code within `timeout`.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            with translate_errors("the command has ended"):
                info = self.engine.exec_inspect(self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() >= deadline:
                raise EngineError("the engine did not report the command's exit status")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def interrupt(self) -> None:
        """Ends the attachment without releasing the socket, from any thread:
        a `read()` in progress returns None, a `write()` raises. The process
        itself keeps running (see `hang_up`)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the engine closed it first

    def hang_up(self) -> bool:
        """Sends SIGHUP to the process group of an exec that still runs, as a
        terminal hang-up would: its client went away.

        The engine has no call to end an exec, and ending the attachment does
        not end the process (a shell would wait forever and hold one of the
        container's pids). Every exec process is a session leader, so its
        group is its whole job. Its PID inside the container is read from the
        host's `/proc` (`NSpid`), after checking that the process is in the
        container's PID namespace; where the panel cannot see the host's
        processes (it runs in a container itself) nothing is sent.

        Returns:
            True when the signal was sent.
        """
        try:
            with translate_errors("the command has ended"):
                info = self.engine.exec_inspect(self.exec_id)
                if not info.get("Running") or not info.get("Pid"):
                    return False
                state = self.engine.inspect_container(info["ContainerID"]).get("State") or {}
            inner = _inner_pid(int(info["Pid"]), int(state.get("Pid") or 0))
            if inner is None:
                return False
            argv = ["/bin/sh", "-c", 'kill -s HUP -- "-$1"', "sshpanel-hangup", str(inner)]
            with translate_errors("the command has ended"):
                self.engine.exec_run(info["ContainerID"], argv)
            return True
        except PanelError as exc:
            log.info("could not hang up exec %s: %s", self.exec_id[:12], exc.message)
            return False

    def close(self) -> None:
        """Ends the attachment and releases the socket (idempotent). Call it
        once no other thread uses the stream."""
        if self._closed:
            return
        self._closed = True
        self.interrupt()
        self._sock.close()
        response = getattr(self._raw, "_response", None)
        if response is not None:
            response.close()
        self._raw.close()

    def _receive(self, deadline: float | None) -> None:
        """Receives once into the buffer; marks EOF when the engine closed."""
        wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        if not self._poll.poll(wait_ms):
            raise TimeoutError("no output")
        try:
            data = self._sock.recv(READ_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if data:
            self._frames.feed(data)
        else:
            self._eof = True


def _inner_pid(host_pid: int, init_pid: int) -> int | None:
    """Maps a host PID to the PID inside its container.

    Args:
        host_pid: The process's PID on the host (as the engine reports it).
        init_pid: Host PID of the container's main process.

    Returns:
        The PID in the container's namespace, or None when the host's
        `/proc` is not visible or the process is not in that namespace.
    """
    try:
        if os.readlink(f"/proc/{host_pid}/ns/pid") != os.readlink(f"/proc/{init_pid}/ns/pid"):
            return None
        with open(f"/proc/{host_pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    pids = line.split()[1:]
                    if len(pids) >= 2 and pids[0] == str(host_pid):
                        return int(pids[-1])
                    return None
    except (OSError, ValueError):
        return None
    return None


def _duplex_socket(raw: Any) -> socket.socket:
    """Returns a blocking socket for both directions of a hijacked connection.

    On a unix or plain TCP engine the SDK returns a `socket.SocketIO`, which
    has no `shutdown` and sends partially; a duplicate descriptor of the same
    connection gives the full socket API. On a TLS engine it returns the
    `SSLSocket` itself.

    Raises:
        EngineError: The engine connection is of another kind (`ssh://`).
    """
    if isinstance(raw, socket.socket):
        sock = raw
    elif isinstance(raw, socket.SocketIO):
        sock = socket.socket(fileno=os.dup(raw.fileno()))
    else:
        raise EngineError("exec needs an engine reached over a unix socket or TCP")
    sock.settimeout(None)
    return sock
