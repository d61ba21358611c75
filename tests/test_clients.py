"""Every common SSH client works (issue 24): OpenSSH's `ssh`, Dropbear's
`dbclient`, PuTTY's `plink` and paramiko log in, run a command with the
right exit code (0 ok, 1 failed action, 2 usage), pass stdin through and
print `ps --format json`; a terminal size is bounded whatever a client
asks for; and `y` on the dashboard reaches the client's clipboard (OSC 52). Real clients against the real server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess

import asyncssh
import pytest

from tests.conftest import TEST_IMAGE, ssh_available

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")
CASES = [  # (command, stdin, exit status, what stdout holds)
    ("whoami", "", 0, "alice (user)"),
    ("ps --format json", "", 0, ""),
    ("start nosuchcontainer", "", 1, ""),
    ("ps --bogus-flag", "", 2, ""),
    ("keys add -", "not a key\n", 1, ""),
]


def host_fingerprint(panel) -> str:
    """The SHA256 fingerprint of the panel's host key, as `ssh-keygen -lf` prints it."""
    match = re.search(r"host key (SHA256:\S+)", panel.log())
    assert match, panel.log()
    return match.group(1)


def openssh(panel, user, command: str, stdin: str) -> tuple[int, str]:
    done = subprocess.run([*panel.ssh_args(user), "--", command], input=stdin, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout


def dropbear(panel, user, command: str, stdin: str, tmp_path) -> tuple[int, str]:
    key = tmp_path / f"{user.name}.dropbear"
    if not key.exists():
        subprocess.run(["dropbearconvert", "openssh", "dropbear", str(user.key), str(key)], check=True,
                       capture_output=True)
    done = subprocess.run(["dbclient", "-y", "-y", "-i", str(key), "-p", str(panel.port),
                           f"{user.name}@127.0.0.1", command], input=stdin, capture_output=True, text=True,
                          timeout=60, env={"HOME": str(tmp_path)})
    return done.returncode, done.stdout


def plink(panel, user, command: str, stdin: str, tmp_path) -> tuple[int, str]:
    key = tmp_path / f"{user.name}.ppk"
    if not key.exists():
        subprocess.run(["puttygen", str(user.key), "-O", "private", "-o", str(key)], check=True, capture_output=True)
    done = subprocess.run(["plink", "-batch", "-hostkey", host_fingerprint(panel), "-i", str(key), "-P",
                           str(panel.port), f"{user.name}@127.0.0.1", command], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"HOME": str(tmp_path)})
    return done.returncode, done.stdout


def paramiko_client(panel, user, command: str, stdin: str) -> tuple[int, str]:
    paramiko = pytest.importorskip("paramiko")
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=panel.port, username=user.name, key_filename=str(user.key),
                   look_for_keys=False, allow_agent=False, timeout=30)
    try:
        channel_in, channel_out, _ = client.exec_command(command, timeout=60)
        channel_in.write(stdin)
        channel_in.channel.shutdown_write()
        output = channel_out.read().decode()
        return channel_out.channel.recv_exit_status(), output
    finally:
        client.close()


@pytest.mark.parametrize("client", ["openssh", "dbclient", "plink", "paramiko"])
def test_every_client_logs_in_and_gets_the_right_exit_codes(panel, tmp_path, client):
    if client in ("dbclient", "plink") and not shutil.which(client):
        pytest.skip(f"{client} is not installed (scripts/test.sh installs it)")
    alice = panel.users["alice"]
    for command, stdin, status, holds in CASES:
        if client == "openssh":
            got = openssh(panel, alice, command, stdin)
        elif client == "dbclient":
            got = dropbear(panel, alice, command, stdin, tmp_path)
        elif client == "plink":
            got = plink(panel, alice, command, stdin, tmp_path)
        else:
            got = paramiko_client(panel, alice, command, stdin)
        assert got[0] == status, (client, command, got)
        assert holds in got[1], (client, command, got)
        if command == "ps --format json":
            assert all(json.loads(line) for line in got[1].splitlines() if line.strip())


def test_stdin_passes_byte_exact_through_dropbear(panel, tmp_path):
    """`script add NAME -` stores what came in; `script show` gives it back."""
    if not shutil.which("dbclient"):
        pytest.skip("dbclient is not installed")
    body = "#!/bin/sh\necho 'héllo wörld' \"$@\"\n\tindented\n"
    alice = panel.users["alice"]
    status, _ = dropbear(panel, alice, "script add viadropbear -", body, tmp_path)
    assert status == 0
    assert openssh(panel, alice, "script show viadropbear", "")[1] == body


async def _first_output(panel, user, size: tuple[int, int], resize: tuple[int, int] | None) -> bytes:
    """What the dashboard sends in its first seconds for a pty of `size`."""
    key = asyncssh.read_private_key(str(user.key))
    async with asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[key],
                                known_hosts=None) as conn:
        process = await conn.create_process(term_type="xterm-256color", term_size=size, encoding=None)
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4
        resized = False
        while loop.time() < deadline:
            try:
                data += await asyncio.wait_for(process.stdout.read(1 << 16), 0.5)
            except asyncio.TimeoutError:
                pass
            if resize and not resized and b"alice" in data:
                process.change_terminal_size(*resize)
                resized = True
        process.stdin.write(b"q")
        return data


@pytest.mark.parametrize("size, resize", [((10000, 10000), None), ((80, 24), (20000, 20000))])
def test_a_huge_terminal_is_clamped_regression(panel, size, resize):
    """A pty request or window change of 10000×10000 is drawn as at most
    1000×500: no frame of hundreds of megabytes for one client."""
    data = asyncio.run(_first_output(panel, panel.users["alice"], size, resize))
    assert b"alice" in data
    rows = [int(row) for row, _ in re.findall(rb"\x1b\[(\d+);(\d+)H", data)]
    columns = [int(column) for _, column in re.findall(rb"\x1b\[(\d+);(\d+)H", data)]
    assert rows and max(rows) <= 500 and max(columns) <= 1000, (max(rows), max(columns))
    assert len(data) < 64 * 2**20


async def copy_with_y(panel, user, ready: bytes, command: str | None = None) -> bytes:
    """Opens the dashboard (or `command` on a pty), waits until `ready`
    arrives, presses `y`, and returns what the client received up to the
    OSC 52 clipboard write and a moment after."""
    key = asyncssh.read_private_key(str(user.key))
    async with asyncssh.connect("127.0.0.1", panel.port, username=user.name, client_keys=[key],
                                known_hosts=None) as conn:
        process = await conn.create_process(command, term_type="xterm-256color", term_size=(100, 30),
                                            encoding=None)
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        pressed = False
        while loop.time() < deadline and b"\x1b]52;c;" not in data:
            try:
                data += await asyncio.wait_for(process.stdout.read(1 << 16), 0.5)
            except asyncio.TimeoutError:
                pass
            if not pressed and ready in data:
                process.stdin.write(b"y")
                pressed = True
        data += await asyncio.wait_for(process.stdout.read(1 << 16), 2)
        process.stdin.write(b"\x1bq" if command else b"q")
        return data


def test_y_copies_through_ssh_with_osc_52(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "-d", "--name", "copyme", TEST_IMAGE, "sleep", "600").returncode == 0
    try:
        full_id = json.loads(panel.run(alice, "inspect", "copyme").stdout)[0]["Id"]
        data = asyncio.run(copy_with_y(panel, alice, b"copyme"))
        match = re.search(rb"\x1b\]52;c;([A-Za-z0-9+/=]+)\x07", data)
        assert match, data[-400:]
        assert base64.b64decode(match.group(1)).decode() == f"copyme {full_id}"
    finally:
        panel.run(alice, "rm", "-f", "copyme")
