"""No user's or container's text reaches a terminal raw (issue 26 item 1):
terminal control sequences — OSC 0 (title), OSC 8 (hyperlink), OSC 52
(clipboard), CSI, DCS, APC, the C1 forms and a lone ESC — sent through every
field a user or a container controls arrive as visible escapes, in exec
output (raw stdout, for the user and the admin) and in the TUI (the bytes
sent through SSH, drawn with pyte). Data keeps its bytes: `logs` without a
terminal, `script show`, `--format json` (escaped by json.dumps)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import asyncssh
import pyte
import pytest

from sshpanel.access.text import visible
from tests.conftest import TEST_IMAGE, ssh_available, wait_for

pytestmark = pytest.mark.skipif(not ssh_available(), reason="needs OpenSSH")

SEQUENCES = {
    "OSC 0 title": "\x1b]0;pwned\x07",
    "OSC 8 hyperlink": "\x1b]8;;x:y\x1b\\",
    "OSC 52 clipboard": "\x1b]52;c;cHduZWQ=\x07",
    "CSI clear": "\x1b[2J",
    "DCS": "\x1bP0;1q\x1b\\",
    "APC": "\x1b_Gpwned\x1b\\",
    "C1 CSI": "\x9b2J",
    "C1 OSC": "\x9d0;pwned\x9c",
    "lone ESC (reset)": "\x1bc",
}
SEPARATOR = "|"
PAYLOAD = "<" + SEPARATOR.join(SEQUENCES.values()) + ">"
"""Every sequence, each followed by a character Textual never writes after
its own escape codes (so a raw one is recognisable in the TUI's bytes)."""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")
"""What must never arrive from exec output (CR is allowed: CRLF on a pty)."""


@pytest.mark.parametrize("name", SEQUENCES)
def test_visible_escapes_every_sequence(name):
    shown = visible(f"a{SEQUENCES[name]}b\tc\nd")
    assert not CONTROL.search(shown) and shown.startswith("a\\x") and shown.endswith("b\tc\nd")
    assert visible(shown) == shown


# The one panel: alice's key, container, script, files, builds; root reads the audit.


@pytest.fixture(scope="module")
def root(panel):
    return panel.add_user("root", admin=True)


@pytest.fixture(scope="module")
def hostile(panel, root, docker_client):
    """Puts PAYLOAD into every field alice controls; returns what the setup
    commands printed."""
    alice = panel.users["alice"]
    out: dict[str, subprocess.CompletedProcess] = {}
    extra = panel.keys_dir / "hostile"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(extra)], check=True)
    blob = extra.with_suffix(".pub").read_text().split()[:2]
    out["keys add"] = panel.run(alice, "keys", "add", "-", input=" ".join(blob) + " " + PAYLOAD + "\n")
    assert out["keys add"].returncode == 0, out["keys add"].stderr
    out["run name"] = panel.run(alice, "run", "--name", PAYLOAD, TEST_IMAGE, "true")
    out["run image"] = panel.run(alice, "run", "-d", PAYLOAD)
    out["rm target"] = panel.run(alice, "rm", PAYLOAD)
    run = panel.run(alice, "run", "-d", "--name", "esc", "-e", f"HOSTILE={PAYLOAD}", TEST_IMAGE,
                    "sh", "-c", f"echo '{PAYLOAD}'; exec sleep 600")
    assert run.returncode == 0, run.stderr
    wait_for(lambda: "<" in panel.run(alice, "logs", "esc").stdout, what="the container's line")
    out["script add"] = panel.run(alice, "script", "add", "hostile", "-", input=f"echo '{PAYLOAD}'\n# {PAYLOAD}\n")
    assert out["script add"].returncode == 0, out["script add"].stderr
    out["provision"] = panel.run(alice, "provision", "esc", "hostile", timeout=120)
    assert out["provision"].returncode == 0, out["provision"].stderr
    home = panel.data_dir / "homes" / "alice"
    (home / "escbuild").mkdir(parents=True, exist_ok=True)
    (home / "escbuild" / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nRUN echo '{PAYLOAD}'; exit 3\n")
    (home / f"file{PAYLOAD.replace('/', '')}").write_text("x")
    out["build"] = panel.run(alice, "build", "escbuild", timeout=300)
    assert out["build"].returncode == 1 and "pwned" in out["build"].stdout, out["build"].stdout + out["build"].stderr
    yield out
    panel.run(alice, "rm", "-f", "esc")


def raw_free(text: str) -> None:
    assert not CONTROL.search(text), repr(text[:400])


EXEC = {
    # field: (user, command); every one must show the payload, escaped.
    "key comment (user)": ("alice", ["keys", "ls"]),
    "key comment (admin)": ("root", ["user", "key", "ls", "alice"]),
    "audit targets and outcomes (admin)": ("root", ["audit", "--user", "alice"]),
    "history details": ("alice", ["history"]),
    "logs -t": ("alice", ["logs", "-t", "esc"]),
}
CUT = {"history details"}
"""Tables that show only the first 60 characters (the payload lies past them;
the whole detail is checked in the TUI and in JSON)."""


@pytest.mark.parametrize("field", sorted(EXEC))
def test_exec_output_shows_escapes_never_sequences_regression(panel, hostile, field):
    user, command = EXEC[field]
    result = panel.run(panel.users[user], *command)
    assert result.returncode == 0, result.stderr
    raw_free(result.stdout + result.stderr)
    if field not in CUT:
        assert "\\x1b]0;pwned" in result.stdout, result.stdout[-600:]


@pytest.mark.parametrize("step", ["run name", "run image", "rm target", "build", "provision", "keys add", "script add"])
def test_setup_commands_printed_no_sequence_regression(hostile, step):
    """Errors naming the payload, build output, provisioning output."""
    raw_free(hostile[step].stdout + hostile[step].stderr)
    if step in ("build", "provision"):
        assert "\\x1b]0;pwned" in hostile[step].stdout


@pytest.mark.parametrize("user, command", [
    ("alice", ["keys", "ls", "--format", "json"]),
    ("root", ["user", "key", "ls", "alice", "--format", "json"]),
    ("root", ["audit", "--user", "alice", "--format", "json"]),
    ("alice", ["history", "--format", "json"]),
    ("alice", ["inspect", "esc"]),
])
def test_json_is_data_escaped_by_json_dumps(panel, hostile, user, command):
    result = panel.run(panel.users[user], *command)
    assert result.returncode == 0, result.stderr
    raw_free(result.stdout)
    parsed = json.loads(result.stdout) if command[0] == "inspect" else [
        json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert SEQUENCES["OSC 0 title"] in "".join(strings(parsed))


def strings(value: object) -> list[str]:
    """Every string inside a parsed JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [text for item in value for text in strings(item)] if isinstance(value, list) else []


def test_data_keeps_its_bytes(panel, hostile):
    """`logs` without a terminal and `script show` pass the bytes through, as docker does."""
    alice = panel.users["alice"]
    assert PAYLOAD in panel.run(alice, "logs", "esc").stdout
    assert panel.run(alice, "script", "show", "hostile").stdout == f"echo '{PAYLOAD}'\n# {PAYLOAD}\n"


# The TUI: the bytes a session receives, drawn by pyte ---------------------------


class Session:
    """One dashboard over asyncssh with a 200x50 pty: every byte received is
    kept and fed to a pyte screen."""

    def __init__(self, process: asyncssh.SSHClientProcess) -> None:
        self.process = process
        self.data = b""
        self.screen = pyte.Screen(200, 50)
        self.stream = pyte.ByteStream(self.screen)

    async def read(self, seconds: float = 0.3) -> None:
        try:
            chunk = await asyncio.wait_for(self.process.stdout.read(1 << 16), seconds)
        except asyncio.TimeoutError:
            return
        self.data += chunk
        self.stream.feed(chunk)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    async def wait_for(self, text: str, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.text():
            if loop.time() > deadline:
                raise AssertionError(f"{text!r} not on screen:\n{self.text()}")
            await self.read()

    async def press(self, *keys: str) -> None:
        for key in keys:
            self.process.stdin.write(key.encode())
            await self.read(0.2)


TUI = {
    # field: (user, keys and texts to wait for, in order)
    "log lines": ("alice", ["running", "l", "Logs of esc"]),
    "file names": ("alice", ["f", "escbuild"]),
    "history details": ("alice", ["h", "History of your containers"]),
    "script body": ("alice", ["i", "hostile", "e", "Script hostile"]),
    "provisioning output": ("alice", ["running", "p", "hostile", "\r", "Provision esc"]),
    "audit outcomes (admin)": ("root", ["a", "Users", "4", "Audit log"]),
    "key comments (admin)": ("root", ["a", "alice", "k", "Keys"]),
}
KEYS = {"l", "f", "h", "i", "e", "p", "\r", "a", "4", "k"}


async def _tui(panel, user, steps) -> Session:
    key = asyncssh.read_private_key(str(panel.users[user].key))
    async with asyncssh.connect("127.0.0.1", panel.port, username=user, client_keys=[key],
                                known_hosts=None) as conn:
        process = await conn.create_process(term_type="xterm-256color", term_size=(200, 50), encoding=None)
        session = Session(process)
        await session.wait_for(f"{user} (")
        for step in steps:
            if step in KEYS:
                await session.press(step)
            else:
                await session.wait_for(step)
        await session.wait_for("\\x1b")  # the payload, drawn as escapes
        for _ in range(5):
            await session.read()
        process.stdin.write(b"\x03")
        return session


@pytest.mark.parametrize("field", sorted(TUI))
def test_tui_draws_escapes_never_sequences_regression(panel, hostile, field):
    user, steps = TUI[field]
    session = asyncio.run(_tui(panel, user, steps))
    received = session.data.decode("utf-8", "replace")
    for name, sequence in SEQUENCES.items():
        after = ">" if sequence == list(SEQUENCES.values())[-1] else SEPARATOR
        assert sequence + after not in received, name
    assert not re.search(r"[\x80-\x9f]", received), "a C1 control reached the terminal"
    assert "pwned" not in session.screen.title
    assert "\\x1b" in session.text()
