"""SSH forwarding to the user's own containers (issue 25), with the real
OpenSSH client: `ssh -L`, `ssh -D` and `ssh -W` reach a port of one of the
user's running containers by name or ID prefix; every other destination
(host addresses, `localhost`, the panel's own port, container IPs, another
user's container by name, ID prefix or IP, a stopped container, an unknown
name, the Docker socket) is refused with one message and reaches nothing.
Each forward is an audit entry; `SSHPANEL_FORWARDING=0` refuses them all."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
from pathlib import Path

import asyncio
import asyncssh
import pytest

from sshpanel.ssh.forwarding import REFUSED
from tests.conftest import SSH_BASE, TEST_IMAGE, wait_for

pytestmark = pytest.mark.docker

OPENSSH = [*(arg for arg in SSH_BASE[:-2] if arg != "-q"), "-o", "LogLevel=INFO"]
"""The suite's OpenSSH options at `LogLevel=INFO` (not `-q`), where the
client prints why a channel failed."""
REQUEST = b"GET / HTTP/1.0\r\n\r\n"


BIG = 8 * 1024 * 1024
"""Bytes of alice's `/big` (far more than an SSH channel's window)."""


def _httpd(text: str, big: bool = False) -> list[str]:
    """The command of a container serving `text` at `/` on port 80 (busybox
    httpd); if asked, also `BIG` zero bytes at `/big`, and on port 9000 the
    count of the bytes a client sends (`nc -e wc -c`)."""
    extra = (f" && dd if=/dev/zero of=/tmp/www/big bs=1048576 count={BIG // 1048576}"
             " && (while true; do nc -l -p 9000 -e wc -c; done &)") if big else ""
    return ["sh", "-c", f"mkdir -p /tmp/www && echo {text} > /tmp/www/index.html{extra} && "
                        "exec httpd -f -p 80 -h /tmp/www"]


class HostListener:
    """A TCP listener on every host address that counts the connections it
    accepts: a forward that reached the host would show here."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("0.0.0.0", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost-listener\n")
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def apps(panel, docker_client):
    """Alice's running `web` and created-only `stopped`, bob's running
    `bobweb`, and what the tests aim at: their IDs and addresses, the
    gateway of alice's network (a host address), a counting host listener."""
    alice, bob = panel.users["alice"], panel.users["bob"]
    assert panel.run(alice, "run", "--name", "web", TEST_IMAGE, *_httpd("alice-web", big=True)).returncode == 0
    assert panel.run(alice, "create", "--name", "stopped", TEST_IMAGE, *_httpd("stopped")).returncode == 0
    assert panel.run(bob, "run", "--name", "bobweb", TEST_IMAGE, *_httpd("bob-secret")).returncode == 0
    ns = panel.namespace
    web = docker_client.containers.get(f"{ns}.alice.web")
    bobweb = docker_client.containers.get(f"{ns}.bob.bobweb")
    listener = HostListener()
    info = {
        "web_id": web.id,
        "web_ip": web.attrs["NetworkSettings"]["Networks"][f"{ns}.alice"]["IPAddress"],
        "bob_id": bobweb.id,
        "bob_ip": bobweb.attrs["NetworkSettings"]["Networks"][f"{ns}.bob"]["IPAddress"],
        "gateway": docker_client.networks.get(f"{ns}.alice").attrs["IPAM"]["Config"][0]["Gateway"],
        "listener": listener,
    }
    # busybox httpd answers once it listens: wait through a forward.
    wait_for(lambda: b"alice-web" in _stdio(panel, alice, "web:80").stdout, 60, "alice's httpd")
    wait_for(lambda: b"bob-secret" in _stdio(panel, bob, "bobweb:80").stdout, 60, "bob's httpd")
    yield info
    listener.close()
    panel.run(alice, "rm", "-f", "web", "stopped")
    panel.run(bob, "rm", "-f", "bobweb")


def _stdio(panel, user, destination: str, data: bytes = REQUEST) -> subprocess.CompletedProcess:
    """`ssh -W destination` with `data` on stdin (the client half-closes
    after it): stdout is what came back."""
    return subprocess.run([*OPENSSH, "-i", str(user.key), "-p", str(panel.port), "-W", destination,
                           f"{user.name}@127.0.0.1"], input=data, capture_output=True, timeout=60)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


@contextlib.contextmanager
def _ssh_forward(panel, user, tmp_path: Path, option: str, spec: str):
    """Runs `ssh -N OPTION SPEC` (e.g. `-L PORT:web:80`, `-D PORT`) until the
    block ends; yields the path of its verbose log once the client listens."""
    log = tmp_path / f"ssh-{option.strip('-')}-{_free_port()}.log"
    command = [*OPENSSH[:-2], "-o", "LogLevel=DEBUG1", "-o", "ExitOnForwardFailure=yes", "-N",
               "-i", str(user.key), "-p", str(panel.port), option, spec, f"{user.name}@127.0.0.1"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "Entering interactive session" in log.read_text(errors="replace")
                 or process.poll() is not None, 30, "the ssh client")
        assert process.poll() is None, log.read_text(errors="replace")
        yield log
    finally:
        process.kill()
        process.wait(timeout=15)


def _exchange(port: int, data: bytes) -> bytes:
    """Connects to 127.0.0.1:`port`, sends `data`, half-closes and returns
    everything read until the other side closes (or resets: the client
    drops a refused forward's unread request)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return _read_all(sock)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _socks5(port: int, host: bytes, target_port: int, data: bytes, address_type: int = 3) -> bytes:
    """A SOCKS5 CONNECT by hand (RFC 1928, no authentication) through the
    client's `-D` listener, then `data`; returns what came back after the
    SOCKS replies (b'' when the forward was refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"
        address = bytes([len(host)]) + host if address_type == 3 else host
        sock.sendall(b"\x05\x01\x00" + bytes([address_type]) + address + target_port.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 10:
            chunk = sock.recv(10 - len(reply))
            if not chunk:
                return b""
            reply += chunk
        sock.sendall(data)
        return _read_all(sock)


def _open_failures(text: str) -> list[str]:
    """The client's `open failed` lines, without the channel number."""
    return [re.sub(r"channel \d+: ", "", line.strip()) for line in text.splitlines() if "open failed" in line]


# What works ---------------------------------------------------------------------


def test_local_forward_reaches_the_users_container(panel, apps, tmp_path):
    """`ssh -L PORT:web:80`: busybox httpd's page comes back; by ID prefix too."""
    alice = panel.users["alice"]
    by_name, by_id = _free_port(), _free_port()
    with _ssh_forward(panel, alice, tmp_path, "-L", f"{by_name}:web:80"):
        reply = _exchange(by_name, REQUEST)
    assert reply.startswith(b"HTTP/1.") and b"alice-web" in reply
    with _ssh_forward(panel, alice, tmp_path, "-L", f"{by_id}:{apps['web_id'][:12]}:80"):
        assert b"alice-web" in _exchange(by_id, REQUEST)


def test_stdio_forward_reaches_the_users_container(panel, apps):
    """`ssh -W web:80` (what `ProxyJump` does): the page on stdout."""
    result = _stdio(panel, panel.users["alice"], "web:80")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.") and b"alice-web" in result.stdout


def test_a_large_reply_comes_through_whole(panel, apps, tmp_path):
    """8 MiB through `-L` (flow control both ways: the channel's window and
    the container's socket), and 8 MiB the other way through `-W`, counted
    by the container."""
    port = _free_port()
    with _ssh_forward(panel, panel.users["alice"], tmp_path, "-L", f"{port}:web:80"):
        reply = _exchange(port, b"GET /big HTTP/1.0\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and body == bytes(BIG)
    result = _stdio(panel, panel.users["alice"], "web:9000", bytes(BIG))
    assert result.stdout.strip() == str(BIG).encode(), result.stderr


def test_socks_forward_reaches_the_users_container_by_name(panel, apps, tmp_path):
    """`ssh -D PORT` with the container's name as the SOCKS host (what
    `curl --socks5-hostname` sends): the page comes back."""
    port = _free_port()
    with _ssh_forward(panel, panel.users["alice"], tmp_path, "-D", str(port)):
        reply = _socks5(port, b"web", 80, REQUEST)
        curl = subprocess.run(["curl", "-s", "--max-time", "30", "--socks5-hostname", f"127.0.0.1:{port}",
                               "http://web/"], capture_output=True, timeout=60)
    assert b"alice-web" in reply
    assert curl.returncode == 0 and curl.stdout == b"alice-web\n"


def test_a_forward_is_an_audit_entry_with_bytes_each_way(panel, apps):
    """One entry per forward: the container and port, the bytes each way,
    the duration; a refusal is an entry too."""
    alice = panel.users["alice"]
    admin = panel.users.get("forward-admin") or panel.add_user("forward-admin", admin=True)
    result = _stdio(panel, alice, "web:80")
    assert b"alice-web" in result.stdout
    _stdio(panel, alice, "nosuch:80")

    def entries():
        listing = panel.run(admin, "audit", "--user", "alice", "--action", "forward", "--format", "json")
        return [json.loads(line) for line in listing.stdout.splitlines()]

    def done():
        found = entries()
        return any(e["Target"] == "web:80" and e["Outcome"].startswith("ok") for e in found) and \
            any(e["Target"] == "nosuch:80" for e in found) and found

    found = wait_for(done, 30, "the forward's audit entries")
    ok = next(e for e in found if e["Target"] == "web:80" and e["Outcome"].startswith("ok"))
    match = re.fullmatch(r"ok: sent (\d+) bytes, received (\d+) bytes, [\d.]+ s", ok["Outcome"])
    assert match, ok
    assert int(match.group(1)) == len(REQUEST) and int(match.group(2)) > len(b"alice-web")
    refused = next(e for e in found if e["Target"] == "nosuch:80")
    assert refused["Outcome"] == "failed: no such container: nosuch"


# What is refused -----------------------------------------------------------------

REFUSALS = {
    "host loopback": lambda panel, apps: f"127.0.0.1:{apps['listener'].port}",
    "localhost": lambda panel, apps: f"localhost:{apps['listener'].port}",
    "host address on the user's network": lambda panel, apps: f"{apps['gateway']}:{apps['listener'].port}",
    "host sshd port": lambda panel, apps: "127.0.0.1:22",
    "the panel's own port": lambda panel, apps: f"127.0.0.1:{panel.port}",
    "own container by IP": lambda panel, apps: f"{apps['web_ip']}:80",
    "other user's container by name": lambda panel, apps: "bobweb:80",
    "other user's container by ID prefix": lambda panel, apps: f"{apps['bob_id'][:12]}:80",
    "other user's container by IP": lambda panel, apps: f"{apps['bob_ip']}:80",
    "own stopped container": lambda panel, apps: "stopped:80",
    "unknown name": lambda panel, apps: "nosuch:80",
}


@pytest.fixture(scope="module")
def unknown_name_refusal(panel, apps) -> bytes:
    """What the client prints when the destination does not exist at all:
    every refusal must read the same."""
    result = _stdio(panel, panel.users["alice"], "nosuch:80")
    assert result.returncode == 255 and result.stdout == b""
    return result.stderr


@pytest.mark.parametrize("case", REFUSALS)
def test_stdio_forward_elsewhere_is_refused_identically(panel, apps, unknown_name_refusal, case):
    """`ssh -W DEST`: refused, nothing on stdout, the client's words exactly
    those for a name that does not exist; the host listener saw nothing."""
    before = apps["listener"].accepted
    result = _stdio(panel, panel.users["alice"], REFUSALS[case](panel, apps))
    assert result.returncode == 255 and result.stdout == b""
    assert result.stderr == unknown_name_refusal
    assert _open_failures(result.stderr.decode()) == [f"open failed: administratively prohibited: {REFUSED}"]
    assert apps["listener"].accepted == before == 0


@pytest.mark.parametrize("case", REFUSALS)
def test_local_forward_elsewhere_reaches_nothing(panel, apps, tmp_path, case):
    """`ssh -L PORT:DEST`: the local connection is closed unanswered, the
    client logs the one refusal message, the host listener saw nothing."""
    port = _free_port()
    with _ssh_forward(panel, panel.users["alice"], tmp_path, "-L", f"{port}:{REFUSALS[case](panel, apps)}") as log:
        assert _exchange(port, REQUEST) == b""
        wait_for(lambda: _open_failures(log.read_text(errors="replace")), 30, "the refusal")
        failures = _open_failures(log.read_text(errors="replace"))
    assert failures == [f"open failed: administratively prohibited: {REFUSED}"]
    assert apps["listener"].accepted == 0


@pytest.mark.parametrize("host, address_type", [
    (b"127.0.0.1", 3), (b"localhost", 3), (b"bobweb", 3), (b"nosuch", 3), (bytes([127, 0, 0, 1]), 1),
])
def test_socks_forward_elsewhere_reaches_nothing(panel, apps, tmp_path, host, address_type):
    """`ssh -D`: a SOCKS request for anything but the user's container (a
    name, or an IPv4 address as `curl --socks5` sends) gets nothing back."""
    port = _free_port()
    with _ssh_forward(panel, panel.users["alice"], tmp_path, "-D", str(port)) as log:
        assert _socks5(port, host, apps["listener"].port, REQUEST, address_type) == b""
        wait_for(lambda: _open_failures(log.read_text(errors="replace")), 30, "the refusal")
        assert _open_failures(log.read_text(errors="replace")) == [
            f"open failed: administratively prohibited: {REFUSED}"]
    assert apps["listener"].accepted == 0


def test_unix_socket_forward_is_refused_identically(panel, apps, tmp_path):
    """`ssh -L PORT:/var/run/docker.sock`: the Docker socket (root on the
    host) is refused with the same words."""
    port = _free_port()
    with _ssh_forward(panel, panel.users["alice"], tmp_path, "-L", f"{port}:/var/run/docker.sock") as log:
        assert _exchange(port, b"GET /containers/json HTTP/1.0\r\n\r\n") == b""
        wait_for(lambda: _open_failures(log.read_text(errors="replace")), 30, "the refusal")
        assert _open_failures(log.read_text(errors="replace")) == [
            f"open failed: administratively prohibited: {REFUSED}"]


def test_a_closed_port_of_the_users_container_says_so(panel, apps):
    """A port nothing listens on in the user's own container: "connect
    failed" naming that container and port (nothing of anyone else's)."""
    result = _stdio(panel, panel.users["alice"], "web:81")
    assert result.returncode == 255 and result.stdout == b""
    assert _open_failures(result.stderr.decode()) == ["open failed: connect failed: web port 81: Connection refused"]


# Settings --------------------------------------------------------------------------


def test_forwarding_off_refuses_even_the_users_container(limited_panel):
    """`SSHPANEL_FORWARDING=0`: every forward is refused as before issue 25."""
    server = limited_panel(SSHPANEL_FORWARDING="0")
    alice = server.users["alice"]
    assert server.run(alice, "run", "--name", "web", TEST_IMAGE, *_httpd("alice-web")).returncode == 0
    result = _stdio(server, alice, "web:80")
    assert result.returncode == 255 and result.stdout == b""
    assert _open_failures(result.stderr.decode()) == [
        "open failed: administratively prohibited: port forwarding is disabled on this server"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_forwards_per_user_are_limited(limited_panel, workers):
    """`SSHPANEL_MAX_FORWARDS_PER_USER=2`, over two connections (with
    `--workers 2`, most likely on two processes): the third open forward is
    refused, and a closed one gives its place back."""
    server = limited_panel(SSHPANEL_MAX_FORWARDS_PER_USER="2", SSHPANEL_WORKERS=workers)
    alice = server.users["alice"]
    assert server.run(alice, "run", "--name", "web", TEST_IMAGE, *_httpd("alice-web")).returncode == 0
    wait_for(lambda: b"alice-web" in _stdio(server, alice, "web:80").stdout, 60, "alice's httpd")

    def connect():
        return asyncssh.connect("127.0.0.1", server.port, username="alice", client_keys=[str(alice.key)],
                                known_hosts=None, agent_path=None)

    async def scenario() -> tuple[asyncssh.ChannelOpenError, bytes]:
        async with connect() as first, connect() as second:
            _, one = await first.open_connection("web", 80)
            _, two = await second.open_connection("web", 80)
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await first.open_connection("web", 80)
            one.close()
            await one.wait_closed()

            async def reopen():
                while True:
                    try:
                        return await second.open_connection("web", 80)
                    except asyncssh.ChannelOpenError:
                        await asyncio.sleep(0.1)

            reader, writer = await asyncio.wait_for(reopen(), 30)
            writer.write(REQUEST)
            writer.write_eof()
            page = await reader.read()
            two.close()
            return refused.value, page

    error, page = asyncio.run(scenario())
    assert error.code == asyncssh.OPEN_RESOURCE_SHORTAGE
    assert error.reason == "too many open forwarded connections; close one and try again"
    assert b"alice-web" in page
