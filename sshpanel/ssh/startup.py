"""Provides the start-up work of a panel, done once before any session
(`prepare_panel`: by the one serving process, or by the supervisor of
`serve --workers`), the engine's user-namespace check
(`check_unprivileged`) and the limit numbers of the settings
(`session_limits`)."""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from sshpanel.backend.admin.accounts import Accounts
from sshpanel.backend.engine import Engine
from sshpanel.backend.admin.host import engine_unprivileged
from sshpanel.backend.engine.recovery import recover_interrupted_creates
from sshpanel.backend.user.secrets import check_key
from sshpanel.config import Settings
from sshpanel.errors import ConfigError
from sshpanel.ssh.hostkeys import host_key_fingerprint, load_or_create_host_key
from sshpanel.ssh.limits import LimitSettings
from sshpanel.store import Store

log = logging.getLogger("sshpanel.ssh")


async def prepare_panel(settings: Settings, store: Store, accounts: Accounts, engine: Engine) -> asyncssh.SSHKey:
    """The start-up work done once per panel, before any session: the
    initial admin, the secret key check (`backend.secrets.check_key`), the
    engine check (reachable; unprivileged when the
    settings require it), the crash recovery and the host key (created
    once).

    Returns:
        The host key.

    Raises:
        ConfigError: Host key unusable, a secret key that does not decrypt
            the database's secrets, or an engine that does not remap user
            namespaces while `require_unprivileged` is set.
        EngineUnavailable: The Docker engine does not answer.
    """
    await asyncio.to_thread(check_key, store, settings)
    created_admin = await asyncio.to_thread(accounts.ensure_initial_admin)
    if created_admin:
        log.info("created admin user %r from SSHPANEL_INITIAL_ADMIN_KEYS", created_admin)
    elif not await asyncio.to_thread(store.users):
        log.warning("no users yet: add one with `sshpanel user add NAME --key ~/.ssh/id_ed25519.pub --admin`")
    version = await asyncio.to_thread(engine.ping)
    log.info("Docker engine %s at %s", version, engine.address)
    unprivileged = await asyncio.to_thread(engine_unprivileged, engine)
    if unprivileged:
        log.info("Unprivileged: true (the engine remaps user namespaces: root in a container is an "
                 "unprivileged uid on the host)")
    else:
        log.warning("Unprivileged: false (the engine does not remap user namespaces: root in a container is "
                    "root on the host)")
    check_unprivileged(settings, unprivileged, engine.address)
    # Before any session can create: a killed process may have left
    # half-written records (issue 7, crash recovery).
    await asyncio.to_thread(recover_interrupted_creates, store, engine, settings)
    key, created = await asyncio.to_thread(load_or_create_host_key, settings.host_keys_dir)
    log.info("%s host key %s", "created" if created else "loaded", host_key_fingerprint(key))
    return key


def check_unprivileged(settings: Settings, unprivileged: bool, address: str) -> None:
    """Refuses an engine whose container root is host root when the settings
    require unprivileged containers (`SSHPANEL_REQUIRE_UNPRIVILEGED=1`,
    issue 21).

    Args:
        settings: `require_unprivileged` is read.
        unprivileged: The engine remaps user namespaces
            (`backend.host.remaps_user_namespaces`).
        address: The engine's address, for the message.

    Raises:
        ConfigError: Required but not the case; the message says how to
            turn remapping on.
    """
    if settings.require_unprivileged and not unprivileged:
        raise ConfigError(
            f"SSHPANEL_REQUIRE_UNPRIVILEGED is set but the Docker engine at {address} does not remap user "
            'namespaces (root in a container would be root on the host): set "userns-remap": "default" in '
            "/etc/docker/daemon.json and restart dockerd (README, \"Unprivileged containers\")"
        )


def session_limits(settings: Settings) -> LimitSettings:
    """The limit numbers of `settings` (issue 7: sessions per connection and
    per user, as OpenSSH `MaxSessions`; `MaxStartups`; forwarded
    connections per user, issue 25; the rest OpenSSH's defaults).

    Raises:
        ConfigError: A session limit below 1.
    """
    for var, value in (("SSHPANEL_MAX_SESSIONS_PER_CONNECTION", settings.max_sessions_per_connection),
                       ("SSHPANEL_MAX_SESSIONS_PER_USER", settings.max_sessions_per_user),
                       ("SSHPANEL_MAX_FORWARDS_PER_USER", settings.max_forwards_per_user)):
        if value < 1:
            raise ConfigError(f"{var}={value} must be at least 1")
    return LimitSettings(startups=settings.max_startups,
                         sessions_per_connection=settings.max_sessions_per_connection,
                         sessions_per_user=settings.max_sessions_per_user,
                         forwards_per_user=settings.max_forwards_per_user)
