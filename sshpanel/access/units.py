"""Provides parsing and formatting of sizes, CPU counts, durations, ages and
times as the docker CLI writes them (`64m`, `1g`, `0.5`, `1h30m`,
`About a minute ago`). Pure functions: no I/O, no Textual."""

from __future__ import annotations

import datetime as dt
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


_DAY = 86400
_WEEK = 7 * _DAY
_MONTH = 30 * _DAY
_YEAR = 365 * _DAY
_COMPACT_UNITS = {"second": "s", "minute": "m", "hour": "h", "day": "d", "week": "w", "month": "mo", "year": "y"}


def _human_duration(seconds: float) -> tuple[int, str, bool]:
    """Splits a duration as go-units `HumanDuration` does (what `docker ps`
    words its CREATED and STATUS columns with).

    Seconds and minutes are truncated; hours, days, weeks, months (30 days)
    and years (365 days) are rounded to the nearest whole one.

    Args:
        seconds: The duration, seconds (negative counts as 0).

    Returns:
        `(count, unit, about)`: count 0 means less than a second; `about` is
        True for docker's "About a minute" (60-119 s) and "About an hour"
        (60-89 minutes).
    """
    whole = int(seconds)
    if whole < 1:
        return 0, "second", False
    if whole < 60:
        return whole, "second", False
    minutes = whole // 60
    if minutes < 60:
        return minutes, "minute", minutes == 1
    hours = int(seconds / 3600 + 0.5)
    if hours < 48:
        return hours, "hour", hours == 1
    for unit, size, below in (("day", _DAY, 2 * _WEEK), ("week", _WEEK, 2 * _MONTH), ("month", _MONTH, 2 * _YEAR)):
        if seconds < below:
            return int(seconds / size + 0.5), unit, False
    return int(seconds / _YEAR + 0.5), "year", False


def format_age(seconds: float, compact: bool = False) -> str:
    """Formats how long ago something happened, as `docker ps` does.

    Args:
        seconds: The age, seconds (negative counts as 0).
        compact: Abbreviate for narrow table columns (`42s ago`, `5m ago`,
            `3mo ago`), with the same thresholds as docker's wording.

    Returns:
        Docker's wording: `Less than a second ago`, `1 second ago`,
        `42 seconds ago`, `About a minute ago`, `5 minutes ago`,
        `About an hour ago`, `3 hours ago`, `4 days ago`, `3 weeks ago`,
        `5 months ago`, `2 years ago`; compact: `just now`, `1s ago` ...
        `2y ago`.
    """
    if compact:
        count, unit, _ = _human_duration(seconds)
        return "just now" if count == 0 else f"{count}{_COMPACT_UNITS[unit]} ago"
    return f"{human_duration(seconds)} ago"


def human_duration(seconds: float) -> str:
    """Words a duration as go-units `HumanDuration` does (`docker ps`:
    `Up 5 minutes`, `Exited (0) 2 hours ago`).

    Args:
        seconds: The duration, seconds (negative counts as 0).

    Returns:
        `Less than a second`, `1 second`, `42 seconds`, `About a minute`,
        `5 minutes`, `About an hour`, `3 hours`, `4 days`, `3 weeks`,
        `5 months`, `2 years`.
    """
    count, unit, about = _human_duration(seconds)
    if count == 0:
        return "Less than a second"
    if about:
        return f"About {'an' if unit == 'hour' else 'a'} {unit}"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def format_uptime(seconds: float) -> str:
    """Formats a host's uptime as `uptime` does (`3 days, 4:05`, `1 day, 0:10`, `0:42`).

    Args:
        seconds: Seconds since boot.
    """
    days, rest = divmod(int(seconds), _DAY)
    clock = f"{rest // 3600}:{rest % 3600 // 60:02d}"
    return f"{days} day{'' if days == 1 else 's'}, {clock}" if days else clock


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


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Parses a `--since` value as docker takes it (`docker logs`, `docker
    events`).

    Args:
        text: A duration back from `now` (`10m`, `1h30m`, `90s`, `2d`), an
            RFC 3339 / ISO 8601 time (`2024-05-01T12:00:00Z`, `2024-05-01`;
            UTC unless it carries an offset; digits past microseconds are
            dropped), or seconds since the epoch (`1699999999.5`).
        now: The current time, timezone-aware (default: the clock).

    Returns:
        The time, timezone-aware UTC.

    Raises:
        InvalidValue: None of these forms, or a time out of range.
    """
    text = str(text).strip()
    now = dt.datetime.now(dt.timezone.utc) if now is None else now
    try:
        return (now - dt.timedelta(seconds=parse_duration(text))).astimezone(dt.timezone.utc)
    except (InvalidValue, OverflowError):
        pass
    try:
        epoch = float(text)
    except ValueError:
        epoch = None
    try:
        if epoch is not None:
            return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
        moment = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise InvalidValue(
            f"invalid --since {text[:40]!r}: use a duration (10m, 1h30m), a time (2024-05-01T12:00:00Z) "
            "or a Unix timestamp"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
