"""Provides the benchmark's SSH clients (asyncssh, key auth, PTY): one
dashboard session that times when given bytes arrive, logins that retry when
admission control refuses them, and a holder process that keeps many
sessions open and drains their output:

    python benchmarks/clients.py hold --port P --keys DIR --users a,b --per-user 10

prints `ready N` once every session has drawn its first frame, then holds
them until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import random
import struct
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

FOOTER = b"Quit"
"""Text of the dashboard's footer: once it arrives, the first frame is complete
(Textual writes a frame top to bottom, the footer last)."""
TERM = "xterm-256color"
SIZE = (120, 40)
REFUSED = asyncssh.DISC_TOO_MANY_CONNECTIONS
WINDOW = 1 << 20
"""Bytes of output kept while looking for a needle."""
RECENT = 1 << 18
"""Bytes of the latest output every session keeps (`TuiClient.recent`)."""


def source(index: int) -> str:
    """A loopback source address per client (127.0.0.2 ...), as if every
    client came from its own machine: the panel caps unauthenticated
    connections per address (`per_source_unauthenticated`)."""
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


async def connect(port: int, user: str, key: asyncssh.SSHKey, index: int = 0) -> asyncssh.SSHClientConnection:
    """Opens an authenticated connection from `source(index)`."""
    return await asyncssh.connect(
        "127.0.0.1", port, username=user, client_keys=[key], known_hosts=None, agent_path=None,
        local_addr=(source(index), 0), encoding=None, connect_timeout=60,
    )


class TuiClient:
    """One dashboard session: a PTY channel whose output is read at once,
    timing when a needle arrives.

    Create with `TuiClient.open`; `expect(needle)` before the action, then
    `await` the returned future for the `time.perf_counter()` of arrival.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, process: asyncssh.SSHClientProcess) -> None:
        self.conn = conn
        self.process = process
        self.received = 0
        """Bytes of output so far."""
        self._waits: list[tuple[bytes, asyncio.Future[float]]] = []
        self._window = bytearray()
        self._tracked: tuple[bytes, ...] = ()
        self._tail = b""
        self.last_seen: bytes | None = None
        """Of the `track`ed texts, the one that arrived last."""
        self.recent = bytearray()
        """The latest output (at most `RECENT` bytes)."""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, user: str, key: asyncssh.SSHKey, index: int = 0) -> tuple[TuiClient, float]:
        """Connects and asks for the dashboard.

        Returns:
            The session and the `perf_counter()` when its first frame was complete.

        Raises:
            asyncssh.DisconnectError: Refused (code `REFUSED`) or dropped.
            EOFError: The session ended before its first frame.
        """
        conn = await connect(port, user, key, index)
        try:
            process = await conn.create_process(term_type=TERM, term_size=SIZE, encoding=None)
            client = cls(conn, process)
            framed = await client.expect(FOOTER)
        except BaseException:
            conn.abort()
            raise
        return client, framed

    def expect(self, needle: bytes) -> asyncio.Future[float]:
        """Starts looking for `needle` in the output from now on."""
        return self.expect_all(needle)[0]

    def expect_all(self, *needles: bytes) -> list[asyncio.Future[float]]:
        """Starts looking for each of `needles` in the output from now on
        (replacing earlier looks); each future gets its arrival time."""
        self._window.clear()
        loop = asyncio.get_running_loop()
        self._waits = [(needle, loop.create_future()) for needle in needles]
        return [future for _, future in self._waits]

    def track(self, *texts: bytes) -> None:
        """Keeps `last_seen` up to date: which of `texts` arrived last."""
        self._tracked = texts

    def _note_tracked(self, chunk: bytes) -> None:
        data = self._tail + chunk
        positions = {text: data.rfind(text) for text in self._tracked}
        latest = max(positions, key=lambda text: positions[text])
        if positions[latest] >= 0:
            self.last_seen = latest
        self._tail = data[-max(len(text) for text in self._tracked):]

    async def _read(self) -> None:
        try:
            while chunk := await self.process.stdout.read(65536):
                now = time.perf_counter()
                self.received += len(chunk)
                self.recent += chunk
                if len(self.recent) > RECENT:
                    del self.recent[:-RECENT]
                if self._tracked:
                    self._note_tracked(chunk)
                if not self._waits:
                    continue
                self._window += chunk
                for needle, future in self._waits:
                    if not future.done() and needle in self._window:
                        future.set_result(now)
                self._waits = [(n, f) for n, f in self._waits if not f.done()]
                if not self._waits:
                    self._window.clear()
                elif len(self._window) > WINDOW:
                    del self._window[: -max(len(n) for n, _ in self._waits)]
        except (asyncssh.Error, OSError):
            pass
        for _, future in self._waits:
            if not future.done():
                future.set_exception(EOFError("the session ended"))

    def send(self, text: str) -> None:
        """Types `text` (escape sequences included)."""
        self.process.stdin.write(text.encode())

    async def close(self, abrupt: bool = False) -> None:
        """Closes the connection (`abrupt`: drops the TCP connection instead)."""
        if abrupt:
            self.conn.abort()
        else:
            self.conn.close()
        await self.conn.wait_closed()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@dataclass
class Login:
    """How one login of a burst went.

    Attributes:
        client: The framed session (None when it never got a frame).
        framed: `perf_counter()` when the first frame was complete.
        refusals: Times admission control refused it.
        error: Why it failed, when it did.
    """

    client: TuiClient | None = None
    framed: float = 0.0
    refusals: int = 0
    error: str = ""


async def login_framed(port: int, user: str, key: asyncssh.SSHKey, index: int, deadline: float,
                       retry: bool = True) -> Login:
    """Logs in until the first frame, retrying after 0.2-1 s when refused
    (as a user would run `ssh` again), until `deadline` (`perf_counter`)."""
    login = Login()
    while True:
        try:
            remaining = deadline - time.perf_counter()
            login.client, login.framed = await asyncio.wait_for(TuiClient.open(port, user, key, index), remaining)
            return login
        except asyncssh.DisconnectError as exc:
            if exc.code != REFUSED:
                login.error = f"disconnected: {exc.reason}"
                return login
            login.refusals += 1
            if not retry:
                login.error = "refused"
                return login
        except (asyncio.TimeoutError, TimeoutError):
            login.error = "timed out"
            return login
        except (OSError, EOFError, asyncssh.Error) as exc:
            login.error = f"{type(exc).__name__}: {exc}"
            return login
        await asyncio.sleep(random.uniform(0.2, 1.0))


async def exec_once(port: int, user: str, key: asyncssh.SSHKey, command: str, index: int = 0) -> str:
    """Connects, runs one exec command, returns its stdout.

    Raises:
        RuntimeError: The command failed (with its stderr).
    """
    async with await connect(port, user, key, index) as conn:
        result = await conn.run(command, encoding="utf-8")
    if result.exit_status != 0:
        raise RuntimeError(f"{command!r} exited with {result.exit_status}: {str(result.stderr).strip()[:300]}")
    return str(result.stdout)


async def openssh_frame(command: list[str], timeout: float = 30.0) -> float:
    """Runs an OpenSSH `ssh` command line (with `-tt`) whose stdin, stdout
    and stderr are a pseudo-terminal of `SIZE` (`TERM` set), so that it asks
    for a terminal of that size as it does in a user's terminal (the pty is
    not its controlling terminal), until the first complete frame arrives;
    then ends it (SIGTERM, SIGKILL after 5 s; the connection drops).

    Returns:
        Seconds from starting `ssh` to the frame's last part (`FOOTER`).

    Raises:
        RuntimeError: `ssh` ended without a frame.
        asyncio.TimeoutError: No frame within `timeout`.
    """
    loop = asyncio.get_running_loop()
    framed: asyncio.Future[float] = loop.create_future()
    seen = bytearray()
    master, slave = pty.openpty()
    process: asyncio.subprocess.Process | None = None

    def readable() -> None:
        try:
            data = os.read(master, WINDOW)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
            if not framed.done():
                framed.set_exception(RuntimeError(f"ssh ended without a frame: {bytes(seen[-300:])!r}"))
            return
        if not framed.done():
            seen.extend(data)
            if FOOTER in seen:
                framed.set_result(time.perf_counter())

    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(*command, stdin=slave, stdout=slave, stderr=slave,
                                                       start_new_session=True, env={**os.environ, "TERM": TERM})
        os.close(slave)
        slave = -1
        loop.add_reader(master, readable)  # drains the output until ssh is gone, so it never blocks writing
        return await asyncio.wait_for(framed, timeout) - start
    finally:
        if process is not None:
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        loop.remove_reader(master)
        os.close(master)
        if slave != -1:
            os.close(slave)


async def open_many(port: int, logins: list[tuple[str, asyncssh.SSHKey]], first_index: int,
                    concurrency: int = 4, timeout: float = 300.0) -> list[TuiClient]:
    """Opens one session per login, at most `concurrency` at a time (under
    the panel's `MaxStartups` start of 10), each from its own address."""
    gate = asyncio.Semaphore(concurrency)
    deadline = time.perf_counter() + timeout

    async def one(offset: int, user: str, key: asyncssh.SSHKey) -> Login:
        async with gate:
            return await login_framed(port, user, key, first_index + offset, deadline)

    done = await asyncio.gather(*(one(i, user, key) for i, (user, key) in enumerate(logins)))
    failed = [login.error for login in done if login.client is None]
    clients = [login.client for login in done if login.client is not None]
    if failed:
        await asyncio.gather(*(client.close() for client in clients))
        raise RuntimeError(f"{len(failed)} session(s) did not open: {failed[:3]}")
    return clients


async def hold(args: argparse.Namespace) -> int:
    keys = {user: asyncssh.read_private_key(str(Path(args.keys) / user)) for user in args.users.split(",")}
    logins = [(user, key) for user, key in keys.items() for _ in range(args.per_user)][: args.count or None]
    clients = await open_many(args.port, logins, args.first_index, args.concurrency)
    print(f"ready {len(clients)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(client.close() for client in clients))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    holder = sub.add_parser("hold", help="hold dashboard sessions until stdin closes")
    holder.add_argument("--port", type=int, required=True)
    holder.add_argument("--keys", required=True, help="folder with one private key per user, named as the user")
    holder.add_argument("--users", required=True, help="comma-separated user names")
    holder.add_argument("--per-user", type=int, default=1, help="sessions per user")
    holder.add_argument("--count", type=int, default=0, help="at most this many sessions (0: all)")
    holder.add_argument("--first-index", type=int, default=100, help="first source address index")
    holder.add_argument("--concurrency", type=int, default=4, help="logins at a time")
    args = parser.parse_args()
    return asyncio.run(hold(args))


if __name__ == "__main__":
    sys.exit(main())
