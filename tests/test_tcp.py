"""`acknowledge_at_once` (issue 8): every chunk a TCP connection reads
leaves its socket in quick-ACK mode, so that a client with Nagle's
algorithm on (OpenSSH before a terminal session) never waits for a
delayed ACK; other sockets are left alone. The time it saves is a
benchmark figure (benchmarks/RESULTS.md), not asserted here."""

from __future__ import annotations

import socket

import pytest

from sshpanel.ssh.tcp import QUICKACK, acknowledge_at_once

pytestmark = pytest.mark.skipif(QUICKACK is None, reason="TCP_QUICKACK is Linux only")


class Connection:
    """The two things `acknowledge_at_once` uses of an asyncssh connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received: list[tuple[bytes, object]] = []

    def get_extra_info(self, name: str):
        return self.sock if name == "socket" else None

    def data_received(self, data: bytes, datatype=None) -> None:
        self.received.append((data, datatype))


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def test_every_read_leaves_the_socket_acknowledging_at_once():
    client, server = _tcp_pair()
    try:
        conn = Connection(server)
        acknowledge_at_once(conn)  # type: ignore[arg-type]
        for chunk in (b"SSH-2.0-client\r\n", b"kexinit", b"ecdh-init"):
            server.setsockopt(socket.IPPROTO_TCP, QUICKACK, 0)
            client.sendall(chunk)
            data = server.recv(1024)
            conn.data_received(data)
            assert server.getsockopt(socket.IPPROTO_TCP, QUICKACK) == 1
        assert [data for data, _ in conn.received] == [b"SSH-2.0-client\r\n", b"kexinit", b"ecdh-init"]
    finally:
        client.close()
        server.close()


def test_a_closed_socket_does_not_break_the_read():
    client, server = _tcp_pair()
    conn = Connection(server)
    acknowledge_at_once(conn)  # type: ignore[arg-type]
    client.close()
    server.close()
    conn.data_received(b"last words", 1)
    assert conn.received == [(b"last words", 1)]


def test_unix_sockets_are_left_alone():
    left, right = socket.socketpair()
    try:
        conn = Connection(left)
        acknowledge_at_once(conn)  # type: ignore[arg-type]
        assert "data_received" not in vars(conn)
    finally:
        left.close()
        right.close()
