"""Provides `ComposeFiles`: the compose file, its `.env` and its
`env_file`s read from a user's home, never through a symlink and never
outside it (issue 22), and the project's default name and folder."""

from __future__ import annotations

import os
import stat
import posixpath
from dataclasses import dataclass
from pathlib import Path

from sshpanel.access.compose import normalize_project_name
from sshpanel.access.compose_yaml import MAX_FILE
from sshpanel.backend.user.files import parent_beneath, relative_parts
from sshpanel.errors import InvalidValue, NotFound

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
"""The names docker compose looks for, in its order."""


@dataclass(frozen=True)
class ComposeSource:
    """Where a project's file came from.

    Attributes:
        text: The file's text.
        folder: Its folder, relative to the home ("" for the home itself).
        shown: The file as the user named it (`-` for stdin).
        default_name: The project name the folder gives.
    """

    text: str
    folder: str
    shown: str
    default_name: str


class ComposeFiles:
    """Compose files of one user's home.

    Args:
        root: The user's home directory (symlink-free, absolute).
        user: The user's name (the project name of a file in the home's
            top folder, as docker compose takes the folder's name).
    """

    def __init__(self, root: Path, user: str) -> None:
        self.root = root
        self.user = user

    def source(self, file: str | None, stdin: str | None, project: str) -> ComposeSource:
        """Finds the project's compose file: `-f FILE` in the home, `-f -`
        (the text given), else `compose.yaml` and the other default names
        in the folder named after `-p PROJECT`, then in the home.

        Raises:
            NotFound: No such file; no default file (docker compose's "no
                configuration file provided: not found").
            InvalidValue: A path outside the home, through a symlink, or a
                file over the size limit.
        """
        if file == "-":
            return ComposeSource(stdin or "", "", "-", self._name_of(""))
        if file:
            folder = posixpath.dirname(posixpath.normpath(file))
            return ComposeSource(self.read("", file, "-f"), folder, file, self._name_of(folder))
        for folder in ([project] if project else []) + [""]:
            for name in DEFAULT_FILES:
                try:
                    text = self.read(folder, name, name)
                except NotFound:
                    continue
                shown = posixpath.join(folder, name)
                return ComposeSource(text, folder, shown, self._name_of(folder))
        raise NotFound("no configuration file provided: not found (upload compose.yaml, or give -f FILE or -f -)")

    def read(self, folder: str, path: str, what: str) -> str:
        """Reads a text file at `path` relative to `folder` of the home.

        Args:
            folder: The compose file's folder, relative to the home.
            path: As the file names it (`.env`, `./web.env`).
            what: The key path or flag, for messages.

        Raises:
            InvalidValue: Absolute, `..` out of the home, a symlink on the
                way, not a regular file, over the size limit.
            NotFound: No such file.
        """
        joined = posixpath.normpath(posixpath.join(folder or ".", str(path)))
        if str(path).startswith("/") or joined.startswith("../") or joined == "..":
            raise InvalidValue(f"{what}: {str(path)[:80]!r} is outside your home directory")
        parts = relative_parts(joined, "file")
        if not parts:
            raise InvalidValue(f"{what}: {str(path)[:80]!r} is a folder")
        try:
            with parent_beneath(str(self.root), parts) as (dir_fd, name):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise InvalidValue(f"{what}: {str(path)[:80]!r} is not a regular file")
                    data = os.read(fd, MAX_FILE + 1)
                finally:
                    os.close(fd)
        except FileNotFoundError:
            raise NotFound(f"{what}: no such file in your home directory: {str(path)[:80]}") from None
        except OSError as exc:
            raise InvalidValue(f"{what}: cannot read {str(path)[:80]!r}: {exc.strerror or exc}") from None
        if len(data) > MAX_FILE:
            raise InvalidValue(f"{what}: too large: at most {MAX_FILE // 1024} KiB")
        return data.decode("utf-8", "replace")

    def _name_of(self, folder: str) -> str:
        base = posixpath.basename(posixpath.normpath(folder)) if folder else self.user
        return normalize_project_name(base) or normalize_project_name(self.user) or "default"
