"""Provides the build-safety rule checked before a build's context is read
(issue 6): no remote build context. The Dockerfile's own rules (no `ADD` of
a URL, allowed base images) live in `sshpanel.access.dockerfile`. Pure
functions, no I/O."""

from __future__ import annotations

import re

from sshpanel.errors import InvalidValue

REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@")
"""A remote reference: `https://...`, `git://...`, `git@host:repo`."""


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
    if REMOTE.match(source.strip()) or source.strip().startswith("github.com/"):
        raise InvalidValue("remote build contexts are refused: upload the files and build a folder of your home directory")
    return source
