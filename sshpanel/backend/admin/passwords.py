"""Provides `Passwords`: bcrypt hashing and checking of optional login
passwords (docs/PITFALLS.md "bcrypt").

bcrypt at cost 12 takes about 0.4 s of CPU, so every call blocks: run them
in threads, never on the event loop. A small semaphore bounds how many
hashes run at once, so a burst of login attempts cannot take every core.
Passwords over 72 bytes are refused before bcrypt sees them (bcrypt 5
raises on them), and an unknown user costs one check against a dummy hash,
so timing does not reveal which names exist.
"""

from __future__ import annotations

import secrets
import threading

import bcrypt

from sshpanel.access.principal import ROLES, Principal
from sshpanel.errors import InvalidValue
from sshpanel.store import Store

BCRYPT_COST = 12
"""bcrypt work factor (OWASP Password Storage Cheat Sheet: at least 10)."""
BCRYPT_SLOTS = 2
"""bcrypt computations allowed at once in the process."""
MAX_PASSWORD_BYTES = 72
"""bcrypt's input limit; longer passwords are refused, never truncated."""
MIN_PASSWORD_LENGTH = 8
"""Shortest password accepted by `passwd` (NIST SP 800-63B 5.1.1.2)."""
PASSWORD_FINGERPRINT = "password"
"""Stands for the key fingerprint of a session that logged in by password."""


def check_new_password(password: str) -> bytes:
    """Validates a password being set and returns its UTF-8 bytes.

    Raises:
        InvalidValue: Shorter than 8 characters, longer than 72 bytes in
            UTF-8, or containing a NUL or line break.
    """
    if any(c in password for c in "\x00\r\n"):
        raise InvalidValue("invalid password: it may not contain NUL bytes or line breaks")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValue(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    encoded = password.encode("utf-8")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise InvalidValue(
            f"password too long: bcrypt uses at most {MAX_PASSWORD_BYTES} bytes "
            f"and this one has {len(encoded)} in UTF-8; choose a shorter one"
        )
    return encoded


class Passwords:
    """bcrypt over the user table.

    Args:
        store: The database repository.
        cost: bcrypt work factor (at least 12 outside tests of this class).
        slots: How many bcrypt computations may run at once.

    Every method blocks; call it from a thread.
    """

    def __init__(self, store: Store, cost: int = BCRYPT_COST, slots: int = BCRYPT_SLOTS) -> None:
        self.store = store
        self.cost = cost
        self._slots = threading.BoundedSemaphore(slots)
        self._dummy_lock = threading.Lock()
        self._dummy: bytes | None = None

    def hash(self, password: str) -> str:
        """Returns the bcrypt hash (`$2b$12$...`) of a new password.

        Raises:
            InvalidValue: See `check_new_password`.
        """
        encoded = check_new_password(password)
        with self._slots:
            return bcrypt.hashpw(encoded, bcrypt.gensalt(self.cost)).decode("ascii")

    def authenticate(self, user_name: str, password: str, source: str) -> Principal | None:
        """Returns the principal when `password` is the password of the enabled
        user `user_name`, else None.

        Unknown users, disabled users and users without a password cost one
        bcrypt check too (against a dummy hash), so the answer time does not
        tell which names exist. Passwords over 72 bytes are never valid (they
        cannot be set) and are refused without calling bcrypt.

        Args:
            user_name: The SSH login name.
            password: What the client sent.
            source: Client address `host:port`, for the principal.
        """
        encoded = password.encode("utf-8", "replace")
        if len(encoded) > MAX_PASSWORD_BYTES or "\x00" in password:
            return None
        user = self.store.user_by_name(user_name)
        usable = user is not None and bool(user.password_hash) and not user.disabled and user.role in ROLES
        stored = user.password_hash.encode("ascii") if usable else self._dummy_hash()
        with self._slots:
            try:
                matches = bcrypt.checkpw(encoded, stored)
            except ValueError:
                matches = False
        if not (usable and matches):
            return None
        return Principal(user.id, user.name, user.role, PASSWORD_FINGERPRINT, source)

    def prepare(self) -> None:
        """Makes the dummy hash now (at server start), so that the first
        unknown user does not take longer than the ones after."""
        self._dummy_hash()

    def _dummy_hash(self) -> bytes:
        """Returns a hash of a random secret at the configured cost (made once)."""
        with self._dummy_lock:
            if self._dummy is None:
                secret = secrets.token_urlsafe(32).encode("ascii")
                with self._slots:
                    self._dummy = bcrypt.hashpw(secret, bcrypt.gensalt(self.cost))
            return self._dummy
