"""Provides `pty_size`, the one reading of a client's terminal size: what a
pty request or a window change says, clamped to what terminals have (a
client may ask for 10000×10000, which would make every frame of a dashboard
hundreds of megabytes; issue 24)."""

from __future__ import annotations

DEFAULT_SIZE = (80, 24)
"""Columns and rows of a session whose client sent no size."""
MAX_COLUMNS = 1000
MAX_ROWS = 500


def pty_size(width: int, height: int) -> tuple[int, int]:
    """Returns (columns, rows) to use for a size a client sent.

    Args:
        width: Columns the client sent (0 or less: none).
        height: Rows the client sent (0 or less: none).

    Returns:
        `DEFAULT_SIZE` when either is missing; else each clamped to
        `MAX_COLUMNS` × `MAX_ROWS`.
    """
    if width <= 0 or height <= 0:
        return DEFAULT_SIZE
    return min(width, MAX_COLUMNS), min(height, MAX_ROWS)
