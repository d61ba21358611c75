"""Provides the server's ed25519 host key, created once and kept forever
(a new key would make every client warn of a man-in-the-middle)."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from sshpanel.errors import ConfigError

HOST_KEY_FILE = "ssh_host_ed25519_key"


def load_or_create_host_key(directory: Path) -> tuple[asyncssh.SSHKey, bool]:
    """Loads the host key from `directory`, creating it on first start.

    Args:
        directory: Folder for `ssh_host_ed25519_key` (created with mode 0700).

    Returns:
        (the private key, True when it was created now).

    Raises:
        ConfigError: The folder or the key file is unusable.
    """
    path = directory / HOST_KEY_FILE
    try:
        if path.exists():
            return asyncssh.read_private_key(str(path)), False
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="sshpanel host key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.export_private_key())
        (directory / (HOST_KEY_FILE + ".pub")).write_bytes(key.export_public_key())
        return key, True
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError(f"cannot use host key {path}: {exc}") from None


def host_key_fingerprint(key: asyncssh.SSHKey) -> str:
    """Returns the key's SHA256 fingerprint as `ssh-keygen -lf` prints it."""
    return key.get_fingerprint("sha256")
