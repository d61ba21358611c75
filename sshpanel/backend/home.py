"""Provides `Home`, one user's home directory as the dashboard's file browser
sees it: list a folder, delete an entry, the disk usage (issue 6). Paths are
confined exactly like SFTP's: relative, no `..`, no symlink followed."""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import shutil
import stat
from dataclasses import dataclass

from sshpanel.backend.files import disk_usage, home_dir, inside, resolve_folder
from sshpanel.config import Settings
from sshpanel.errors import InvalidValue, NotFound


@dataclass(frozen=True)
class FileEntry:
    """One entry of a folder.

    Attributes:
        name: The entry's name in its folder.
        path: Its path relative to the home directory (`apps/site`).
        is_dir: A folder (a symlink never counts as one).
        is_link: A symbolic link (shown, never followed).
        size: Bytes (a folder's: the regular files under it).
        modified: Last modification, UTC.
    """

    name: str
    path: str
    is_dir: bool
    is_link: bool
    size: int
    modified: dt.datetime


class Home:
    """One user's home directory. Every method blocks (file system).

    Args:
        settings: `data_dir` and `quota_disk` (bytes).
        user: A validated user name.
    """

    def __init__(self, settings: Settings, user: str) -> None:
        self.settings = settings
        self.root = home_dir(settings, user)

    def list(self, folder: str = "") -> list[FileEntry]:
        """Lists a folder ("" for the home directory itself): folders first,
        then by name.

        Raises:
            InvalidValue, NotFound: See `sshpanel.backend.files.resolve_folder`.
        """
        local = resolve_folder(self.root, folder) if folder else self.root
        entries = []
        with os.scandir(local) as listing:
            for item in listing:
                info = item.stat(follow_symlinks=False)
                is_dir = stat.S_ISDIR(info.st_mode)
                size = disk_usage(item.path) if is_dir else info.st_size
                entries.append(FileEntry(
                    item.name, posixpath.join(folder, item.name) if folder else item.name, is_dir,
                    stat.S_ISLNK(info.st_mode), size,
                    dt.datetime.fromtimestamp(info.st_mtime, dt.timezone.utc),
                ))
        return sorted(entries, key=lambda entry: (not entry.is_dir, entry.name))

    def delete(self, path: str) -> None:
        """Deletes a file, a symbolic link (not its target) or a folder with
        everything in it.

        Raises:
            InvalidValue: An absolute path, `..`, the home directory itself,
                or a path through a symbolic link.
            NotFound: Nothing there.
        """
        if not path or path.startswith("/") or ".." in path.split("/") or "\0" in path:
            raise InvalidValue(f"give a path in your home directory, relative to it (not {path!r})")
        parent, name = posixpath.split(posixpath.normpath(path))
        folder = resolve_folder(self.root, parent) if parent else self.root
        local = os.path.join(str(folder), name)
        if not os.path.lexists(local):
            raise NotFound(f"no such file in your home directory: {path}")
        if os.path.islink(local) or not os.path.isdir(local):
            os.unlink(local)
        elif inside(self.root, local):
            shutil.rmtree(local)

    def usage(self) -> tuple[int, int]:
        """Returns (bytes held under the home directory, disk quota bytes)."""
        return disk_usage(self.root), self.settings.quota_disk
