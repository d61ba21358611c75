"""Provides `visible` and `quoted`, the one rule for showing text that a user
or a container controls on a terminal (docs/ARCHITECTURE.md invariant 8)."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")
"""C0 controls but tab, newline and the carriage return of a CRLF line end,
DEL, and the C1 controls (U+0080-U+009F, which terminals that honour 8-bit
controls read as escape sequences: U+009B is CSI, U+009D OSC, U+0090 DCS,
U+009F APC)."""


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def visible(text: str) -> str:
    """Returns text that cannot drive the terminal it is written to.

    Every C0 control character other than tab and newline (a carriage
    return counts as part of a newline only right before one: CRLF), DEL and
    every C1 control character becomes a visible escape (`\\x1b`, `\\x9b`,
    `\\x0d`), so no escape sequence (OSC 0 title, OSC 8 hyperlink, OSC 52
    clipboard, CSI screen and mode changes, DCS, APC) survives; everything
    else, including non-ASCII text, is kept. Idempotent. The rule applies to
    every string a user or a container controls before it reaches a
    terminal, in exec output and in the TUI alike; data (the log file,
    `logs` without a terminal, JSON output, stored script bodies) keeps its
    bytes.

    Args:
        text: Any text.

    Returns:
        The text with each such character replaced by its 4-character escape.
    """
    return _CONTROL.sub(_escape, text)


def quoted(text: object, limit: int = 80) -> str:
    """Returns user text to echo inside a one-line message (an error, an
    audit target): as is when it is printable and at most `limit` characters,
    else the Python `repr` of its first `limit` characters (quoted, every
    control character escaped).

    Args:
        text: The user's text (converted with `str`).
        limit: Most characters shown.

    Returns:
        One line without control characters.
    """
    text = str(text)
    return text if len(text) <= limit and text.isprintable() else repr(text[:limit])
