"""Provides parsing and formatting of sizes, CPU counts and durations as the
docker CLI writes them (`64m`, `1g`, `0.5`)."""

from __future__ import annotations

import math
import re

from sshpanel.errors import InvalidValue

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Parses a size with docker's suffixes (`b`, `k`, `m`, `g`, `t`, base 1024).

    Args:
        text: e.g. `64m`, `1g`, `512MiB`, `1048576`.

    Returns:
        Bytes, > 0.

    Raises:
        InvalidValue: Not a positive size.
    """
    match = _SIZE.fullmatch(str(text).strip())
    if not match:
        raise InvalidValue(f"invalid size {str(text)[:32]!r}: use a number with an optional unit (e.g. 64m, 1g)")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value < 1 or value > 2**62:
        raise InvalidValue(f"invalid size {str(text)[:32]!r}: must be positive")
    return int(value)


def parse_cpus(text: str | float) -> float:
    """Parses a CPU count as `docker run --cpus` takes it (e.g. `0.5`).

    Returns:
        CPUs, a fraction > 0 and ≤ 1024, rounded to 1/1000.

    Raises:
        InvalidValue: Not a positive number.
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidValue(f"invalid CPU count {str(text)[:32]!r}: use a number such as 0.5 or 2") from None
    if not math.isfinite(value) or value < 0.01 or value > 1024:
        raise InvalidValue(f"invalid CPU count {str(text)[:32]!r}: must be between 0.01 and 1024")
    return round(value, 3)


def format_bytes(value: int) -> str:
    """Formats bytes the way `docker stats` does (`64MiB`, `1.5GiB`)."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.4g}{unit}"
        size /= 1024
    return f"{size:.4g}TiB"


def format_age(seconds: float) -> str:
    """Formats an age as `docker ps` does (`About a minute ago`, `3 hours ago`)."""
    seconds = max(0, int(seconds))
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return f"{seconds} seconds ago"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute ago"
    if minutes < 60:
        return f"{minutes} minutes ago"
    hours = minutes // 60
    if hours == 1:
        return "About an hour ago"
    if hours < 48:
        return f"{hours} hours ago"
    days = hours // 24
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Parses a duration as docker's `--since` takes it (Go style: `90s`,
    `30m`, `1h30m`), plus `d` for days.

    Returns:
        Seconds, > 0.

    Raises:
        InvalidValue: Not a duration.
    """
    value = str(text).strip().lower()
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise InvalidValue(f"invalid duration {str(text)[:32]!r}: use e.g. 90s, 30m, 1h30m or 2d")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds < 1e10:
        raise InvalidValue(f"invalid duration {str(text)[:32]!r}: must be positive")
    return seconds
