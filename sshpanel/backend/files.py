"""Provides the users' home directories (`<data_dir>/homes/<user>/`, what SFTP
serves and `build` reads): where they are, how much they hold, and the
resolution of a user-given path that never leaves them (issue 6)."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

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


def disk_usage(root: Path) -> int:
    """Returns the bytes held by the regular files under `root` (apparent
    sizes; symlinks are not followed and count nothing)."""
    total = 0
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += info.st_size
    return total


def inside(root: Path, local: str) -> bool:
    """True when `local` (an absolute path) resolves to `root` or below it
    with no symlink anywhere on the way."""
    return os.path.realpath(local) == local and (local == str(root) or local.startswith(str(root) + os.sep))


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
    if not text or text.startswith("/") or ".." in text.split("/") or "\0" in text:
        raise InvalidValue(f"give a folder of your home directory, relative to it (not {text!r})")
    local = os.path.join(str(root), posixpath.normpath(text))
    if not inside(root, local):
        if os.path.lexists(local):
            raise InvalidValue(f"{text!r} is or goes through a symbolic link")
        raise NotFound(f"no such folder in your home directory: {text}")
    if not os.path.isdir(local):
        raise NotFound(f"no such folder in your home directory: {text}")
    return Path(local)
