"""Provides the build context of a build (issue 21): a folder of the home
directory packed with its `.dockerignore` honoured (the Docker SDK's own
helpers), the user's Dockerfile read from a tar, and the copy the engine
receives: the panel's re-written Dockerfile in place of every file that
could be read as one, unpacked size capped."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from docker.utils.build import tar as sdk_tar

from sshpanel.errors import InvalidValue, QuotaExceeded

MAX_DOCKERFILE = 256 * 1024
"""Bytes of a user's Dockerfile."""
DOCKERFILE = "Dockerfile"


def pack_folder(root: Path) -> IO[bytes]:
    """Packs a folder into a tar file, leaving out what its `.dockerignore`
    excludes, as `docker build DIR` does (the SDK's `docker.utils.build.tar`
    with the SDK's reading of the file: one pattern a line, `#` comments).
    Symlinks are stored as links, never followed; a `.dockerignore` that is
    a symlink is not read.

    Args:
        root: The folder (symlink-free, inside the user's home).

    Returns:
        A temporary tar file, rewound (the caller closes it).
    """
    patterns: list[str] = []
    ignore = root / ".dockerignore"
    if ignore.is_file() and not ignore.is_symlink():
        lines = ignore.read_text("utf-8", "replace").splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    handle = tempfile.TemporaryFile()
    try:
        sdk_tar(str(root), exclude=patterns, fileobj=handle)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    return handle


def top_files(context: IO[bytes]) -> set[str]:
    """Returns the names of the regular files at the top of a tar context
    (`./x` read as `x`); the file is rewound.

    Raises:
        InvalidValue: Not a tar archive.
    """
    try:
        with tarfile.open(fileobj=context, mode="r:*") as tar:
            return {_path(m.name) for m in tar if m.isfile() and "/" not in _path(m.name)}
    except tarfile.TarError:
        raise InvalidValue("the build context is not a tar archive") from None
    finally:
        context.seek(0)


def dockerfile_of(context: IO[bytes]) -> str:
    """Returns the text of the context's top-level `Dockerfile` (the last
    such member, as extraction would leave it); the file is rewound.

    Raises:
        InvalidValue: Not a tar, no regular `Dockerfile` at its top, or one
            larger than `MAX_DOCKERFILE`.
    """
    text = None
    try:
        with tarfile.open(fileobj=context, mode="r:*") as tar:
            for member in tar:
                if _path(member.name) != DOCKERFILE:
                    continue
                if not member.isfile():
                    text = None
                    continue
                if member.size > MAX_DOCKERFILE:
                    raise InvalidValue("the Dockerfile is too large")
                data = tar.extractfile(member)
                text = data.read().decode("utf-8", "replace") if data else ""
    except tarfile.TarError:
        raise InvalidValue("the build context is not a tar archive") from None
    finally:
        context.seek(0)
    if text is None:
        raise InvalidValue("the build context has no Dockerfile at its top")
    return text


def with_dockerfile(context: IO[bytes], text: str, max_bytes: int) -> IO[bytes]:
    """Copies a tar context into a new, uncompressed temporary tar whose only
    Dockerfile is `text`: every member that extraction would place at
    `Dockerfile`, `dockerfile` or under them (`./Dockerfile`, `a/../Dockerfile`,
    a link or folder of that name) is left out, and `text` comes last.

    Args:
        context: A tar file (plain or compressed).
        text: The Dockerfile the engine builds.
        max_bytes: Cap on the unpacked size of the members, bytes; counted
            from the tar headers before any data is copied, so a small
            compressed stream cannot unpack into more.

    Returns:
        The new tar file, rewound (the caller closes it).

    Raises:
        InvalidValue: Not a tar archive.
        QuotaExceeded: The members add up to more than `max_bytes`.
    """
    out = tempfile.TemporaryFile()
    size = 0
    try:
        with tarfile.open(fileobj=context, mode="r:*") as source, tarfile.open(fileobj=out, mode="w") as tar:
            for member in source:
                path = _path(member.name)
                if path.split("/", 1)[0].lower() == DOCKERFILE.lower():
                    continue
                size += max(member.size, 0)
                if size > max_bytes:
                    raise QuotaExceeded(f"the build context unpacks to more than your disk quota ({max_bytes} bytes)")
                tar.addfile(member, source.extractfile(member) if member.isfile() else None)
            data = text.encode("utf-8")
            info = tarfile.TarInfo(DOCKERFILE)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    except tarfile.TarError:
        out.close()
        raise InvalidValue("the build context is not a tar archive") from None
    except BaseException:
        out.close()
        raise
    finally:
        context.seek(0)
    out.seek(0)
    return out


def _path(name: str) -> str:
    """A member's path as extraction resolves it (`./a/../Dockerfile` ->
    `Dockerfile`; a leading `/` dropped, as the engine does)."""
    cleaned = posixpath.normpath("/" + name.replace(os.sep, "/")).lstrip("/")
    return "" if cleaned == "." else cleaned
