"""Provides `Scope`, what a per-user service needs of the session it serves:
the principal, the store, the engine, the settings and the audit trail.

`Workspace` is the implementation; the services below it (image policy and
rules, quota updates) take a `Scope` so that they never import it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from sshpanel.access.principal import Principal
from sshpanel.backend.engine import Engine
from sshpanel.config import Settings
from sshpanel.store import Store


class Scope(Protocol):
    """One user's session on one engine.

    Attributes:
        principal: The authenticated user.
        store: The database repository.
        engine: The Docker engine.
        settings: Server settings (namespace, default limits).
    """

    principal: Principal
    store: Store
    engine: Engine
    settings: Settings

    def audited(self, action: str, target: str) -> AbstractContextManager[None]:
        """Writes one audit entry with the outcome of the enclosed action
        (`with scope.audited("stop", ref): ...`); exceptions pass through.

        Args:
            action: What the user did (`update`, `image.allow`).
            target: What they named (user text, echoed safely).
        """
        ...
