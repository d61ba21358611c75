"""Provides parsing of OpenSSH public key lines and their SHA256 fingerprints."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from sshpanel.errors import InvalidValue

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MIN_RSA_BITS = 2048
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True)
class ParsedKey:
    """An OpenSSH public key line, validated.

    Attributes:
        algorithm: Key type, e.g. `ssh-ed25519`.
        fingerprint: `SHA256:...` exactly as `ssh-keygen -lf` prints it.
        openssh: The line as given (options and comment preserved), stripped.
        comment: Trailing comment, may be empty.
        blob: The decoded key blob (wire format).
    """

    algorithm: str
    fingerprint: str
    openssh: str
    comment: str
    blob: bytes


def fingerprint_of_blob(blob: bytes) -> str:
    """Returns the SHA256 fingerprint of a key blob, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_public_key(line: str) -> ParsedKey:
    """Parses one `authorized_keys`-style line: `[options] type base64 [comment]`.

    `ssh-dss` and RSA keys under 2048 bits are refused (OpenSSH 7.0 dropped
    DSA; NIST SP 800-131A disallows RSA < 2048).

    Raises:
        InvalidValue: The line is not a supported, well-formed public key.
    """
    text = (line or "").strip()
    if "\n" in text or "\x00" in text or len(text) > 16384:
        raise InvalidValue("invalid public key: give exactly one OpenSSH public key line")
    tokens = text.split()
    index = next((i for i, tok in enumerate(tokens) if tok in KEY_TYPES or tok == "ssh-dss"), None)
    if index is None or index + 1 >= len(tokens):
        raise InvalidValue("invalid public key: expected 'TYPE BASE64 [COMMENT]' (e.g. ssh-ed25519 AAAA... you@host)")
    algorithm, data = tokens[index], tokens[index + 1]
    if algorithm == "ssh-dss":
        raise InvalidValue("ssh-dss (DSA) keys are refused: use an ed25519 key (ssh-keygen -t ed25519)")
    if not _B64.fullmatch(data):
        raise InvalidValue("invalid public key: the key data is not base64")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue("invalid public key: the key data is not base64") from None
    if _blob_type(blob) != algorithm:
        raise InvalidValue("invalid public key: the key data does not match its type")
    if not algorithm.startswith("sk-"):
        try:
            key = load_ssh_public_key(f"{algorithm} {data}".encode())
        except (ValueError, UnsupportedAlgorithm):
            raise InvalidValue("invalid public key: the key data is malformed") from None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise InvalidValue(f"RSA keys under {MIN_RSA_BITS} bits are refused ({key.key_size} given)")
    comment = " ".join(tokens[index + 2 :])
    return ParsedKey(algorithm, fingerprint_of_blob(blob), text, comment, blob)


def _blob_type(blob: bytes) -> str:
    """Returns the type string at the head of a key blob, or '' if malformed."""
    if len(blob) < 4:
        return ""
    length = int.from_bytes(blob[:4], "big")
    if length > 64 or len(blob) < 4 + length:
        return ""
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return ""
