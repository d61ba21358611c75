"""Provides `Account`, what every user manages about themselves (their
public keys and their password), and the key functions `Admin` shares."""

from __future__ import annotations

from sshpanel.access.keys import parse_public_key
from sshpanel.access.text import quoted
from sshpanel.backend.admin.accounts import keys_in
from sshpanel.backend.admin.passwords import Passwords
from sshpanel.backend.records import KeyView
from sshpanel.backend.user.scope import UserScope
from sshpanel.errors import Conflict, ConfigError, InvalidValue, NotFound
from sshpanel.store import Store, admin as queries


class Account:
    """The logged-in user's own account.

    Args:
        scope: The user's scope (principal, store, audit log).
        passwords: bcrypt service, for `set_password`.

    Every method blocks (database, bcrypt): run it in a thread. Every change
    is written to the audit log through `scope.audited`.
    """

    def __init__(self, scope: UserScope, passwords: Passwords | None = None) -> None:
        self.scope = scope
        self.principal = scope.principal
        self.store = scope.store
        self.passwords = passwords

    def keys(self) -> list[KeyView]:
        """Returns the user's public keys, oldest first."""
        return keys_of(self.store, self.principal.user_id)

    def add_key(self, line: str) -> KeyView:
        """Adds a public key (one OpenSSH line; options and comment kept).

        Raises:
            InvalidValue: Not a supported key; RSA under 2048 bits and
                `ssh-dss` are refused.
            Conflict: The key is already registered (to anyone).
        """
        with self.scope.audited("keys.add", key_target(line)):
            return add_key(self.store, self.principal.user_id, line)

    def remove_key(self, fingerprint: str) -> KeyView:
        """Removes one of the user's keys; the last one cannot be removed.

        Args:
            fingerprint: `SHA256:...` as `keys ls` shows it.

        Raises:
            NotFound: The user has no such key.
            Conflict: It is the user's last key.
        """
        with self.scope.audited("keys.rm", fingerprint):
            return remove_key(self.store, self.principal.user_id, fingerprint, keep_last=True)

    def set_password(self, password: str | None) -> None:
        """Sets (or with None removes) the user's login password (bcrypt).

        Password logins work only when the server has `password_auth` on.

        Raises:
            InvalidValue: Too short, over 72 bytes, or with NUL/line breaks.
            ConfigError: The server has no password service.
        """
        with self.scope.audited("passwd", "remove" if password is None else "set"):
            if self.passwords is None:
                raise ConfigError("passwords are not available on this server")
            hashed = None if password is None else self.passwords.hash(password)
            with self.store.write():
                queries.update_user(self.principal.user_id, password_hash=hashed)


def key_view(key) -> KeyView:
    """Returns the record of a `PublicKey` row."""
    return KeyView(key.algorithm, key.fingerprint, key.comment, key.openssh, key.created, key.last_used)


def key_target(line: str) -> str:
    """Returns the fingerprint of a key line for the audit log, or a marker
    when the line does not parse (the action then fails and says why)."""
    lines = keys_in(line)
    try:
        return parse_public_key(lines[0]).fingerprint if len(lines) == 1 else "(invalid key)"
    except InvalidValue:
        return "(invalid key)"


def keys_of(store: Store, user_id: int) -> list[KeyView]:
    """Returns a user's keys, oldest first."""
    user = store.user_by_id(user_id)
    return [] if user is None else [key_view(key) for key in store.keys_of(user)]


def add_key(store: Store, user_id: int, line: str) -> KeyView:
    """Parses and adds one key line to a user.

    Raises:
        InvalidValue: Not exactly one supported key line.
        Conflict: The key belongs to someone already.
        NotFound: No such user.
    """
    lines = keys_in(line)
    if len(lines) != 1:
        raise InvalidValue("give exactly one OpenSSH public key line")
    parsed = parse_public_key(lines[0])
    user = store.user_by_id(user_id)
    if user is None:
        raise NotFound("no such user")
    key = store.add_key(user, parsed.algorithm, parsed.fingerprint, parsed.openssh, parsed.comment)
    return key_view(key)


def remove_key(store: Store, user_id: int, fingerprint: str, keep_last: bool) -> KeyView:
    """Removes one key of a user, checked and deleted in one transaction.

    Args:
        store: The repository.
        user_id: Whose key.
        fingerprint: `SHA256:...`.
        keep_last: Refuse to remove the user's only key.

    Raises:
        NotFound: The user has no key with this fingerprint.
        Conflict: `keep_last` and it is the only key.
    """
    with store.write():
        key = queries.key_by_fingerprint(user_id, fingerprint)
        if key is None:
            raise NotFound(f"no such key: {quoted(fingerprint)}")
        if keep_last and queries.count_keys(user_id) <= 1:
            raise Conflict("cannot remove your last key: add another key first")
        queries.delete_key(key.id)
    return key_view(key)
