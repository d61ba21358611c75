"""Provides `HomeSFTPServer`, the SFTP subsystem (`sftp`, and `scp`, which
OpenSSH 9 runs over SFTP) confined to the user's home directory, with the
per-user disk quota (issue 6).

Confinement has two layers. asyncssh's `chroot` maps every client path
under the home directory (it normalises `..` and absolute paths), but it
follows symlinks that already exist inside the root (its own docstring says
so). So on top of it, no request uses a path by name: each one opens the
folder holding its target one component at a time with `O_NOFOLLOW` from
the home's descriptor and acts on the name relative to that descriptor
(`openat`, `mkdirat`, `unlinkat`, `renameat`, `fstatat` without following),
and changes attributes through a descriptor of the target opened with
`O_NOFOLLOW`. A symlink planted at any moment, even between two requests
or during one, is refused, never followed. Symlink, hard link and readlink
requests are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

import asyncssh
from asyncssh.sftp import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from sshpanel.backend.files import disk_usage, home_dir, open_folder, parent_beneath
from sshpanel.backend.volumes import Volumes
from sshpanel.backend.workspace import Workspace
from sshpanel.errors import PanelError
from sshpanel.ssh.limits import SessionLimits
from sshpanel.ssh.services import SessionServices

REFUSED_LINKS = "symbolic and hard links are not allowed in your home directory"
REFUSED_SESSION = "sshpanel: too many open sessions; close one and try again"
VOLUMES_TTL = 60.0
"""Seconds an SFTP session reuses the engine's figure of the user's volumes."""


async def open_home_sftp(
    services: SessionServices, limits: SessionLimits, chan: asyncssh.SSHServerChannel
) -> "HomeSFTPServer":
    """The `sftp_factory`: builds the SFTP server of the channel's user.

    Args:
        services: The process's session services (settings, workspaces).
        limits: The session limits the session is counted in.
        chan: The SFTP session's channel; its connection's owner is the
            `PanelSSHServer` holding the authenticated principal.

    Returns:
        The user's SFTP server, rooted at their home directory.
    """
    owner = chan.get_connection().get_owner()
    workspace = services.workspace(owner.principal)
    name = owner.principal.name
    if owner.sessions >= limits.settings.sessions_per_connection or not limits.open_session(name):
        # Counted like every other session (issue 7). Closing the channel
        # here would end the whole connection (asyncssh's SFTP handler does
        # not expect it before the init packet): every request fails instead.
        chan.write_stderr(REFUSED_SESSION.encode() + b"\r\n")
        return HomeSFTPServer(chan, workspace, "/nonexistent", 0, release=None)
    owner.sessions += 1

    def release() -> None:
        owner.sessions -= 1
        limits.close_session(name)

    try:
        root = await asyncio.to_thread(home_dir, services.settings, name)
        server = HomeSFTPServer(chan, workspace, str(root), services.settings.quota_disk, release=release,
                                volumes_size=Volumes(workspace).size)
        await server.refresh_usage()
    except BaseException:
        release()
        raise
    return server


class HomeSFTPServer(asyncssh.SFTPServer):
    """One SFTP session confined to one user's home directory.

    Args:
        chan: The session's channel.
        workspace: The user's Workspace (audit log).
        root: The home directory, absolute and symlink-free.
        quota: Most bytes the home directory and the user's volumes may
            hold together (`Settings.quota_disk`).
        release: Called once when the session ends (it was counted against
            the per-connection and per-user session limits); None for a
            session refused by those limits.
        volumes_size: Returns the bytes the user's volumes hold (blocks:
            the engine's disk usage); None to count the home only.

    Writes and truncates that would take the home directory plus the
    volumes over `quota` fail with an SFTP failure ("disk quota exceeded")
    before anything is written; reaching exactly `quota` is allowed. Two
    sessions of one user writing at the same time each count from the usage
    they saw at their last open for writing.
    """

    def __init__(
        self, chan: asyncssh.SSHServerChannel, workspace: Workspace, root: str, quota: int,
        release: Callable[[], None] | None = None, volumes_size: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(chan, chroot=root.encode())
        self.release = release
        """Gives the session back to the limits at exit; None for a refused one."""
        self.workspace = workspace
        self.root = root
        self.home = Path(root)
        self.quota = quota
        self.used = 0
        """Bytes held (home plus volumes) as of the last open for writing."""
        self.volumes_size = volumes_size
        self.volumes_bytes = 0
        self.volumes_at: float | None = None
        """When `volumes_bytes` was read (monotonic seconds); None: never."""
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

    @contextlib.contextmanager
    def _at(self, path: bytes) -> Iterator[tuple[int, str]]:
        """Opens the folder holding a client path beneath the home directory
        (`sshpanel.backend.files.parent_beneath`): every request acts on the
        name relative to that descriptor, so nothing checked by name can be
        swapped for a symlink before it is used.

        Yields:
            (folder descriptor, name in it); (home descriptor, ".") for the
            home directory itself.

        Raises:
            SFTPPermissionDenied: A symlink on the way or as the last
                component, whenever it appeared.
        """
        local = os.path.normpath(os.fsdecode(self.map_path(path)))
        relative = os.path.relpath(local, self.root)
        if relative == os.pardir or relative.startswith(os.pardir + os.sep):
            raise self._refuse("path leaves your home directory")
        try:
            with parent_beneath(self.root, [] if relative == os.curdir else relative.split(os.sep)) as found:
                yield found
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse("path goes through a link") from None
            raise

    def _refuse(self, reason: str) -> asyncssh.SFTPPermissionDenied:
        """Counts a refused request; returns the error to raise."""
        self.refused += 1
        return asyncssh.SFTPPermissionDenied(reason)

    def _no_link(self, dir_fd: int, name: str) -> os.stat_result:
        """Returns the `lstat` of `name`, refusing a symlink."""
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            raise self._refuse("path is a link")
        return info

    # Files ---------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs):
        flags = os.O_RDONLY
        if pflags & FXF_WRITE:
            flags = os.O_RDWR if pflags & FXF_READ else os.O_WRONLY
        for bit, os_bit in ((FXF_APPEND, os.O_APPEND), (FXF_CREAT, os.O_CREAT),
                            (FXF_TRUNC, os.O_TRUNC), (FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= os_bit
        mode = 0o600 if attrs.permissions is None else attrs.permissions & 0o777
        with self._at(path) as (dir_fd, name):
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise asyncssh.SFTPFailure("not a regular file")
        if pflags & FXF_WRITE:
            try:
                await self.refresh_usage()
            except BaseException:  # an engine error, or the client left: no descriptor stays open
                os.close(fd)
                raise
        return os.fdopen(fd, "r+b" if flags & os.O_RDWR else ("wb" if pflags & FXF_WRITE else "rb"), buffering=0)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs):
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    async def refresh_usage(self) -> None:
        """Sets `used`: the home directory's bytes now, plus the volumes' as
        the engine last said (asked at most every `VOLUMES_TTL` seconds: its
        disk-usage scan walks every volume of the host; when the engine does
        not answer, the last figure, 0 at first, is used)."""
        home = await asyncio.to_thread(disk_usage, self.home)
        if self.volumes_size is not None and (self.volumes_at is None
                                              or time.monotonic() - self.volumes_at >= VOLUMES_TTL):
            with contextlib.suppress(PanelError):
                self.volumes_bytes = await asyncio.to_thread(self.volumes_size)
                self.volumes_at = time.monotonic()
        self.used = home + self.volumes_bytes

    def _check_room(self, growth: int) -> None:
        """Raises SFTPFailure when `growth` more bytes take the user over the
        disk quota (holding exactly the quota is allowed)."""
        if growth > 0 and self.used + growth > self.quota:
            self.refused += 1
            raise asyncssh.SFTPFailure(
                f"disk quota exceeded ({self.quota} bytes for your home directory and volumes together)")

    def write(self, file_obj, offset: int, data: bytes) -> int:
        size = os.fstat(file_obj.fileno()).st_size
        growth = max(0, offset + len(data) - size)
        self._check_room(growth)
        file_obj.seek(offset)
        written = file_obj.write(data)
        self.used += growth
        self.uploaded += len(data)
        return written

    def lstat(self, path: bytes):
        with self._at(path) as (dir_fd, name):
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    def stat(self, path: bytes):
        with self._at(path) as (dir_fd, name):
            return self._no_link(dir_fd, name)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        with self._at(path) as (dir_fd, name):
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise self._refuse("path is a link")
            self._setstat(fd, attrs)
        finally:
            os.close(fd)

    lsetstat = setstat

    def fsetstat(self, file_obj, attrs: asyncssh.SFTPAttrs) -> None:
        self._setstat(file_obj.fileno(), attrs)

    def _setstat(self, fd: int, attrs: asyncssh.SFTPAttrs) -> None:
        """Applies permission bits (no setuid/setgid/sticky), times and a
        size within the quota to the file behind `fd` (never a symlink);
        owner changes are refused.

        The changes go through `/proc/self/fd/N`, the inode `fd` holds (how
        glibc's `fchmodat` does it): an `O_PATH` descriptor cannot be
        `fchmod`ed, and a file's mode need not allow opening it."""
        if attrs.uid is not None or attrs.gid is not None:
            raise asyncssh.SFTPPermissionDenied("changing the owner is not allowed")
        held = f"/proc/self/fd/{fd}"
        if attrs.size is not None:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise asyncssh.SFTPFailure("not a regular file")
            self._check_room(attrs.size - info.st_size)
            os.truncate(held, attrs.size)
            self.used = max(0, self.used + attrs.size - info.st_size)
        if attrs.permissions is not None:
            os.chmod(held, attrs.permissions & 0o777)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(held, (attrs.atime, attrs.mtime))

    # Directory entries ---------------------------------------------------

    def remove(self, path: bytes) -> None:
        with self._at(path) as (dir_fd, name):
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            os.unlink(name, dir_fd=dir_fd)
        if stat.S_ISREG(info.st_mode):
            self.used = max(0, self.used - info.st_size)
        self.removed += 1

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        mode = 0o700 if attrs.permissions is None else attrs.permissions & 0o777
        with self._at(path) as (dir_fd, name):
            os.mkdir(name, mode, dir_fd=dir_fd)

    def rmdir(self, path: bytes) -> None:
        with self._at(path) as (dir_fd, name):
            if name == os.curdir:
                raise asyncssh.SFTPPermissionDenied("cannot remove your home directory")
            os.rmdir(name, dir_fd=dir_fd)
        self.removed += 1

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=False)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._rename(oldpath, newpath, replace=True)

    def _rename(self, oldpath: bytes, newpath: bytes, replace: bool) -> None:
        """Renames within the home directory, both folders held by
        descriptor; without `replace`, an existing target is refused."""
        with self._at(oldpath) as (old_fd, old), self._at(newpath) as (new_fd, new):
            if os.curdir in (old, new):
                raise asyncssh.SFTPPermissionDenied("cannot move or replace your home directory")
            if not replace:
                with contextlib.suppress(FileNotFoundError):
                    os.stat(new, dir_fd=new_fd, follow_symlinks=False)
                    raise asyncssh.SFTPFailure("target exists")
            os.replace(old, new, src_dir_fd=old_fd, dst_dir_fd=new_fd)

    def realpath(self, path: bytes) -> bytes:
        with self._at(path) as (dir_fd, name), contextlib.suppress(FileNotFoundError):
            self._no_link(dir_fd, name)
        return self.reverse_map_path(os.fsencode(os.path.normpath(os.fsdecode(self.map_path(path)))))

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
        for entry in self._listing(path):
            yield entry

    def _listing(self, path: bytes) -> list[asyncssh.SFTPName]:
        """The entries of a folder (`.` and `..` first, both with the
        folder's own attributes), read from a descriptor opened beneath the
        home; entries are `lstat`ed, never followed."""
        with self._at(path) as (dir_fd, name):
            fd = open_folder(dir_fd, name)
        try:
            here = asyncssh.SFTPAttrs.from_local(os.fstat(fd))
            names = [asyncssh.SFTPName(b".", attrs=here), asyncssh.SFTPName(b"..", attrs=here)]
            with os.scandir(fd) as entries:
                for entry in entries:
                    names.append(asyncssh.SFTPName(
                        os.fsencode(entry.name), attrs=asyncssh.SFTPAttrs.from_local(entry.stat(follow_symlinks=False))))
            return names
        finally:
            os.close(fd)

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
