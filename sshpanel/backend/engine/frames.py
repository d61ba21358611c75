"""Provides `FrameDecoder`, the one decoder of Docker's multiplexed stream
(the output of `logs` and of an exec without a terminal): an 8-byte header
— the stream type (`STDOUT` 1 or `STDERR` 2), three zero bytes, the payload
length as a big-endian 32-bit number — then the payload (Engine API,
"Attach to a container", "Stream format").

The SDK's own `docker.utils.socket.frames_iter` reads a blocking socket
itself, which fits neither reader here: an exec is polled with a timeout,
and a log stream arrives through HTTP chunked encoding (the bytes on the
socket are not the frames). So both feed their bytes to one decoder, which
keeps the SDK's constants and header layout (docs/PITFALLS.md "Docker").
"""

from __future__ import annotations

import struct

from docker.utils.socket import STDERR, STDOUT

HEADER = struct.Struct(">BxxxL")
"""The frame header, as `docker.utils.socket.next_frame_header` reads it."""

__all__ = ["FrameDecoder", "HEADER", "STDERR", "STDOUT"]


class FrameDecoder:
    """Splits a multiplexed byte stream into (stream, payload) frames, fed
    in pieces of any size.

    Args:
        tty: The stream comes from a terminal and is not multiplexed: every
            piece is `STDOUT` as it came.
    """

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self._pending = bytearray()

    def feed(self, data: bytes) -> None:
        """Adds bytes read from the engine."""
        self._pending += data

    def next(self) -> tuple[int, bytes] | None:
        """Returns the next complete frame, or None until more is fed.

        Returns:
            (`STDOUT` or `STDERR`, payload bytes); a stream type other than
            2 counts as `STDOUT`; empty frames are skipped.
        """
        while True:
            if self.tty:
                if not self._pending:
                    return None
                data = bytes(self._pending)
                self._pending.clear()
                return STDOUT, data
            if len(self._pending) < HEADER.size:
                return None
            stream, length = HEADER.unpack_from(self._pending)
            end = HEADER.size + length
            if len(self._pending) < end:
                return None
            data = bytes(self._pending[HEADER.size:end])
            del self._pending[:end]
            if length:
                return (STDERR if stream == STDERR else STDOUT), data

    def frames(self, data: bytes) -> list[tuple[int, bytes]]:
        """Feeds `data` and returns every frame now complete, in order."""
        self.feed(data)
        found = []
        while (frame := self.next()) is not None:
            found.append(frame)
        return found
