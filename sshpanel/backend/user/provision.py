"""Provides `Provisioner`: a user's named install scripts and running one of
them in one of the user's containers, recorded in the history.

A run never builds a shell command from the script (the `exec_run(f"bash -c
'{script}'")` of the origin material breaks on any quote and is an injection
hole): the body is uploaded as a file with Docker's archive API and executed
by the interpreter its `#!` line names (issue 5).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sshpanel.access.text import quoted
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.engine import ExecStream
from sshpanel.backend.user.scripts import (
    MARKER,
    build_archive,
    check_script_body,
    check_script_name,
    interpreter_of,
    run_argv,
    stop_argv,
)
from sshpanel.backend.user.shell import require_running, start_exec
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import InvalidValue, NotFound, PanelError, TimedOut
from sshpanel.store.models import utcnow
from sshpanel.store.scripts import delete_script, save_script, script_named, scripts_of

log = logging.getLogger(__name__)

TAIL_LINES = 20
"""Lines of output kept in the history record of a run."""

TAIL_BYTES = 16 * 1024
"""Output bytes kept while running, from which the last lines are taken."""

KILL_GRACE = 10.0
"""Seconds to wait for the output to end after the script was killed."""

POLL_INTERVAL = 0.5
"""Seconds between checks of the deadline and of a cancel request."""

STDIN_NAME = "-"
"""Name recorded for a script that was not stored (read from stdin)."""


@dataclass(frozen=True)
class ScriptView:
    """One of the user's stored scripts.

    Attributes:
        name: The script's name.
        body: The script text.
        sha256: Hex SHA-256 of the body's UTF-8 bytes.
        size: Body size, bytes of UTF-8.
        created: When it was first saved, UTC (naive).
    """

    name: str
    body: str
    sha256: str
    size: int
    created: dt.datetime


@dataclass(frozen=True)
class ProvisionResult:
    """The outcome of one provisioning run.

    Attributes:
        script: The script's name (`-` when it came from stdin).
        sha256: Hex SHA-256 of the body that ran.
        container: The container's short name.
        exit_code: The script's exit status.
        duration: Seconds from start to end.
        tail: The last lines of output (stdout and stderr interleaved).
    """

    script: str
    sha256: str
    container: str
    exit_code: int
    duration: float
    tail: str

    @property
    def ok(self) -> bool:
        """True when the script exited with status 0."""
        return self.exit_code == 0


OutputCallback = Callable[[int, bytes], None]
"""Called as `on_output(stream, data)` from the running thread, with `stream`
`STDOUT` or `STDERR` from `sshpanel.backend.engine`; it may block (that slows
the reading down, nothing is lost)."""


class Provisioner:
    """A user's provisioning scripts and runs.

    Args:
        workspace: The user's workspace; scripts and containers are the
            principal's own only (docs/ARCHITECTURE.md invariant 1).

    Every method blocks (database and Docker calls): run it in a thread.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    # Stored scripts --------------------------------------------------------

    def scripts(self) -> list[ScriptView]:
        """Returns the user's scripts, by name."""
        return [_script_view(row) for row in scripts_of(self.workspace.principal.user_id)]

    def script(self, name: str) -> ScriptView:
        """Returns one of the user's scripts.

        Raises:
            NotFound: The user has no script by that name.
        """
        row = script_named(self.workspace.principal.user_id, name)
        if row is None:
            raise NotFound(f"no such script: {quoted(name, 40)}")
        return _script_view(row)

    def save(self, name: str, body: str) -> tuple[ScriptView, bool]:
        """Creates a script, or replaces the body of the user's script `name`.

        Args:
            name: 1–63 of `[A-Za-z0-9_.-]`, starting with a letter or digit.
            body: The script text (UTF-8, at most `MAX_SCRIPT_BYTES`).

        Returns:
            (the script, True when created rather than replaced).

        Raises:
            InvalidValue: Bad name or body.
        """
        with self.workspace.audited("script add", name):
            check_script_name(name)
            check_script_body(body)
            row, created = save_script(self.workspace.store, self.workspace.principal.user_id, name, body)
            return _script_view(row), created

    def remove(self, name: str) -> None:
        """Deletes one of the user's scripts (past runs stay in the history).

        Raises:
            NotFound: The user has no script by that name.
        """
        with self.workspace.audited("script rm", name):
            if not delete_script(self.workspace.store, self.workspace.principal.user_id, name):
                raise NotFound(f"no such script: {quoted(name, 40)}")

    # Running ---------------------------------------------------------------

    def run(
        self,
        ref: str,
        script: str | None = None,
        body: str | None = None,
        on_output: OutputCallback | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> ProvisionResult:
        """Runs a script in one of the user's running containers.

        The body is uploaded into the container as a file (Docker archive
        API, mode 0755) in a fresh folder under `/tmp` (or `/` without
        `/tmp`), run by the interpreter of its `#!` line (default `/bin/sh`)
        as the container's default user, and the folder removed afterwards.
        The run is recorded as a `provision` event (script name, SHA-256 of
        the body, duration, exit status, last lines of output) whatever its
        outcome.

        Args:
            ref: The container's short name or ID prefix.
            script: Name of a stored script; or None with `body`.
            body: Script text not stored (e.g. read from stdin).
            on_output: Receives the output as it comes.
            cancel: Set it to kill the script early (counts as a failure).
            timeout: Seconds before the script is killed; default and upper
                bound `Settings.provision_timeout`.

        Returns:
            The result (a non-zero exit status is a result, not an error).

        Raises:
            NotFound: No such container or script of the user's.
            Conflict: The container is not running.
            InvalidValue: Bad body or timeout.
            TimedOut: The script ran out of time, or was cancelled, and was
                killed.
            EngineError, EngineUnavailable: The engine failed.
        """
        limit = self.workspace.settings.provision_timeout
        if timeout is None:
            timeout = limit
        elif not 0 < timeout <= limit:
            raise InvalidValue(f"invalid timeout: use more than 0 and at most {limit:g} seconds")
        name = script if script is not None else STDIN_NAME
        with self.workspace.audited("provision", f"{ref} {name}"):
            if script is not None:
                body = self.script(script).body
            elif body is None:
                raise InvalidValue("no script given")
            check_script_body(body)
            row = self.workspace.resolve(ref)
            run = _Run(self.workspace, row, name, body, on_output, cancel, timeout)
            return run.execute()


class _Run:
    """One provisioning run of one body in one resolved container."""

    def __init__(self, workspace: Workspace, row, name: str, body: str, on_output, cancel, timeout: float) -> None:
        self.workspace = workspace
        self.engine = workspace.engine
        self.row = row
        self.name = name
        self.data = body.encode("utf-8")
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.interpreter = interpreter_of(body)
        self.on_output = on_output
        self.cancel = cancel
        self.timeout = timeout
        self.marker = f"{MARKER}={secrets.token_hex(16)}"
        """In the environment of every process of the run (see `_kill`)."""
        self.tail = collections.deque()
        self.tail_size = 0
        self.started = utcnow()
        self.clock = time.monotonic()

    def execute(self) -> ProvisionResult:
        """Uploads, runs, cleans up and records; see `Provisioner.run`."""
        try:
            require_running(self.engine, self.row)
            folder = self._upload()
        except PanelError as exc:
            self._record(False, None, exc.message)
            raise
        try:
            code, stopped = self._run(folder)
        except PanelError as exc:
            self._record(False, None, exc.message)
            raise
        finally:
            self._cleanup(folder)
        if stopped:
            why = "cancelled" if stopped == "cancelled" else f"timed out after {self.timeout:g}s"
            self._record(False, code, f"{why}; the script was killed")
            raise TimedOut(f"provisioning {why}; the script was killed")
        self._record(code == 0, code, "")
        return ProvisionResult(self.name, self.sha256, self.row.name, code, self._elapsed(), self._tail_text())

    def _upload(self) -> str:
        """Copies the script and its two helpers into a fresh folder.

        Returns:
            The folder's path inside the container.
        """
        folder = f"sshpanel-provision-{secrets.token_hex(8)}"
        archive = build_archive(folder, self.data)
        for parent in ("/tmp", "/"):
            try:
                with translate_errors(f"{parent} does not exist in the container"):
                    self.engine.put_archive(self.row.docker_id, parent, archive)
                return f"{parent.rstrip('/')}/{folder}"
            except NotFound:
                if parent == "/":
                    raise
        raise AssertionError("unreachable")

    def _run(self, folder: str) -> tuple[int, str]:
        """Runs the script and forwards its output until it ends.

        Returns:
            (exit status, "" or why it was stopped: "cancelled"/"timeout").
        """
        argv = run_argv(folder, self.interpreter)
        stream = start_exec(self.engine, self.row, argv, environment=[self.marker])
        stopped = ""
        deadline = self.clock + self.timeout
        try:
            while True:
                if not stopped:
                    if self.cancel is not None and self.cancel.is_set():
                        stopped = "cancelled"
                    elif time.monotonic() >= deadline:
                        stopped = "timeout"
                    if stopped:
                        self._kill(folder)
                        deadline = time.monotonic() + KILL_GRACE
                elif time.monotonic() >= deadline:
                    break  # killed, but something still holds the output open
                wait = min(POLL_INTERVAL, max(0.0, deadline - time.monotonic()))
                try:
                    chunk = stream.read(timeout=wait)
                except TimeoutError:
                    continue
                if chunk is None:
                    break
                self._output(*chunk)
            return _exit_code(stream, stopped), stopped
        finally:
            stream.close()

    def _kill(self, folder: str) -> None:
        """Kills the script's process group and every process that inherited
        the run's marker (as root in the container)."""
        try:
            self._helper(stop_argv(folder, self.marker))
        except PanelError as exc:
            log.warning("could not kill a provisioning script in %s: %s", self.row.docker_id[:12], exc.message)

    def _cleanup(self, folder: str) -> None:
        """Removes the run's folder; a failure is logged, the run stands."""
        try:
            self._helper(["rm", "-rf", "--", folder])
        except PanelError as exc:
            log.warning("could not remove %s in %s: %s", folder, self.row.docker_id[:12], exc.message)

    def _helper(self, argv: list[str]) -> None:
        """Runs a short command of the panel's own as root, to completion."""
        with translate_errors(f"no such container: {self.row.name}"):
            self.engine.exec_run(self.row.docker_id, argv)

    def _output(self, stream: int, data: bytes) -> None:
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size - len(self.tail[0]) >= TAIL_BYTES:
            self.tail_size -= len(self.tail.popleft())
        if self.on_output is not None:
            self.on_output(stream, data)

    def _tail_text(self) -> str:
        text = b"".join(self.tail)[-TAIL_BYTES:].decode("utf-8", "replace")
        return "\n".join(text.rstrip("\n").splitlines()[-TAIL_LINES:])

    def _elapsed(self) -> float:
        return time.monotonic() - self.clock

    def _record(self, ok: bool, code: int | None, note: str) -> None:
        """Writes the run to the history (kind `provision`)."""
        status = "exit -" if code is None else f"exit {code}"
        head = f"script {self.name} sha256:{self.sha256[:16]} {self._elapsed():.1f}s {status}"
        if note:
            head += f"; {note}"
        tail = self._tail_text()
        detail = head if not tail else f"{head}\n{tail[-(1900 - len(head)):]}"
        self.workspace.store.add_event(
            self.workspace.principal.user_id,
            self.row.id,
            "provision",
            ok=ok,
            exit_code=code,
            detail=detail,
            time=self.started,
        )


def _exit_code(stream: ExecStream, stopped: str) -> int:
    """The exec's exit status; 137 (SIGKILL) when a killed one reports none."""
    try:
        return stream.wait()
    except PanelError:
        if stopped:
            return 137
        raise


def _script_view(row) -> ScriptView:
    data = row.body.encode("utf-8")
    return ScriptView(row.name, row.body, hashlib.sha256(data).hexdigest(), len(data), row.created)
