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

The disk quota is one ledger per user (issue 26, `sshpanel.backend.user.ledger`):
a write that grows a file reserves the growth against it first, and
removals, truncations and replaced files give their bytes back. No request
walks the home directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import stat
from typing import Callable, Iterator

import asyncssh
from asyncssh.sftp import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

from sshpanel.backend.user.files import home_dir, open_folder, parent_beneath
from sshpanel.backend.user.ledger import HomeLedger
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import QuotaExceeded
from sshpanel.ssh.limits import SessionLimits
from sshpanel.ssh.services import SessionServices

REFUSED_LINKS = "symbolic and hard links are not allowed in your home directory"
REFUSED_SESSION = "sshpanel: too many open sessions; close one and try again"


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
        return HomeSFTPServer(chan, workspace, "/nonexistent", None, release=None)
    owner.sessions += 1

    def release() -> None:
        owner.sessions -= 1
        limits.close_session(name)

    try:
        root = await asyncio.to_thread(home_dir, services.settings, name)
        ledger = HomeLedger(services.store, services.settings, owner.principal.user_id)
        server = HomeSFTPServer(chan, workspace, str(root), ledger, release=release)
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
        ledger: This session's side of the user's disk ledger; None for a
            session refused by the session limits.
        release: Called once when the session ends (it was counted against
            the per-connection and per-user session limits); None for a
            session refused by those limits.

    Writes and truncates that would take the user over the disk quota
    (files, every session's holds, volumes, image and writable layers)
    fail with an SFTP failure ("disk quota exceeded") before anything is
    written; reaching exactly the quota is allowed. All sessions of a user,
    in every process, reserve against the same ledger.
    """

    def __init__(
        self, chan: asyncssh.SSHServerChannel, workspace: Workspace, root: str, ledger: HomeLedger | None,
        release: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(chan, chroot=root.encode())
        self.release = release
        """Gives the session back to the limits at exit; None for a refused one."""
        self.workspace = workspace
        self.root = root
        self.ledger = ledger
        self.writing: set[int] = set()
        """`id()` of the files open for writing; the ledger settles when the
        last one closes."""
        self._ledger_thread: concurrent.futures.ThreadPoolExecutor | None = None
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
        (`sshpanel.backend.user.files.parent_beneath`): every request acts on the
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
        for bit, os_bit in ((FXF_APPEND, os.O_APPEND), (FXF_CREAT, os.O_CREAT), (FXF_EXCL, os.O_EXCL)):
            if pflags & bit:
                flags |= os_bit
        mode = 0o600 if attrs.permissions is None else attrs.permissions & 0o777
        with self._at(path) as (dir_fd, name):
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise asyncssh.SFTPFailure("not a regular file")
            if pflags & FXF_TRUNC and pflags & FXF_WRITE:
                # Truncated here rather than by O_TRUNC, so the bytes it
                # frees are known and given back to the ledger.
                os.ftruncate(fd, 0)
                await self._give_back(info.st_size)
        except BaseException:  # a refusal, the database, or the client left: no descriptor stays open
            os.close(fd)
            raise
        file_obj = os.fdopen(fd, "r+b" if flags & os.O_RDWR else ("wb" if pflags & FXF_WRITE else "rb"),
                             buffering=0)
        if pflags & FXF_WRITE:
            self.writing.add(id(file_obj))
        return file_obj

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs):
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    async def close(self, file_obj) -> None:
        """Closes a file; when it was the session's last file open for
        writing, what the session wrote is settled into the ledger and the
        rest of its hold given back."""
        file_obj.close()
        if id(file_obj) in self.writing:
            self.writing.discard(id(file_obj))
            if not self.writing and self.ledger is not None:
                await self._in_ledger_thread(self.ledger.settle)

    async def _in_ledger_thread(self, call: Callable[..., None], *args: int) -> None:
        """Runs a ledger call (database) in this session's own thread, made
        on first use: one user's many sessions wait on their own threads,
        never in the process's shared pool that every user's commands use
        (issue 26)."""
        if self._ledger_thread is None:
            self._ledger_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sshpanel-sftp")
        await asyncio.get_running_loop().run_in_executor(self._ledger_thread, call, *args)

    async def _reserve(self, growth: int) -> None:
        """Reserves `growth` bytes against the user's disk quota before they
        are written (from the session's hold when it suffices, else in the
        database, in a thread).

        Raises:
            SFTPFailure: They would take the user over the quota.
        """
        if self.ledger is None or self.ledger.take(growth):
            return
        try:
            await self._in_ledger_thread(self.ledger.reserve, growth)
        except QuotaExceeded as exc:
            self.refused += 1
            raise asyncssh.SFTPFailure(exc.message) from None

    async def _give_back(self, removed: int) -> None:
        """Gives `removed` bytes back to the user's ledger (in a thread)."""
        if self.ledger is not None and removed > 0:
            await self._in_ledger_thread(self.ledger.give_back, removed)

    async def write(self, file_obj, offset: int, data: bytes) -> int:
        size = os.fstat(file_obj.fileno()).st_size
        await self._reserve(max(0, offset + len(data) - size))
        file_obj.seek(offset)
        written = file_obj.write(data)
        self.uploaded += len(data)
        return written

    def lstat(self, path: bytes):
        with self._at(path) as (dir_fd, name):
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)

    def stat(self, path: bytes):
        with self._at(path) as (dir_fd, name):
            return self._no_link(dir_fd, name)

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        with self._at(path) as (dir_fd, name):
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise self._refuse("path is a link")
            await self._setstat(fd, attrs)
        finally:
            os.close(fd)

    lsetstat = setstat

    async def fsetstat(self, file_obj, attrs: asyncssh.SFTPAttrs) -> None:
        await self._setstat(file_obj.fileno(), attrs)

    async def _setstat(self, fd: int, attrs: asyncssh.SFTPAttrs) -> None:
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
            await self._reserve(attrs.size - info.st_size)
            os.truncate(held, attrs.size)
            await self._give_back(info.st_size - attrs.size)
            if not self.writing and self.ledger is not None:  # nothing else will settle it soon
                await self._in_ledger_thread(self.ledger.settle)
        if attrs.permissions is not None:
            os.chmod(held, attrs.permissions & 0o777)
        if attrs.atime is not None and attrs.mtime is not None:
            os.utime(held, (attrs.atime, attrs.mtime))

    # Directory entries ---------------------------------------------------

    async def remove(self, path: bytes) -> None:
        with self._at(path) as (dir_fd, name):
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            os.unlink(name, dir_fd=dir_fd)
        self.removed += 1
        if stat.S_ISREG(info.st_mode):
            await self._give_back(info.st_size)

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

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._give_back(self._rename(oldpath, newpath, replace=False))

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._give_back(self._rename(oldpath, newpath, replace=True))

    def _rename(self, oldpath: bytes, newpath: bytes, replace: bool) -> int:
        """Renames within the home directory, both folders held by
        descriptor; without `replace`, an existing target is refused.

        Returns:
            The bytes of the regular file the rename replaced (0: none).
        """
        with self._at(oldpath) as (old_fd, old), self._at(newpath) as (new_fd, new):
            if os.curdir in (old, new):
                raise asyncssh.SFTPPermissionDenied("cannot move or replace your home directory")
            replaced = 0
            with contextlib.suppress(FileNotFoundError):
                target = os.stat(new, dir_fd=new_fd, follow_symlinks=False)
                if not replace:
                    raise asyncssh.SFTPFailure("target exists")
                if stat.S_ISREG(target.st_mode) and not os.path.samestat(
                        target, os.stat(old, dir_fd=old_fd, follow_symlinks=False)):
                    replaced = target.st_size
            os.replace(old, new, src_dir_fd=old_fd, dst_dir_fd=new_fd)
            return replaced

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
        if self.ledger is not None:
            with contextlib.suppress(Exception):  # the database is gone: the hold expires (`HOLD_TTL`)
                await self._in_ledger_thread(self.ledger.settle)
        if self._ledger_thread is not None:
            with contextlib.suppress(Exception):
                await self._in_ledger_thread(self.ledger.store.close)
            self._ledger_thread.shutdown(wait=False)
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
