"""Provides `acknowledge_at_once`, which keeps the kernel's delayed ACKs from
stalling clients that leave Nagle's algorithm on.

OpenSSH's `ssh` turns on `TCP_NODELAY` only for an interactive session,
after authentication; until then, and for the whole of an exec session
without a terminal, a small message it writes waits (Nagle) until the
previous one is acknowledged. Twice in every handshake the client writes
two messages with no answer in between (`KEXINIT` then `KEX_ECDH_INIT`;
`NEWKEYS` then `SERVICE_REQUEST`), and Linux delays the ACK of the first by
up to 40 ms because the server has nothing to send back. Measured with
OpenSSH 9.2 against this server on loopback (`ssh -vvv`): 84 of the 118 ms
of `ssh panel whoami` were these two waits; with the ACK sent at once, the
command took 42 ms (issue 8, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import socket
from typing import Any

import asyncssh

QUICKACK = getattr(socket, "TCP_QUICKACK", None)
"""`TCP_QUICKACK` (tcp(7)), Linux only; None where the platform has none."""


def acknowledge_at_once(conn: asyncssh.SSHServerConnection) -> None:
    """Makes the kernel acknowledge what this connection receives right away.

    `TCP_QUICKACK` is not permanent (the kernel returns to delayed ACKs
    when it sees an interactive exchange), so it is set again for every
    chunk the connection reads, before the chunk is handled: one
    `setsockopt` per read, and the ACK of the data just read leaves at
    once. For the whole connection, not only the handshake, since an exec
    session's stdin (data, then EOF) meets the same wait.

    Args:
        conn: A connection whose transport is a TCP socket; anything else
            (a Unix socket, a platform without `TCP_QUICKACK`) is left as it is.
    """
    sock = conn.get_extra_info("socket")
    if QUICKACK is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    received = conn.data_received

    def data_received(data: bytes, datatype: Any = None) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:  # the socket is closing
            pass
        received(data, datatype)

    conn.data_received = data_received  # type: ignore[method-assign]
