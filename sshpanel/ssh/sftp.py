"""Provides `HomeSFTPServer`, the SFTP subsystem (`sftp`, and `scp`, which
OpenSSH 9 runs over SFTP) confined to the user's home directory, with the
per-user disk quota (issue 6).

Confinement has two layers. asyncssh's `chroot` maps every client path
under the home directory (it normalises `..` and absolute paths), but it
follows symlinks that already exist inside the root (its own docstring says
so). So on top of it: every mapped path is checked with `os.path.realpath`
to lie inside the home with no symlink on the way, files are opened one
component at a time with `O_NOFOLLOW` from the home's descriptor (a symlink
planted between the check and the open is not followed), and symlink,
hard link and readlink requests are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import asyncssh
from asyncssh.sftp import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from sshpanel.backend.files import disk_usage, home_dir, inside
from sshpanel.backend.workspace import Workspace

if TYPE_CHECKING:
    from sshpanel.ssh.server import PanelServer

REFUSED_LINKS = "symbolic and hard links are not allowed in your home directory"
REFUSED_SESSION = "sshpanel: too many open sessions; close one and try again"


async def open_home_sftp(panel: "PanelServer", chan: asyncssh.SSHServerChannel) -> "HomeSFTPServer":
    """The `sftp_factory`: builds the SFTP server of the channel's user.

    Args:
        panel: The running panel (settings, workspaces).
        chan: The SFTP session's channel; its connection's owner is the
            `PanelSSHServer` holding the authenticated principal.

    Returns:
        The user's SFTP server, rooted at their home directory.
    """
    owner = chan.get_connection().get_owner()
    workspace = panel.workspace(owner.principal)
    limits, name = panel.limits, owner.principal.name
    if owner.sessions >= limits.settings.sessions_per_connection or not limits.open_session(name):
        # Counted like every other session (issue 7). Closing the channel
        # here would end the whole connection (asyncssh's SFTP handler does
        # not expect it before the init packet): every request fails instead.
        chan.write_stderr(REFUSED_SESSION.encode() + b"\r\n")
        return HomeSFTPServer(chan, workspace, "/nonexistent", 0, 0, release=None)
    owner.sessions += 1

    def release() -> None:
        owner.sessions -= 1
        limits.close_session(name)

    try:
        root = await asyncio.to_thread(home_dir, panel.settings, name)
        used = await asyncio.to_thread(disk_usage, root)
    except BaseException:
        release()
        raise
    return HomeSFTPServer(chan, workspace, str(root), panel.settings.quota_disk, used, release=release)


class HomeSFTPServer(asyncssh.SFTPServer):
    """One SFTP session confined to one user's home directory.

    Args:
        chan: The session's channel.
        workspace: The user's Workspace (audit log).
        root: The home directory, absolute and symlink-free.
        quota: Most bytes the home directory may hold.
        used: Bytes it holds when the session starts.
        release: Called once when the session ends (it was counted against
            the per-connection and per-user session limits); None for a
            session refused by those limits.

    Writes that would take the home directory over `quota` fail with an SFTP
    failure ("disk quota exceeded") before anything is written. Two sessions
    of one user writing at the same time each count from the usage they saw
    at their last open for writing.
    """

    def __init__(
        self, chan: asyncssh.SSHServerChannel, workspace: Workspace, root: str, quota: int, used: int,
        release: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(chan, chroot=root.encode())
        self.release = release
        """Gives the session back to the limits at exit; None for a refused one."""
        self.workspace = workspace
        self.root = root
        self.home = Path(root)
        self.quota = quota
        self.used = used
        self.uploaded = 0
        self.removed = 0
        self.refused = 0

    # Paths ---------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        """Maps a client path below the home directory (asyncssh's chroot);
        every request of a session refused by the session limits fails.

        Raises:
            SFTPFailure: This session is over the session limits.
        """
        if self.release is None:
            raise asyncssh.SFTPFailure(REFUSED_SESSION)
        return super().map_path(path)

    def _local(self, path: bytes, final_link_ok: bool = False) -> str:
        """Maps a client path into the home directory and checks it.

        Args:
            path: The client's path (absolute, relative, with `..`).
            final_link_ok: Accept a symlink as the last component (remove,
                lstat, listing), never followed.

        Raises:
            SFTPPermissionDenied: The path leaves the home directory or goes
                through a symlink.
        """
        local = os.path.normpath(os.fsdecode(self.map_path(path)))
        checked = os.path.dirname(local) if final_link_ok and local != self.root else local
        if not inside(self.home, checked):
            self.refused += 1
            raise asyncssh.SFTPPermissionDenied("path leaves your home directory or goes through a link")
        return local

    def _open_beneath(self, local: str, flags: int, mode: int) -> int:
        """Opens `local` walking from the root with `O_NOFOLLOW` at each step.

        Returns:
            The file descriptor.

        Raises:
            OSError: ELOOP when a component is a symlink (even one planted
                after `_local` checked the path), or any other open error.
        """
        parts = os.path.relpath(local, self.root).split(os.sep)
        if parts == ["."]:
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for part in parts[:-1]:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                os.close(dir_fd)
                dir_fd = next_fd
            return os.open(parts[-1], flags | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)

    # Files ---------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs):
        local = self._local(path)
        flags = os.O_RDONLY
        if pflags & FXF_WRITE:
            flags = os.O_RDWR if pflags & FXF_READ else os.O_WRONLY
        for bit, os_bit in ((FXF_APPEND, os.O_APPEND), (FXF_CREAT, os.O_CREAT),
                            (FXF_TRUNC, os.O_TRUNC), (FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= os_bit
        mode = 0o600 if attrs.permissions is None else attrs.permissions & 0o777
        try:
            fd = self._open_beneath(local, flags, mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.refused += 1
                raise asyncssh.SFTPPermissionDenied("path goes through a link") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise asyncssh.SFTPFailure("not a regular file")
        if pflags & FXF_WRITE:
            self.used = await asyncio.to_thread(disk_usage, self.home)
        return os.fdopen(fd, "r+b" if flags & os.O_RDWR else ("wb" if pflags & FXF_WRITE else "rb"), buffering=0)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs):
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    def write(self, file_obj, offset: int, data: bytes) -> int:
        size = os.fstat(file_obj.fileno()).st_size
        growth = max(0, offset + len(data) - size)
        if self.used + growth > self.quota:
            self.refused += 1
            raise asyncssh.SFTPFailure(f"disk quota exceeded ({self.quota} bytes for your home directory)")
        file_obj.seek(offset)
        written = file_obj.write(data)
        self.used += growth
        self.uploaded += len(data)
        return written

    def lstat(self, path: bytes):
        return os.lstat(self._local(path, final_link_ok=True))

    def stat(self, path: bytes):
        return os.lstat(self._local(path))

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._setstat(self._local(path), attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._setstat(self._local(path), attrs)

    def fsetstat(self, file_obj, attrs: asyncssh.SFTPAttrs) -> None:
        self._setstat(file_obj.fileno(), attrs)

    def _setstat(self, target, attrs: asyncssh.SFTPAttrs) -> None:
        """Applies permission bits (no setuid/setgid/sticky), times and a
        shrinking size; owner changes and growing truncates are refused."""
        if attrs.uid is not None or attrs.gid is not None:
            raise asyncssh.SFTPPermissionDenied("changing the owner is not allowed")
        if attrs.size is not None:
            current = os.stat(target, follow_symlinks=False).st_size if isinstance(target, str) else os.fstat(target).st_size
            if attrs.size > current and self.used + attrs.size - current > self.quota:
                raise asyncssh.SFTPFailure(f"disk quota exceeded ({self.quota} bytes for your home directory)")
            os.truncate(target, attrs.size)
            self.used += attrs.size - current
        if attrs.permissions is not None:
            os.chmod(target, attrs.permissions & 0o777)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(target, (attrs.atime, attrs.mtime))

    # Directory entries ---------------------------------------------------

    def remove(self, path: bytes) -> None:
        local = self._local(path, final_link_ok=True)
        size = os.lstat(local).st_size
        os.remove(local)
        self.used = max(0, self.used - size)
        self.removed += 1

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        mode = 0o700 if attrs.permissions is None else attrs.permissions & 0o777
        os.mkdir(self._local(path), mode)

    def rmdir(self, path: bytes) -> None:
        local = self._local(path)
        if local == self.root:
            raise asyncssh.SFTPPermissionDenied("cannot remove your home directory")
        os.rmdir(local)
        self.removed += 1

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._local(oldpath, final_link_ok=True), self._local(newpath)
        if os.path.exists(new):
            raise asyncssh.SFTPFailure("target exists")
        os.rename(old, new)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._local(oldpath, final_link_ok=True), self._local(newpath)
        if old == self.root or new == self.root:
            raise asyncssh.SFTPPermissionDenied("cannot replace your home directory")
        os.replace(old, new)

    def realpath(self, path: bytes) -> bytes:
        return self.reverse_map_path(os.fsencode(self._local(path)))

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPPermissionDenied(REFUSED_LINKS)

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self.refused += 1
        raise asyncssh.SFTPPermissionDenied(REFUSED_LINKS)

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        self.refused += 1
        raise asyncssh.SFTPPermissionDenied(REFUSED_LINKS)

    def statvfs(self, path: bytes):
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    async def scandir(self, path: bytes):
        self._local(path)
        async for entry in super().scandir(path):
            yield entry

    async def exit(self) -> None:
        """Writes one audit entry summing up the session (uploads, removals,
        refused requests)."""
        if self.release is None:
            return
        self.release()
        summary = f"{self.uploaded} bytes written, {self.removed} removed, {self.refused} refused"
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._audit, summary)
        # asyncssh closes an SFTP channel without an exit status; OpenSSH's
        # scp then sees ssh exit 255 and reports failure, so send 0 as
        # sshd's sftp-server does.
        with contextlib.suppress(Exception):
            self.channel.exit(0)

    def _audit(self, summary: str) -> None:
        with self.workspace.audited("sftp", summary):
            pass
