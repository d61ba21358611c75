"""Provides the users' home directories (`<data_dir>/homes/<user>/`, what SFTP
serves and `build` reads): where they are, how much they hold, the
resolution of a user-given path that never leaves them, and the
descriptor-relative walk beneath them that no symlink race can redirect
(issue 6)."""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
import time
from pathlib import Path
from typing import Iterator

from sshpanel.config import Settings
from sshpanel.errors import InvalidValue, NotFound


def home_dir(settings: Settings, user: str) -> Path:
    """Returns a user's home directory, created mode 0700 on first use.

    Args:
        settings: `data_dir` holds `homes/`.
        user: A validated user name (it never contains `/` or `..`).

    Returns:
        The absolute, symlink-free path of the directory.
    """
    homes = Path(os.path.realpath(settings.data_dir)) / "homes"
    homes.mkdir(mode=0o700, parents=True, exist_ok=True)
    home = homes / user
    home.mkdir(mode=0o700, exist_ok=True)
    if home.is_symlink() or not home.is_dir():
        raise NotFound("your home directory is unusable: ask an admin")
    return home


def disk_usage(root: Path | str, dir_fd: int | None = None) -> int:
    """Returns the bytes held by the regular files under `root` (apparent
    sizes; symlinks are neither followed nor counted).

    Args:
        root: The folder; relative to `dir_fd` when given.
        dir_fd: A folder descriptor `root` is relative to (as from
            `parent_beneath`), or None.

    The walk goes by descriptors (`os.fwalk`), so a folder swapped for a
    symlink while it runs is not followed either.
    """
    return bounded_disk_usage(root, None, dir_fd=dir_fd)[0]


def bounded_disk_usage(root: Path | str, limit: int | None, pause_every: int = 1000,
                       dir_fd: int | None = None) -> tuple[int, bool]:
    """`disk_usage` that visits at most `limit` entries and lets other
    threads run every `pause_every` entries (a short sleep releases the
    interpreter lock), so one huge home cannot hold a core or the lock for
    long (issue 26).

    Args:
        root: The folder; relative to `dir_fd` when given.
        limit: Most entries (files and folders) visited; None: all.
        pause_every: Entries between two pauses.
        dir_fd: A folder descriptor `root` is relative to, or None.

    Returns:
        (bytes of the regular files seen, True when every entry was seen).
    """
    total = seen = 0
    pause_at = pause_every
    for _folder, dirs, files, folder_fd in os.fwalk(root, dir_fd=dir_fd, follow_symlinks=False):
        seen += len(dirs)
        for name in files:
            seen += 1
            if limit is not None and seen > limit:
                return total, False
            if seen >= pause_at:
                time.sleep(0.001)
                pause_at = seen + pause_every
            try:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
        if limit is not None and seen > limit:
            return total, False
        if seen >= pause_at:
            time.sleep(0.001)
            pause_at = seen + pause_every
    return total, True


def inside(root: Path, local: str) -> bool:
    """True when `local` (an absolute path) resolves to `root` or below it
    with no symlink anywhere on the way."""
    return os.path.realpath(local) == local and (local == str(root) or local.startswith(str(root) + os.sep))


def relative_parts(text: str, what: str = "path") -> list[str]:
    """Checks a path the user gave relative to their home directory.

    Args:
        text: Such as `myapp` or `apps/site/index.html`.
        what: The word the error uses ("path", "folder").

    Returns:
        Its components (`["apps", "site"]`); [] for the home itself (`.`).

    Raises:
        InvalidValue: Empty, absolute, `..` or a NUL byte.
    """
    if not text or text.startswith("/") or ".." in text.split("/") or "\0" in text:
        raise InvalidValue(f"give a {what} of your home directory, relative to it (not {text!r})")
    return [part for part in posixpath.normpath(text).split("/") if part != "."]


def resolve_folder(root: Path, text: str) -> Path:
    """Resolves a folder the user named, relative to their home directory.

    Args:
        root: The user's home directory (symlink-free).
        text: A relative path such as `myapp` or `apps/site`.

    Returns:
        The folder's absolute path.

    Raises:
        InvalidValue: An absolute path, `..`, or a symlink on the way.
        NotFound: No such folder in the home directory.
    """
    relative_parts(text, "folder")
    local = os.path.join(str(root), posixpath.normpath(text))
    if not inside(root, local):
        if os.path.lexists(local):
            raise InvalidValue(f"{text!r} is or goes through a symbolic link")
        raise NotFound(f"no such folder in your home directory: {text}")
    if not os.path.isdir(local):
        raise NotFound(f"no such folder in your home directory: {text}")
    return Path(local)


FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How `parent_beneath` opens each folder: never through a symlink."""


@contextlib.contextmanager
def parent_beneath(root: str, parts: list[str]) -> Iterator[tuple[int, str]]:
    """Opens the folder holding a path below `root` one component at a time
    from `root`'s own descriptor, never following a symlink, so a link
    planted anywhere on the way at any moment is refused rather than
    followed (the `openat` walk of OpenBSD's and Linux's `RESOLVE_BENEATH`).

    Args:
        root: The absolute, symlink-free folder everything stays beneath.
        parts: The path's components below `root` (no `..`, no empty ones);
            [] for `root` itself.

    Yields:
        (descriptor of the folder holding the last component, the last
        component's name); `(root's descriptor, ".")` for `root` itself.
        The descriptor is closed when the block ends: use it only with
        `dir_fd=` calls on the name, never following a final symlink.

    Raises:
        OSError: ELOOP when a folder on the way is a symlink, ENOENT or
            ENOTDIR when it is missing or not a folder.
    """
    dir_fd = os.open(root, FOLDER_FLAGS)
    try:
        for part in parts[:-1]:
            next_fd = open_folder(dir_fd, part)
            os.close(dir_fd)
            dir_fd = next_fd
        yield dir_fd, parts[-1] if parts else "."
    finally:
        os.close(dir_fd)


def open_folder(dir_fd: int, name: str) -> int:
    """Opens the folder `name` of the folder `dir_fd`, never through a
    symlink; returns its descriptor (the caller closes it).

    Raises:
        OSError: ELOOP when `name` is a symlink, ENOTDIR when it is another
            kind of file, ENOENT when it is missing.
    """
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "is a symbolic link", name) from None
        raise
