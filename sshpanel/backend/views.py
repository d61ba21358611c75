"""Provides the plain records the backend returns to the TUI and commands."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerView:
    """One of the user's containers as the engine reports it now.

    Attributes:
        id: Full Docker container ID (64 hex digits).
        name: The user's short name.
        image: Image reference as the user gave it.
        state: Docker state (`created`, `running`, `exited`, `paused`, ...).
        status: Docker's human status (`Up 3 minutes`, `Exited (0) 2 hours ago`).
        ports: Published ports as `docker ps` prints them.
        created: Creation time, UTC.
        memory: Memory limit, bytes.
        cpus: CPU limit, in CPUs.
        owner: Owning user's name.
    """

    id: str
    name: str
    image: str
    state: str
    status: str
    ports: str
    created: dt.datetime
    memory: int
    cpus: float
    owner: str

    @property
    def short_id(self) -> str:
        """The 12-digit ID docker prints."""
        return self.id[:12]

    @property
    def running(self) -> bool:
        """True while the container runs (or is paused/restarting)."""
        return self.state in ("running", "paused", "restarting")


@dataclass(frozen=True)
class ImageView:
    """An image a user may create containers from.

    Attributes:
        reference: `repository:tag` (or the short ID when untagged).
        id: Full image ID.
        size: Size in bytes.
    """

    reference: str
    id: str
    size: int
