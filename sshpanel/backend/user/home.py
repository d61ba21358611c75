"""Provides `Home`, one user's home directory as the dashboard's file browser
sees it: list a folder, delete an entry, the disk usage (issue 6). Paths are
confined exactly like SFTP's: relative, no `..`, no symlink followed."""

from __future__ import annotations

import datetime as dt
import errno
import os
import posixpath
import shutil
import stat
from dataclasses import dataclass
from typing import Callable

from sshpanel.backend.user.files import disk_usage, home_dir, open_folder, parent_beneath, relative_parts
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
        on_removed: Called with the bytes of the regular files `delete`
            removed, to give them back to the user's disk ledger
            (`sshpanel.backend.user.ledger.give_back`); None: not counted.
    """

    def __init__(self, settings: Settings, user: str, on_removed: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.root = home_dir(settings, user)
        self.on_removed = on_removed

    def list(self, folder: str = "") -> list[FileEntry]:
        """Lists a folder ("" for the home directory itself): folders first,
        then by name. The folder is opened beneath the home directory
        without following links and read by descriptor, like `delete`.

        Raises:
            InvalidValue: An absolute path, `..`, or a symbolic link on the way.
            NotFound: No such folder in the home directory.
        """
        parts = relative_parts(folder, "folder") if folder else []
        entries = []
        try:
            with parent_beneath(str(self.root), parts) as (dir_fd, name):
                listed_fd = open_folder(dir_fd, name)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidValue(f"{folder!r} is or goes through a symbolic link") from None
            raise NotFound(f"no such folder in your home directory: {folder}") from None
        try:
            with os.scandir(listed_fd) as listing:
                for item in listing:
                    info = item.stat(follow_symlinks=False)
                    is_dir = stat.S_ISDIR(info.st_mode)
                    size = disk_usage(item.name, dir_fd=listed_fd) if is_dir else info.st_size
                    entries.append(FileEntry(
                        item.name, posixpath.join(folder, item.name) if folder else item.name, is_dir,
                        stat.S_ISLNK(info.st_mode), size,
                        dt.datetime.fromtimestamp(info.st_mtime, dt.timezone.utc),
                    ))
        finally:
            os.close(listed_fd)
        return sorted(entries, key=lambda entry: (not entry.is_dir, entry.name))

    def delete(self, path: str) -> None:
        """Deletes a file, a symbolic link (not its target) or a folder with
        everything in it. The path is walked from the home directory's
        descriptor without following links and the entry removed relative
        to its folder's descriptor (`sshpanel.backend.user.files.parent_beneath`),
        so a link swapped in at any moment is never followed. The bytes
        removed go to `on_removed`.

        Raises:
            InvalidValue: An absolute path, `..`, the home directory itself,
                or a path through a symbolic link.
            NotFound: Nothing there.
        """
        parts = relative_parts(path)
        if not parts:
            raise InvalidValue("the home directory itself cannot be deleted")
        try:
            with parent_beneath(str(self.root), parts) as (dir_fd, name):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    removed = disk_usage(name, dir_fd=dir_fd)
                    shutil.rmtree(name, dir_fd=dir_fd)
                else:
                    removed = info.st_size if stat.S_ISREG(info.st_mode) else 0
                    os.unlink(name, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such file in your home directory: {path}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InvalidValue(f"{path!r} goes through a symbolic link") from None
            raise
        if self.on_removed is not None and removed:
            self.on_removed(removed)
