"""Provides `Principal`, the authenticated identity behind every request."""

from __future__ import annotations

from dataclasses import dataclass

from sshpanel.errors import PermissionDenied

ROLES = ("admin", "user")


@dataclass(frozen=True)
class Principal:
    """Who is acting, bound at authentication and never changed afterwards.

    Attributes:
        user_id: Database id of the user.
        name: User name (the SSH login name).
        role: `admin` or `user`.
        fingerprint: SHA256 fingerprint of the key that authenticated.
        source: Client address as `host:port`.
        actor: The admin acting on this user's containers on their behalf
            (`Admin.workspace_of`); empty when the user acts themselves. The
            audit log names the actor.
        certificate: How an SSH user certificate vouched for this login
            (`certificate key ID "..." serial N CA SHA256:...`, issue 24);
            empty for a registered key or a password. `fingerprint` is
            then that of the certified key.
    """

    user_id: int
    name: str
    role: str
    fingerprint: str = ""
    source: str = ""
    actor: str = ""
    certificate: str = ""

    @property
    def is_admin(self) -> bool:
        """True for the `admin` role."""
        return self.role == "admin"


def require_admin(principal: Principal) -> None:
    """Gate for admin-only entry points.

    Raises:
        PermissionDenied: The principal is not an admin.
    """
    if not principal.is_admin:
        raise PermissionDenied("permission denied: this command is for admins")
