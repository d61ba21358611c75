"""Provides the quota check (count, memory, CPUs) of a user's containers."""

from __future__ import annotations

from dataclasses import dataclass

from sshpanel.access.units import format_bytes
from sshpanel.errors import QuotaExceeded


@dataclass(frozen=True)
class Usage:
    """What a user holds or asks for.

    Attributes:
        containers: Number of containers.
        memory: Memory limits summed, bytes.
        cpus: CPU limits summed, in CPUs.
    """

    containers: int
    memory: int
    cpus: float


def check_quota(limit: Usage, used: Usage, extra: Usage) -> None:
    """Checks that `used + extra` stays within `limit`.

    Call inside the same transaction that counted `used` and records `extra`
    (DESIGN.md invariant 3).

    Raises:
        QuotaExceeded: Names the quota and by how much it would be exceeded.
    """
    if extra.containers and used.containers + extra.containers > limit.containers:
        raise QuotaExceeded(
            f"container quota exceeded: {used.containers} of {limit.containers} in use"
        )
    if used.memory + extra.memory > limit.memory:
        over = used.memory + extra.memory - limit.memory
        raise QuotaExceeded(
            f"memory quota exceeded by {format_bytes(over)}: "
            f"{format_bytes(used.memory)} of {format_bytes(limit.memory)} in use, "
            f"{format_bytes(extra.memory)} requested"
        )
    if used.cpus + extra.cpus > limit.cpus + 1e-9:
        over = used.cpus + extra.cpus - limit.cpus
        raise QuotaExceeded(
            f"CPU quota exceeded by {over:.2f}: {used.cpus:.2f} of {limit.cpus:.2f} CPUs in use, "
            f"{extra.cpus:.2f} requested"
        )
