"""Provides `SessionServices`, what the sessions of one panel process are
served with: settings, store, engine, events listener, stats collector,
passwords, and the way to close a user's sessions.

`PanelServer` builds it once and hands it to the dashboard, the exec
command line and SFTP, which therefore never import the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sshpanel.access.principal import Principal
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.backend.admin.passwords import Passwords
from sshpanel.backend.engine.stats import StatsCollector
from sshpanel.backend.user.workspace import Workspace
from sshpanel.config import Settings
from sshpanel.store import Store


@dataclass(frozen=True)
class SessionServices:
    """The services every session of the process shares.

    Attributes:
        settings: Server settings.
        store: The database repository.
        engine: The Docker engine.
        events: The engine's events listener (dashboards follow it).
        stats: The shared CPU and memory sampler (`stats`, the dashboard).
        passwords: Password hashing and checks (`passwd`).
        close_user_sessions: Disconnects every connection of a user
            `(name, reason)` and returns how many; call it on the event
            loop's thread.
    """

    settings: Settings
    store: Store
    engine: Engine
    events: EngineEvents
    stats: StatsCollector
    passwords: Passwords
    close_user_sessions: Callable[[str, str], int]

    def workspace(self, principal: Principal) -> Workspace:
        """Returns the Workspace of an authenticated principal.

        Args:
            principal: The user the session belongs to.
        """
        return Workspace(principal, self.store, self.engine, self.settings, self.events)
