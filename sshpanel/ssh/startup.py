"""Provides the start-up work of a panel, done once before any session
(`prepare_panel`: by the one serving process, or by the supervisor of
`serve --workers`), and the limit numbers of the settings (`session_limits`)."""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from sshpanel.backend.accounts import Accounts
from sshpanel.backend.engine import Engine
from sshpanel.backend.recovery import recover_interrupted_creates
from sshpanel.config import Settings
from sshpanel.errors import ConfigError
from sshpanel.ssh.hostkeys import host_key_fingerprint, load_or_create_host_key
from sshpanel.ssh.limits import LimitSettings
from sshpanel.store import Store

log = logging.getLogger("sshpanel.ssh")


async def prepare_panel(settings: Settings, store: Store, accounts: Accounts, engine: Engine) -> asyncssh.SSHKey:
    """The start-up work done once per panel, before any session: the
    initial admin, the engine check, the crash recovery and the host key
    (created once).

    Returns:
        The host key.

    Raises:
        ConfigError: Host key unusable.
        EngineUnavailable: The Docker engine does not answer.
    """
    created_admin = await asyncio.to_thread(accounts.ensure_initial_admin)
    if created_admin:
        log.info("created admin user %r from SSHPANEL_INITIAL_ADMIN_KEYS", created_admin)
    elif not await asyncio.to_thread(store.users):
        log.warning("no users yet: add one with `sshpanel user add NAME --key ~/.ssh/id_ed25519.pub --admin`")
    version = await asyncio.to_thread(engine.ping)
    log.info("Docker engine %s at %s", version, engine.address)
    # Before any session can create: a killed process may have left
    # half-written records (issue 7, crash recovery).
    await asyncio.to_thread(recover_interrupted_creates, store, engine, settings)
    key, created = await asyncio.to_thread(load_or_create_host_key, settings.host_keys_dir)
    log.info("%s host key %s", "created" if created else "loaded", host_key_fingerprint(key))
    return key


def session_limits(settings: Settings) -> LimitSettings:
    """The limit numbers of `settings` (issue 7: sessions per connection and
    per user, as OpenSSH `MaxSessions`; `MaxStartups`; the rest OpenSSH's
    defaults).

    Raises:
        ConfigError: A session limit below 1.
    """
    for var, value in (("SSHPANEL_MAX_SESSIONS_PER_CONNECTION", settings.max_sessions_per_connection),
                       ("SSHPANEL_MAX_SESSIONS_PER_USER", settings.max_sessions_per_user)):
        if value < 1:
            raise ConfigError(f"{var}={value} must be at least 1")
    return LimitSettings(startups=settings.max_startups,
                         sessions_per_connection=settings.max_sessions_per_connection,
                         sessions_per_user=settings.max_sessions_per_user)
