"""Provides `UserScope`, one user's session on one engine: the principal,
the store, the engine, the settings, the events listener and the audit
trail every action goes through.

It is built once per session (`sshpanel.ssh.services.SessionServices`) and
every per-user service takes it (docs/ARCHITECTURE.md "Backend services"):
a service never reaches into another service, only into its scope.
`Workspace`, the containers service, is the scope with the container
actions on it, so the services that act on containers take a `Workspace`
and the others a `UserScope`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from sshpanel.access.principal import Principal
from sshpanel.access.text import quoted
from sshpanel.backend.engine import Engine
from sshpanel.backend.engine.events import EngineEvents
from sshpanel.backend.user.secrets import Secrets
from sshpanel.config import Settings
from sshpanel.errors import PanelError
from sshpanel.store import Store


class UserScope:
    """One user's session on one engine.

    Args:
        principal: The authenticated user (and, for an admin acting as a
            user, the admin as `actor`).
        store: The database repository.
        engine: The Docker engine.
        settings: Server settings (namespace, default limits).
        events: The process's events listener, for `watch` and the shared
            container states; None (a command-line tool, a test) reads the
            engine directly.

    No method takes a user id: everything is for `principal`
    (docs/ARCHITECTURE.md "Conventions").
    """

    def __init__(
        self,
        principal: Principal,
        store: Store,
        engine: Engine,
        settings: Settings,
        events: EngineEvents | None = None,
    ) -> None:
        self.principal = principal
        self.store = store
        self.engine = engine
        self.settings = settings
        self.events = events

    def secrets(self) -> Secrets:
        """Returns the user's environment secrets (`sshpanel.backend.user.secrets`)."""
        return Secrets(self.store, self.settings, self.principal.user_id)

    @contextlib.contextmanager
    def audited(self, action: str, target: str) -> Iterator[None]:
        """Writes one audit entry with the outcome of the enclosed action.

        Every action a user can take goes through this
        (docs/ARCHITECTURE.md invariant 6):
        `with scope.audited("stop", ref): ...`; exceptions pass through.

        Args:
            action: What the user did (`stop`, `image.allow`).
            target: What they named (user text: shown escaped and bounded).
        """
        try:
            yield
        except PanelError as exc:
            self.audit(action, target, f"failed: {exc.message}")
            raise
        except Exception as exc:
            self.audit(action, target, f"error: {type(exc).__name__}")
            raise
        else:
            self.audit(action, target, "ok")

    def audit(self, action: str, target: str, outcome: str) -> None:
        """Writes one audit entry of this principal (an admin acting as the
        owner is written as `admin`, target `owner/target`).

        Args:
            action: What was done (`stop`, `forward`).
            target: What it was done to (user text: shown escaped and bounded).
            outcome: `ok`, `failed: REASON` or `error: KIND` (`audited` writes
                these; a caller that knows more, such as a forward's byte
                counts, writes its own).
        """
        p = self.principal
        actor, shown = (p.actor, f"{p.name}/{quoted(target)}") if p.actor else (p.name, quoted(target))
        self.store.add_audit(actor, p.fingerprint, p.source, action, shown, outcome)
