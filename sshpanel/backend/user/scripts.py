"""Provides the rules of provisioning scripts: name and body validation,
the interpreter named by the `#!` line, and the archive a run uploads into
the container (the script and two small helpers of the panel's own)."""

from __future__ import annotations

import io
import re
import tarfile
import time

from sshpanel.access.text import quoted
from sshpanel.errors import InvalidValue

MAX_SCRIPT_BYTES = 256 * 1024
"""Largest script body accepted, bytes of UTF-8."""

DEFAULT_INTERPRETER = ("/bin/sh",)
"""Interpreter of a script without a `#!` line."""

_SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_SHEBANG = re.compile(r"([^ \t]*)(?:[ \t]+(.*))?", re.DOTALL)

# Both helpers are constants run with /bin/sh; only argv carries the
# interpreter and the script path, so nothing the user wrote is ever parsed by
# a shell other than the script's own interpreter.
_WRAPPER = b"""# Written by sshpanel for one provisioning run: records this process's ID
# (the exec is a session leader, so this is the script's process group),
# then becomes the script's interpreter.
echo "$$" > "${0%/*}/pid"
exec "$@"
"""
_STOPPER = b"""# Written by sshpanel: kills the provisioning script's process group, then
# every process that carries the run's marker in its environment (children
# that left the group with setsid or by daemonizing keep it), sweeping until
# none is left (a process may fork while a sweep runs), at most 20 times.
read -r pid < "${0%/*}/pid" && [ -n "$pid" ] && kill -s KILL -- "-$pid"
marker="$1"
rounds=0
while [ "$rounds" -lt 20 ]; do
    rounds=$((rounds + 1))
    found=0
    for dir in /proc/[0-9]*; do
        pid="${dir#/proc/}"
        [ "$pid" = "$$" ] && continue
        if tr '\\000' '\\n' < "$dir/environ" 2>/dev/null | grep -qxF "$marker"; then
            kill -s KILL "$pid" 2>/dev/null && found=1
        fi
    done
    [ "$found" = 0 ] && break
done
"""
MARKER = "SSHPANEL_PROVISION"
"""Environment variable every process of a provisioning run inherits, with
the run's own random value: how the stopper finds the ones that left the
script's process group."""


def check_script_name(name: str) -> str:
    """Validates a script name.

    Raises:
        InvalidValue: Not 1–63 of `[A-Za-z0-9_.-]` starting with a letter or digit.
    """
    if not isinstance(name, str) or not _SCRIPT_NAME.fullmatch(name):
        raise InvalidValue(
            f"invalid script name {quoted(name, 40)!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_script_body(body: str) -> str:
    """Validates a script body.

    Raises:
        InvalidValue: Empty, larger than `MAX_SCRIPT_BYTES`, not encodable as
            UTF-8, or containing a NUL character.
    """
    if not body.strip():
        raise InvalidValue("the script is empty")
    if "\0" in body:
        raise InvalidValue("the script contains a NUL character")
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue("the script is not valid UTF-8 text") from None
    if size > MAX_SCRIPT_BYTES:
        raise InvalidValue(f"the script is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
    interpreter_of(body)
    return body


def interpreter_of(body: str) -> tuple[str, ...]:
    """Returns the interpreter argv of a script as the kernel reads its `#!` line.

    Linux takes the path up to the first blank and the rest of the line,
    trimmed, as one optional argument (`#!/usr/bin/env bash` → `/usr/bin/env`,
    `bash`).

    Returns:
        The interpreter and its optional argument; `DEFAULT_INTERPRETER`
        without a `#!` line.

    Raises:
        InvalidValue: A `#!` line that names no absolute path.
    """
    if not body.startswith("#!"):
        return DEFAULT_INTERPRETER
    line = body[2:].split("\n", 1)[0].rstrip("\r").strip(" \t")
    path, argument = _SHEBANG.fullmatch(line).groups("")
    if not path.startswith("/"):
        raise InvalidValue("the script's #! line must name an interpreter by its absolute path")
    return (path, argument) if argument else (path,)


def build_archive(folder: str, script: bytes) -> bytes:
    """Builds the tar uploaded for one run: the folder, the script (0755),
    the two helpers, and an empty `pid` file any user may write (0666).

    Args:
        folder: Name of the folder (one path component).
        script: The script's bytes.

    Returns:
        The tar archive.
    """
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry = tarfile.TarInfo(folder)
        entry.type, entry.mode, entry.mtime = tarfile.DIRTYPE, 0o755, now
        tar.addfile(entry)
        for name, data, mode in (
            ("script", script, 0o755),
            ("run", _WRAPPER, 0o644),
            ("stop", _STOPPER, 0o644),
            ("pid", b"", 0o666),
        ):
            entry = tarfile.TarInfo(f"{folder}/{name}")
            entry.size, entry.mode, entry.mtime = len(data), mode, now
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def run_argv(folder: str, interpreter: tuple[str, ...]) -> list[str]:
    """Returns the exec argv of a run: the wrapper, then the interpreter
    and the script's path as plain arguments (no command line is parsed).

    Args:
        folder: Path of the uploaded folder inside the container.
        interpreter: From `interpreter_of`.
    """
    return ["/bin/sh", f"{folder}/run", *interpreter, f"{folder}/script"]


def stop_argv(folder: str, marker: str) -> list[str]:
    """Returns the exec argv that kills a run's process group and every
    process whose environment holds `marker` (`MARKER=<token>`)."""
    return ["/bin/sh", f"{folder}/stop", marker]
