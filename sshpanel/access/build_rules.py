"""Provides the build-safety rules checked before a build starts (issue 6):
no remote build context and no `ADD` of a URL. Pure functions, no I/O."""

from __future__ import annotations

import re

from sshpanel.errors import InvalidValue

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@")
"""A remote reference: `https://...`, `git://...`, `git@host:repo`."""
_CONTINUATION = re.compile(r"[\\`][ \t]*\r?\n")
"""A line continuation, with either escape character (`\\` or the `# escape=`
backtick): joining on both can only make the check stricter."""


def check_context_source(source: str) -> str:
    """Refuses a remote build context: a build's `DIR` is a folder of the
    user's home directory, never a URL (issue 6 "no remote build context").

    Args:
        source: The `DIR` argument of `build`.

    Returns:
        `source` unchanged.

    Raises:
        InvalidValue: `source` is a URL or a git remote.
    """
    if _URL.match(source.strip()) or source.strip().startswith("github.com/"):
        raise InvalidValue("remote build contexts are refused: upload the files and build a folder of your home directory")
    return source


def check_no_remote_add(text: str) -> None:
    """Refuses `ADD` (also as an `ONBUILD` trigger) of a URL: the engine
    fetches those itself, outside the build's network setting, so a URL
    would let a build reach the network (issue 6 "no host network"). `ADD`
    of files of the context is allowed; a source with a variable is refused,
    since the engine expands it and it may hold a URL.

    Args:
        text: The Dockerfile text.

    Raises:
        InvalidValue: Naming the first remote source found.
    """
    kept = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    logical = _CONTINUATION.sub(" ", "\n".join(kept) + "\n")
    for line in logical.splitlines():
        words = line.split()
        if words and words[0].upper() == "ONBUILD":
            words = words[1:]
        if not words or words[0].upper() != "ADD":
            continue
        for word in words[1:]:
            source = word.strip('[],"\'')
            if _URL.match(source) or "://" in source:
                raise InvalidValue(f"ADD {source[:80]} is refused: builds fetch nothing from the network; "
                                   "download the file into the folder and ADD or COPY it from there")
            if "$" in source:  # `ARG U=https://...` then `ADD $U`: the engine expands it
                raise InvalidValue(f"ADD {source[:80]} is refused: ADD takes no variables (a variable may "
                                   "hold a URL); use COPY, or name the file")
