"""Provides locks that hold across the panel's processes (`serve --workers N`):
advisory `flock(2)` locks on files in the data folder's `locks/` folder.

Every acquisition opens its own descriptor, so a lock excludes the other
threads of the same process as well as other processes, and the kernel
drops it when its holder dies: a killed worker never leaves one held.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

LOCKS_DIR = "locks"
"""Folder of the lock files, under the data folder."""


def lock_path(data_dir: Path, name: str) -> Path:
    """Returns the lock file `name` (a panel-made name: a fixed word and a
    validated user name) under `data_dir`; its folder is made at first use."""
    return data_dir / LOCKS_DIR / name


def _open(path: Path) -> int:
    """Opens (creating it and its folder, mode 0700/0600) a lock file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


class HeldLock:
    """A lock file held through one open descriptor; `release` drops it.

    Args:
        fd: The descriptor holding the `flock`.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        """Drops the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def try_lock(path: Path) -> HeldLock | None:
    """Takes the lock of `path` when nobody holds it.

    Returns:
        The held lock, or None when another holder has it.

    Raises:
        OSError: The lock file cannot be opened.
    """
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return HeldLock(fd)


class FileLock:
    """A mutex over the panel's processes and threads (`with lock: ...`),
    waiting for the holder: for short critical sections around Docker calls
    that Docker does not make atomic (`Engine.names_lock`).

    Not reentrant: a thread holding it must not enter it again.

    Args:
        path: The lock file (created when missing).

    Raises:
        OSError: On entry, the lock file cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def __enter__(self) -> "FileLock":
        if getattr(self._local, "fd", None) is not None:
            raise RuntimeError(f"{self.path.name} lock entered twice by one thread")
        fd = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._local.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._local.fd = self._local.fd, None
        os.close(fd)
