"""Provides the hardened SSH algorithm lists
(docs/PITFALLS.md "asyncssh server defaults": asyncssh's defaults fail
ssh-audit; these pass with only the "not post-quantum" warning). Strict key
exchange (Terrapin, CVE-2023-48795) is on since asyncssh 2.14.2."""

from __future__ import annotations

from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.mac import get_mac_algs

KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256")
"""Key exchanges, `curve25519-sha256` first. The client's order decides
which is used (RFC 4253 §7.1), so a client that prefers ML-KEM (OpenSSH
9.9+) still gets it. The server's first one matters to a client that
guesses: Dropbear (2022.83) sends a guessed `curve25519-sha256` init with
`first_kex_packet_follows`; with another kex first on the server the guess
is wrong, and asyncssh 2.24 then mistakes Dropbear's correct resend for an
out-of-order packet ("Key exchange not in progress") and disconnects. With
the guess right, nothing is discarded (issue 24)."""
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)


def _available(wanted: tuple[str, ...], present: list[bytes]) -> list[str]:
    have = {alg.decode() for alg in present}
    return [alg for alg in wanted if alg in have]


def server_algorithms() -> dict[str, list[str]]:
    """Returns `kex_algs`, `encryption_algs` and `mac_algs` for
    `asyncssh.create_server`, keeping only those this build supports."""
    return {
        "kex_algs": _available(KEX, get_kex_algs()),
        "encryption_algs": _available(CIPHERS, get_encryption_algs()),
        "mac_algs": _available(MACS, get_mac_algs()),
    }
