"""Provides `Forwards`, where one user's forwarded connections (`ssh -L`,
`ssh -D`, `ssh -W`) may go: a port of one of their own running containers,
at its address on their own bridge network (a Compose project's
container: the project's network), and nowhere else (issue 25;
SECURITY.md "Forwarding reaches only your own containers").

The destination a client names is resolved exactly as every command
resolves a container (`Workspace.resolve`: the user's own records, by
short name or ID prefix), so a host address, `localhost`, a container IP,
another user's container and an unknown name are all the same `NotFound`.
Every forward is one audit entry, written when it is refused or when it
ends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sshpanel.access.policy import container_network
from sshpanel.access.spec import ContainerSpec
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import NotFound, PanelError

ACTION = "forward"
"""The audit log's action of a forwarded connection."""


@dataclass(frozen=True)
class ForwardTarget:
    """Where one forwarded connection goes.

    Attributes:
        name: The container's short name (as the user sees it).
        address: Its IP address on the user's own bridge network, or its
            Compose project's (text).
        port: The TCP port, 1-65535.
    """

    name: str
    address: str
    port: int

    @property
    def shown(self) -> str:
        """`name:port`, the audit entry's target."""
        return f"{self.name}:{self.port}"


class Forwards:
    """The forwarded connections of one user.

    Args:
        workspace: The user's workspace (its principal, store, engine and
            settings are used).

    Every method blocks (Docker and database calls): run it in a thread.
    """

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def target(self, host: str, port: int) -> ForwardTarget:
        """Resolves the destination a client asked for; a refusal is audited.

        Args:
            host: The host text of the `direct-tcpip` request (hostile):
                a short name or an ID prefix of one of the user's containers.
            port: The requested port (any number the client sent).

        Returns:
            The container's name, its address on its network (the user's,
            or its Compose project's), the port.

        Raises:
            NotFound: The port is not 1-65535, or `host` is not one of the
                user's containers, or that container is not running or has
                no address on the user's network; the message names only
                what the user typed (the same for someone else's container
                and for nothing at all).
            EngineUnavailable: The engine does not answer.
            DatabaseUnavailable: The database does not answer.
        """
        try:
            return self._target(host, port)
        except PanelError as exc:
            self.workspace.audit(ACTION, f"{host}:{port}", f"failed: {exc.message}")
            raise

    def _target(self, host: str, port: int) -> ForwardTarget:
        if not 1 <= port <= 65535:
            raise NotFound(f"no such port: {port}")
        row = self.workspace.resolve(host)
        with translate_errors(f"no such container: {row.name}"):
            data = self.workspace.engine.inspect_container(row.docker_id)
        if not (data.get("State") or {}).get("Running"):
            raise NotFound(f"container {row.name} is not running")
        settings = self.workspace.settings
        networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
        spec = ContainerSpec.from_json(row.spec)  # a Compose project's container is on the project's network
        entry = networks.get(container_network(spec, self.workspace.principal.name, settings.namespace)) or {}
        try:
            address = ipaddress.ip_address(entry.get("IPAddress") or "")
        except ValueError:
            raise NotFound(f"container {row.name} has no address on your network") from None
        if address.is_loopback or address.is_unspecified or address.is_multicast:
            raise NotFound(f"container {row.name} has no address on your network")
        return ForwardTarget(row.name, str(address), port)

    def finished(self, target: ForwardTarget, sent: int, received: int, seconds: float,
                 error: str | None = None) -> None:
        """Writes the audit entry of a forward that was opened, or that
        failed to connect to the container's port.

        Args:
            target: Where it went.
            sent: Bytes from the client to the container.
            received: Bytes from the container to the client.
            seconds: How long the forward was open.
            error: Why the connection to the container failed (None when
                it was made).
        """
        outcome = (f"failed: {error}" if error is not None
                   else f"ok: sent {sent} bytes, received {received} bytes, {seconds:.1f} s")
        self.workspace.audit(ACTION, target.shown, outcome)
