"""Provides `Secrets`, environment secrets of one user's containers,
encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`)
under a key file (`<data dir>/secret.key`, or `SSHPANEL_SECRET_KEY_FILE`),
injected into the environment when a container is created and never shown
back (issue 6).

Panel hosts sharing one database must share the key: each reads its own
file, so the same key is copied to each (`SSHPANEL_SECRET_KEY_FILE` names
where). `check_key`, at every start, refuses a key that does not decrypt
the database's check token (written by the first panel started on it) or,
for a database from before the token, its newest secret.

A container keeps the values it was created with after `secret rm` or
`secret set`, so the keys injected are recorded on it, in the label
`<label prefix>secret-keys` (keys only, comma-separated; always set by the
server, so an image label cannot clear it): `inspect` masks them for as
long as the container lives, and `mask_values` takes them out of any text
the panel stores (a failed deployment's log tail).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from sshpanel.access.names import check_container_name
from sshpanel.access.spec import check_env_key
from sshpanel.config import Settings
from sshpanel.errors import ConfigError, EngineError, InvalidValue, NotFound
from sshpanel.store import Store
from sshpanel.store import secrets as queries

KEY_FILE = "secret.key"
MAX_VALUE = 32 * 1024
"""Bytes of a secret's value (UTF-8), as for a plain environment variable."""
MASK = "********"
CHECK_TEXT = b"sshpanel secret key check"
"""What the check token encrypts."""
KEYS_LABEL = "secret-keys"
"""Label (after `Settings.label_prefix`) naming the keys injected at create."""


@dataclass(frozen=True)
class SecretView:
    """One secret as the user may see it: its key, never its value.

    Attributes:
        key: The environment variable name.
        updated: When the value was last set, naive UTC.
    """

    key: str
    updated: dt.datetime


def key_path(settings: Settings) -> Path:
    """The key file: `SSHPANEL_SECRET_KEY_FILE`, else `<data dir>/secret.key`."""
    return Path(settings.secret_key_file) if settings.secret_key_file else Path(settings.data_dir) / KEY_FILE


def cipher(settings: Settings) -> Fernet:
    """Returns the panel's Fernet cipher, creating its key file once
    (`key_path`, mode 0600, created exclusively so two starting processes
    cannot write two keys).

    Raises:
        OSError: The key file's folder is not writable.
        ValueError: The file does not hold a Fernet key.
    """
    path = key_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Fernet(path.read_bytes().strip())
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def check_key(store: Store, settings: Settings) -> None:
    """Refuses a secret key that cannot read what the database holds (see
    the module docstring); stores the check token on a database without one.

    Raises:
        ConfigError: The key file is unusable, or it is not the key the
            database's secrets were made with.
        DatabaseUnavailable: The database cannot be reached.
    """
    path = key_path(settings)
    try:
        box = cipher(settings)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use the secret key {path}: {getattr(exc, 'strerror', None) or exc}") from None
    earlier = queries.any_token()
    if earlier is not None:  # before a token of this key may be stored
        _refuse_unless_it_decrypts(box, earlier, path)
    _refuse_unless_it_decrypts(box, queries.key_check(store, box.encrypt(CHECK_TEXT).decode()), path)


def _refuse_unless_it_decrypts(box: Fernet, token: str, path: Path) -> None:
    """Raises `ConfigError` (see `check_key`) unless `box` decrypts `token`."""
    try:
        box.decrypt(token.encode())
    except InvalidToken:
        raise ConfigError(
            f"the secret key {path} does not decrypt the secrets this database holds: every panel on one "
            "database needs the same key file (copy it; SSHPANEL_SECRET_KEY_FILE names it)"
        ) from None


class Secrets:
    """The secrets of one user's containers. Every method blocks.

    Args:
        store: The database repository.
        settings: Server settings (data directory of the key file).
        user_id: The owning user's database id; secrets belong to a
            container *name*, so they outlive a container a deploy replaces.
    """

    def __init__(self, store: Store, settings: Settings, user_id: int) -> None:
        self.store = store
        self.settings = settings
        self.user_id = user_id

    def set(self, name: str, key: str, value: str) -> bool:
        """Sets the secret `key` of container `name` to `value`.

        Returns:
            True when it is new, False when it replaced a value.

        Raises:
            InvalidValue: Bad container name or key, a value with a NUL byte
                or longer than `MAX_VALUE` bytes.
        """
        check_container_name(name)
        check_env_key(key)
        if "\x00" in value or len(value.encode()) > MAX_VALUE:
            raise InvalidValue(f"invalid secret value: no NUL bytes, at most {MAX_VALUE // 1024} KiB")
        token = cipher(self.settings).encrypt(value.encode()).decode()
        return queries.put(self.store, self.user_id, name, key, token)

    def keys(self, name: str) -> list[SecretView]:
        """Lists the keys (never the values) of container `name`'s secrets."""
        check_container_name(name)
        return [SecretView(key, updated) for key, _token, updated in queries.listed(self.user_id, name)]

    def remove(self, name: str, key: str) -> None:
        """Removes one secret.

        Raises:
            NotFound: Container `name` has no secret `key`.
        """
        check_container_name(name)
        check_env_key(key)
        if not queries.remove(self.store, self.user_id, name, key):
            raise NotFound(f"no secret {key} for {name}")

    def environment(self, name: str) -> dict[str, str]:
        """Returns the decrypted secrets of container `name` (for the create).

        Raises:
            EngineError: A value does not decrypt (the key file was replaced).
        """
        rows = queries.listed(self.user_id, name)
        if not rows:
            return {}
        box = cipher(self.settings)
        try:
            return {key: box.decrypt(token.encode()).decode() for key, token, _updated in rows}
        except InvalidToken:
            raise EngineError(f"the secrets of {name} cannot be decrypted: was {KEY_FILE} replaced?") from None

    def inject(self, name: str, arguments: dict) -> None:
        """Adds the decrypted secrets of container `name` to Docker create
        arguments (`environment`) and records their keys, never the
        values, in the label `KEYS_LABEL` (`labels`), in place.

        Raises:
            EngineError: See `environment`.
        """
        values = self.environment(name)
        arguments["environment"].update(values)
        arguments["labels"][self.settings.label_prefix + KEYS_LABEL] = ",".join(sorted(values))

    def redact(self, name: str, inspect: dict) -> dict:
        """Masks the values of every secret in Docker's inspect data of the
        container `name` (`Config.Env`), in place; returns it. Masked: the
        keys injected at its create (its `KEYS_LABEL`), even those removed
        since, and the keys `name` has now."""
        keys = self._keys(name, inspect)
        config = inspect.get("Config") or {}
        if keys and config.get("Env"):
            config["Env"] = [
                f"{item.split('=', 1)[0]}={MASK}" if item.split("=", 1)[0] in keys else item
                for item in config["Env"]
            ]
        return inspect

    def values_in(self, name: str, inspect: dict) -> list[str]:
        """Returns the secret values the container `name` holds in its
        environment (the keys `redact` masks), for `mask_values`."""
        keys = self._keys(name, inspect)
        pairs = (item.split("=", 1) for item in (inspect.get("Config") or {}).get("Env") or [] if "=" in item)
        return [value for key, value in pairs if key in keys and value]

    def _keys(self, name: str, inspect: dict) -> set[str]:
        """Keys injected at create (label) plus the keys `name` has now."""
        labels = (inspect.get("Config") or {}).get("Labels") or {}
        injected = {key for key in labels.get(self.settings.label_prefix + KEYS_LABEL, "").split(",") if key}
        return injected | {key for key, _token, _updated in queries.listed(self.user_id, name)}


def mask_values(text: str, values: list[str]) -> str:
    """Returns `text` with every occurrence of each value replaced by
    `MASK` (longest first, so a value inside another is not left half
    shown)."""
    for value in sorted(set(values), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
