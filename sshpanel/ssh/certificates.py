"""Provides SSH user certificates (issue 24 item 4): the certificate
authorities the admin trusts (`SSHPANEL_USER_CA_KEYS`), the revocation list
(`SSHPANEL_REVOKED_KEYS`), and `check_offers`, which shows the server every
key or certificate a client offers before asyncssh decides on it.

What asyncssh 2.24.1 checks itself once `SSHServer.validate_ca_key` has
accepted the CA (connection.py `_validate_openssh_certificate`,
public_key.py `SSHOpenSSHCertificate.validate`), and the tests prove end to
end (tests/test_certificates.py): the CA's signature over the certificate;
that it is a user certificate, not a host one; that it is valid now
(neither expired nor not yet valid); that the login name is among its
principals; the `source-address` critical option; and that the client
holds the certified key (the signature of the request). A certificate with
a critical option asyncssh does not know cannot be decoded, so it is
refused. asyncssh also runs the `force-command` option instead of whatever
the client asked for, shell and subsystems included (channel.py
`_start_session`), and refuses a pty to a certificate without `permit-pty`.

What it leaves to the server, done here: a certificate with no principals
is valid for *any* user to asyncssh; the panel refuses it, as OpenSSH's
sshd does with `TrustedUserCAKeys`. asyncssh keeps no revocation list of
client keys, and never tells the server which certificate authenticated
(asyncssh #155: `validate_ca_key` gets the CA key alone), so the offered
blob is decoded here too, with asyncssh's own decoder, for the revocation
check and for the key ID and serial the audit log records.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import asyncssh
from asyncssh.public_key import (
    CERT_TYPE_USER, SSHOpenSSHCertificate, decode_ssh_certificate, decode_ssh_public_key,
)

from sshpanel.config import Settings
from sshpanel.errors import ConfigError

log = logging.getLogger("sshpanel.ssh")

KRL_MAGIC = b"SSHKRL\n\0"
"""First bytes of an OpenSSH key revocation list (PROTOCOL.krl), which the
panel cannot read: no maintained Python library parses KRLs."""


@dataclass(frozen=True)
class Certified:
    """An OpenSSH user certificate a client offered.

    Attributes:
        key_id: The certificate's key ID (text the CA wrote: hostile).
        serial: Its serial number (0 when the CA does not number them).
        ca: SHA256 fingerprint of the CA key that signed it.
        fingerprint: SHA256 fingerprint of the certified key.
    """

    key_id: str
    serial: int
    ca: str
    fingerprint: str

    def describe(self) -> str:
        """Returns the one-line text the audit log and the server log record:
        `certificate key ID "..." serial N CA SHA256:...` (the key ID
        quoted, control characters escaped, at most 80 characters)."""
        key_id = self.key_id[:80]
        shown = key_id if key_id.isprintable() and '"' not in key_id else ascii(key_id)[1:-1]
        return f'certificate key ID "{shown}" serial {self.serial} CA {self.ca}'


@dataclass(frozen=True)
class Offer:
    """What the server makes of one offered key or certificate before
    asyncssh checks it.

    Attributes:
        certified: What the audit log records of the certificate, or None
            for a plain key.
        refusal: Why it is refused right away (revoked; no principals; a
            blob neither of asyncssh's decoders reads, which asyncssh would
            refuse too), or None to let asyncssh decide.
        certificate: The certificate as asyncssh decoded it (for
            `UserCertificates.why_refused`).
    """

    certified: Certified | None = None
    refusal: str | None = None
    certificate: SSHOpenSSHCertificate | None = field(default=None, compare=False, repr=False)


def read_key_file(path: str, what: str) -> frozenset[bytes]:
    """Reads a file of OpenSSH public key lines (`ssh-ed25519 AAAA... comment`),
    as OpenSSH's `TrustedUserCAKeys` and plain `RevokedKeys`: blank lines
    and `#` comments are skipped; a certificate line stands for its key.

    Args:
        path: The file.
        what: The setting it comes from, for messages (`SSHPANEL_...`).

    Returns:
        The keys' wire-format blobs.

    Raises:
        ConfigError: The file cannot be read, is a binary KRL, or has a
            line that is neither a public key nor a certificate.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if data.startswith(KRL_MAGIC):
        raise ConfigError(f"{what}: {path} is an OpenSSH KRL, which sshpanel cannot read; "
                          "give a list of public keys, one per line")
    blobs = set()
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        blobs.add(_key_blob(line, f"{what}: {path} line {number}"))
    return frozenset(blobs)


def _key_blob(line: str, where: str) -> bytes:
    """Returns the key blob of one public key or certificate line.

    Raises:
        ConfigError: Neither.
    """
    try:
        return asyncssh.import_public_key(line).public_data
    except (asyncssh.KeyImportError, ValueError):
        pass
    try:
        return asyncssh.import_certificate(line).key.public_data
    except (asyncssh.KeyImportError, ValueError):
        raise ConfigError(f"{where} is not an OpenSSH public key or certificate") from None


class RevokedKeys:
    """The revocation list, read again whenever the file changes (OpenSSH
    reads `RevokedKeys` at every authentication).

    Args:
        path: The file (`SSHPANEL_REVOKED_KEYS`); empty means none.

    Raises:
        ConfigError: At construction, the file is unusable (`read_key_file`).

    Once the server runs, a file that becomes unreadable or invalid revokes
    every key until it is fixed (OpenSSH refuses every public key when it
    cannot read the list): a broken list must not let revoked keys in.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._blobs: frozenset[bytes] | None = frozenset()
        if path:
            self._stamp = self._stat()
            self._blobs = read_key_file(path, "SSHPANEL_REVOKED_KEYS")

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_ino, info.st_size, info.st_mtime_ns

    def revoked(self, *blobs: bytes) -> bool:
        """True when one of these key blobs is listed, or the list cannot be
        read (blocking: a `stat`, and a read when the file changed).

        Args:
            blobs: Wire-format public key blobs.
        """
        if not self.path:
            return False
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._blobs = read_key_file(self.path, "SSHPANEL_REVOKED_KEYS")
            except ConfigError as exc:
                log.warning("%s: every key is refused until the file is fixed", exc.message)
                self._blobs = None
        return self._blobs is None or any(blob in self._blobs for blob in blobs)


class UserCertificates:
    """The certificate authorities and the revocation list of one panel
    process.

    Args:
        settings: `user_ca_keys` and `revoked_keys` are read.

    Raises:
        ConfigError: A file is unusable (`read_key_file`).
    """

    def __init__(self, settings: Settings) -> None:
        self.ca_keys = read_key_file(settings.user_ca_keys, "SSHPANEL_USER_CA_KEYS") if settings.user_ca_keys \
            else frozenset()
        self.revoked = RevokedKeys(settings.revoked_keys)

    def trusted_ca(self, key: asyncssh.SSHKey) -> bool:
        """True when `key` is one of the trusted CA keys
        (`SSHServer.validate_ca_key`)."""
        return key.public_data in self.ca_keys

    def screen(self, key_data: bytes) -> Offer:
        """Looks at one offered key or certificate before asyncssh does
        (blocking: `RevokedKeys.revoked`).

        Args:
            key_data: The blob of the `publickey` request (hostile).

        Returns:
            The offer: refused when the key, or the certificate's key or
            CA, is revoked, when the certificate names no principal, or
            when neither decoder of asyncssh reads the blob (asyncssh tries
            the same two, connection.py `validate_public_key`).
        """
        try:
            cert = decode_ssh_certificate(key_data)
        except asyncssh.KeyImportError as exc:
            # asyncssh re-raises a generic error; the first one says why
            # (e.g. "Unrecognized critical option: ...").
            reason = exc.__context__ or exc
            try:
                key = decode_ssh_public_key(key_data)
            except asyncssh.KeyImportError:
                return Offer(refusal=f"unreadable key or certificate: {str(reason)[:120]!r}")
            return Offer(refusal="revoked key" if self.revoked.revoked(key.public_data) else None)
        if not isinstance(cert, SSHOpenSSHCertificate):
            return Offer()  # X.509: asyncssh refuses it without authorized_client_keys
        # asyncssh keeps the key ID and serial private and offers no getter
        # (issue #155: the server is never told the certificate).
        certified = Certified(str(getattr(cert, "_key_id", "")), int(getattr(cert, "_serial", 0)),
                              cert.signing_key.get_fingerprint(), cert.key.get_fingerprint())
        refusal = None
        if self.revoked.revoked(cert.signing_key.public_data):
            refusal = "revoked CA"
        elif self.revoked.revoked(cert.key.public_data):
            refusal = "revoked certificate"
        elif not cert.principals:
            refusal = "certificate without principals"
        return Offer(certified, refusal, cert)

    def why_refused(self, offer: Offer, username: str) -> str:
        """Says, for the log, why asyncssh refused a certificate it was
        given (asyncssh logs nothing of it): the CA, or the message of
        asyncssh's own `validate`, else what remains of its checks.

        Args:
            offer: A certificate's offer (`screen`).
            username: The login name.
        """
        cert = offer.certificate
        if cert is None:
            return "refused"
        if not self.trusted_ca(cert.signing_key):
            return "CA not trusted"
        try:
            cert.validate(CERT_TYPE_USER, username)
        except ValueError as exc:
            return str(exc)
        return "source address not allowed, or a bad signature"


OfferCheck = Callable[[str, bytes, bool, Callable[[], Awaitable[bool]]], Awaitable[bool]]
"""`check(username, key_data, signed, validate)`: decides on one offered key
or certificate; `validate()` runs asyncssh's own checks and returns their
outcome; `signed` is True when asyncssh verifies a signature with it."""


def check_offers(conn: asyncssh.SSHServerConnection, check: OfferCheck) -> None:
    """Routes every `publickey` request of this connection through `check`.

    asyncssh calls `SSHServerConnection.validate_public_key(username,
    key_data, msg, signature)` for each key or certificate a client offers
    and again, with the signature, for the one it signs with; it is the one
    place that sees the certificate (asyncssh #155), so it is wrapped on
    this connection only. A request counts as signed exactly when asyncssh
    verifies its signature (a non-empty `msg`).

    Args:
        conn: A new server connection, before authentication.
        check: The decision (`OfferCheck`).
    """
    validate = conn.validate_public_key

    async def validate_public_key(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
        return await check(username, key_data, bool(msg), lambda: validate(username, key_data, msg, signature))

    conn.validate_public_key = validate_public_key  # type: ignore[method-assign]
