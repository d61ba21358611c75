"""Provides `Accounts`: users and their public keys, for the local command
line (`sshpanel user ...`) and for SSH authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sshpanel.access.keys import fingerprint_of_blob, parse_public_key
from sshpanel.access.names import check_user_name
from sshpanel.access.principal import ROLES, Principal
from sshpanel.config import Settings
from sshpanel.errors import Conflict, InvalidValue, NotFound
from sshpanel.store import Store

if TYPE_CHECKING:
    from sshpanel.store.models import User


@dataclass(frozen=True)
class UserSummary:
    """A user as `sshpanel user ls` shows it.

    Attributes:
        name: User name.
        role: `admin` or `user`.
        disabled: True when logins are refused.
        keys: Number of public keys.
        fingerprints: SHA256 fingerprints of the keys.
    """

    name: str
    role: str
    disabled: bool
    keys: int
    fingerprints: tuple[str, ...]


class Accounts:
    """User and key management over the store.

    Args:
        store: The database repository.
        settings: Default quotas for new users.

    Methods block (database): call them in a thread from async code.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def add_user(self, name: str, key_lines: list[str], admin: bool = False) -> UserSummary:
        """Creates a user with one or more public keys, all or nothing.

        Args:
            name: User name (`[a-z_][a-z0-9_-]{0,31}`).
            key_lines: OpenSSH public key lines (at least one; blank lines
                and `#` comments are skipped).
            admin: Give the `admin` role.

        Raises:
            InvalidValue: Bad name or key text, or no key.
            Conflict: The name or a key is already registered.
        """
        lines = keys_in("\n".join(key_lines))
        if not lines:
            raise InvalidValue("give at least one public key")
        create_user(self.store, self.settings, name, lines, admin)
        return self.summary(name)

    def summary(self, name: str) -> UserSummary:
        """Returns one user's summary.

        Raises:
            NotFound: No such user.
        """
        user = self.store.user_by_name(name)
        if user is None:
            raise NotFound(f"no such user: {name}")
        fingerprints = tuple(k.fingerprint for k in self.store.keys_of(user))
        return UserSummary(user.name, user.role, user.disabled, len(fingerprints), fingerprints)

    def users(self) -> list[UserSummary]:
        """Returns every user's summary, by name."""
        return [self.summary(user.name) for user in self.store.users()]

    def ensure_initial_admin(self) -> str | None:
        """Creates `admin` from `settings.initial_admin_keys` when no admin exists.

        Returns:
            The created user's name, or None when nothing was done.

        Raises:
            InvalidValue: A key line is invalid.
        """
        if not self.settings.initial_admin_keys or self.store.has_admin():
            return None
        self.add_user("admin", list(self.settings.initial_admin_keys), admin=True)
        return "admin"

    def authenticate_key(self, user_name: str, key_blob: bytes, source: str) -> Principal | None:
        """Returns the principal when `key_blob` is a key of the enabled user
        `user_name`, else None.

        The identity is the pair (requested user, key); a key of another user
        never matches (soft-serve GHSA-pchf-49fh-w34r).
        """
        found = self.store.key_of_user(user_name, fingerprint_of_blob(key_blob))
        if found is None:
            return None
        user, key = found
        if user.disabled or user.role not in ROLES:
            return None
        return Principal(user.id, user.name, user.role, key.fingerprint, source)

    def authenticate_certificate(
        self, user_name: str, fingerprint: str, certificate: str, source: str, create: bool
    ) -> Principal | None:
        """Returns the principal of the enabled user `user_name` for a login
        with an SSH user certificate the server has checked in full (CA,
        type, validity, principals, options, revocation, signature: see
        `sshpanel.ssh.certificates`), else None.

        Args:
            user_name: The login name (hostile: any text the client sent;
                the certificate names it among its principals).
            fingerprint: SHA256 fingerprint of the certified key.
            certificate: What the audit log records of the certificate
                (`Principal.certificate`).
            source: Client address as `host:port`.
            create: Create a missing user with the role `user`, no key and
                the default quotas (`SSHPANEL_CERT_AUTO_CREATE`); the
                creation is audited.

        Returns:
            The principal, or None: no such user (and `create` off, or the
            name is not a valid user name), disabled, or an unknown role.
        """
        user = self.store.user_by_name(user_name)
        if user is None and create:
            try:
                user = create_user(self.store, self.settings, user_name, [], admin=False)
            except InvalidValue:
                return None
            except Conflict:  # created meanwhile by a simultaneous login
                user = self.store.user_by_name(user_name)
            else:
                self.store.add_audit(user_name, fingerprint, source, "user add", user_name,
                                     f"ok: created at login by {certificate}"[:255])
        if user is None or user.disabled or user.role not in ROLES:
            return None
        return Principal(user.id, user.name, user.role, fingerprint, source, certificate=certificate)

    def record_login(self, principal: Principal) -> None:
        """Stamps last login of the user and last use of the key; a login by
        certificate, which no key row holds, is written to the audit log
        (action `login`, the certificate's key ID, serial and CA)."""
        if principal.certificate:
            self.store.record_user_login(principal.user_id)
            self.store.add_audit(principal.name, principal.fingerprint, principal.source, "login",
                                 principal.certificate, "ok")
            return
        found = self.store.key_of_user(principal.name, principal.fingerprint)
        if found is not None:
            self.store.record_login(found[1])


def keys_in(text: str) -> list[str]:
    """Returns the key lines of pasted text (blank lines and `#` comments dropped)."""
    return [item for item in (text or "").splitlines() if item.strip() and not item.lstrip().startswith("#")]


def create_user(store: Store, settings: Settings, name: str, lines: list[str], admin: bool) -> User:
    """Creates a user with the server's default quotas and these keys, all
    or nothing: the one way a user comes to exist (`sshpanel user add`, the
    initial admin, and an admin's `user add` and form).

    Args:
        store: The repository.
        settings: Default quotas.
        name: User name (`[a-z_][a-z0-9_-]{0,31}`, the SSH login name).
        lines: OpenSSH public key lines, one key each (may be empty: the user
            then cannot log in until a key or a password is set).
        admin: Give the `admin` role.

    Returns:
        The new user's row.

    Raises:
        InvalidValue: Bad name or key text (RSA < 2048 bits, `ssh-dss`).
        Conflict: The name or a key is already registered.
    """
    check_user_name(name)
    parsed = [parse_public_key(line) for line in lines]
    with store.write():
        if store.user_by_name(name) is not None:
            raise Conflict(f"user {name} already exists")
        user = store.create_user(
            name, "admin" if admin else "user", settings.quota_containers, settings.quota_memory, settings.quota_cpus
        )
        for key in parsed:
            store.add_key(user, key.algorithm, key.fingerprint, key.openssh, key.comment)
    return user
