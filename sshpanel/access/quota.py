"""Provides the quota checks of a user's containers: count, memory, CPUs,
and the host port range of published ports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from sshpanel.access.spec import PortMapping
from sshpanel.access.units import format_bytes
from sshpanel.errors import Conflict, InvalidValue, QuotaExceeded

_PORT_RANGE = re.compile(r"(\d{1,5})-(\d{1,5})")


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
    (docs/ARCHITECTURE.md invariant 3).

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


def parse_port_range(text: str) -> tuple[int, int] | None:
    """Parses a host port range `LOW-HIGH` (`8000-8099`); `none` or empty
    text means no range (the user may publish nothing).

    Returns:
        (low, high) inclusive, or None.

    Raises:
        InvalidValue: Not a range within 1-65535 with LOW <= HIGH.
    """
    text = str(text).strip()
    if text.lower() in ("", "none"):
        return None
    match = _PORT_RANGE.fullmatch(text)
    if not match:
        raise InvalidValue(f"invalid port range {text[:32]!r}: use LOW-HIGH (e.g. 8000-8099) or none")
    low, high = int(match.group(1)), int(match.group(2))
    if not 1 <= low <= high <= 65535:
        raise InvalidValue(f"invalid port range {text[:32]!r}: need 1 <= LOW <= HIGH <= 65535")
    return low, high


def check_ports(
    ports: Iterable[PortMapping],
    allowed: tuple[int, int] | None,
    in_use: Mapping[tuple[int, str], str],
) -> None:
    """Checks that every published host port is inside the user's range and
    not published by another live container.

    Call inside the transaction that records the container
    (docs/ARCHITECTURE.md invariant 3), so two creates cannot take the same
    port.

    Args:
        ports: The requested mappings.
        allowed: The user's inclusive host port range, or None (no ports).
        in_use: (host port, protocol) -> who publishes it, as it may be
            shown to this user ("your container web", "another user").

    Raises:
        QuotaExceeded: No range, or a port outside it (names the range).
        Conflict: The host port is already published.
    """
    for mapping in ports:
        if allowed is None:
            raise QuotaExceeded("port quota exceeded: you may not publish ports (no port range is set for you)")
        low, high = allowed
        if not low <= mapping.host <= high:
            raise QuotaExceeded(f"port quota exceeded: host port {mapping.host} is outside your range {low}-{high}")
        holder = in_use.get((mapping.host, mapping.protocol))
        if holder is not None:
            raise Conflict(f"host port {mapping.host}/{mapping.protocol} is already published by {holder}")


def quota_columns(
    containers: int | None, memory: int | None, cpus: float | None, pids: int | None, ports: str | None
) -> dict[str, object]:
    """Validates quota values an admin sets; returns the `User` columns to
    set (None arguments are left out).

    Args:
        containers: Maximum number of containers (0-100000).
        memory: Total memory, bytes (0 to 2**62).
        cpus: Total CPUs (0-4096).
        pids: Process limit per container (1-4194304).
        ports: `LOW-HIGH` or `none` (see `parse_port_range`).

    Raises:
        InvalidValue: A value out of range.
    """
    fields: dict[str, object] = {}
    if containers is not None:
        if not 0 <= containers <= 100_000:
            raise InvalidValue("invalid container quota: use 0-100000")
        fields["quota_containers"] = containers
    if memory is not None:
        if not 0 <= memory <= 2**62:
            raise InvalidValue(f"invalid memory quota {format_bytes(memory)}")
        fields["quota_memory"] = memory
    if cpus is not None:
        if not 0 <= cpus <= 4096:
            raise InvalidValue("invalid CPU quota: use 0-4096")
        fields["quota_cpus"] = round(cpus, 3)
    if pids is not None:
        if not 1 <= pids <= 4_194_304:
            raise InvalidValue("invalid pids quota: use 1-4194304")
        fields["quota_pids"] = pids
    if ports is not None:
        allowed = parse_port_range(ports)
        fields["quota_port_low"], fields["quota_port_high"] = allowed if allowed else (None, None)
    return fields
