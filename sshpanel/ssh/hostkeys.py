"""Provides the server's ed25519 host key, created once and kept forever
(a new key would make every client warn of a man-in-the-middle), and what
an admin hands users so they can trust it: the `known_hosts` line, SSHFP
records and a `~/.ssh/config` entry."""

from __future__ import annotations

import hashlib
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


SSHFP_ALGORITHMS = {"ssh-rsa": 1, "ssh-dss": 2, "ecdsa-sha2-nistp256": 3, "ssh-ed25519": 4}
"""SSHFP key algorithm numbers (RFC 4255, RFC 6594, RFC 7479)."""


def known_hosts_line(key: asyncssh.SSHKey, names: list[str], port: int) -> str:
    """Returns the `~/.ssh/known_hosts` line of the host key for `names`
    (`[name]:port` when the port is not 22, as OpenSSH writes it).

    Args:
        key: The host key (private or public).
        names: Host names and addresses clients use.
        port: The TCP port the panel listens on.
    """
    hosts = ",".join(name if port == 22 else f"[{name}]:{port}" for name in names)
    algorithm, blob = key.export_public_key().decode().split()[:2]
    return f"{hosts} {algorithm} {blob}"


def sshfp_records(key: asyncssh.SSHKey, name: str) -> list[str]:
    """Returns the SSHFP DNS records of the host key, SHA-1 and SHA-256 (as
    `ssh-keygen -r` prints them; RFC 4255 §3.1: the digest is over the key's
    wire-format public blob).

    Args:
        key: The host key.
        name: The panel's DNS name (`panel.example.org`).

    Raises:
        ConfigError: A key type SSHFP has no number for.
    """
    algorithm = key.get_algorithm()
    number = SSHFP_ALGORITHMS.get(algorithm)
    if number is None:
        raise ConfigError(f"no SSHFP algorithm number for {algorithm} keys")
    blob = key.public_data
    return [f"{name} IN SSHFP {number} {kind} {digest(blob).hexdigest()}"
            for kind, digest in ((1, hashlib.sha1), (2, hashlib.sha256))]


def ssh_config_snippet(user: str, hostname: str, port: int) -> str:
    """Returns the `~/.ssh/config` entry a user needs (`ssh ALIAS`, the alias
    being the host name's first label).

    Args:
        user: The panel user name (the SSH login name).
        hostname: The panel's host name or address.
        port: The panel's TCP port.
    """
    alias = hostname.split(".")[0] or hostname
    return f"Host {alias}\n    HostName {hostname}\n    Port {port}\n    User {user}\n"
