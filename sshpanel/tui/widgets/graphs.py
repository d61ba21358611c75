"""Provides text graphs drawn with block characters: `spark` (one line),
`bar_rows` (several lines, for the larger graphs) and `scale_top` (a fixed
scale that does not blow noise up to full height)."""

from __future__ import annotations

import math
from typing import Sequence

EIGHTHS = " ▁▂▃▄▅▆▇█"
"""A cell filled to 0/8 … 8/8 of its height."""


def _fit(values: Sequence[float], width: int) -> list[float | None]:
    """The last `width` values, right-aligned (None for the columns before
    the first value), each column the largest of the values it covers when
    there are more values than columns."""
    if width <= 0:
        return []
    values = list(values)
    if len(values) <= width:
        padding: list[float | None] = [None] * (width - len(values))
        return padding + list(values)
    step = len(values) / width
    return [max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]) for i in range(width)]


def scale_top(values: Sequence[float], floor: float) -> float:
    """The top of a graph's scale: the largest value, but at least `floor`
    (so that an idle container's noise stays near the bottom).

    Args:
        values: The values shown.
        floor: The smallest top, in the values' unit (must be > 0).

    Returns:
        A top > 0, in the values' unit.
    """
    return max([floor, *values])


def spark(values: Sequence[float], top: float, width: int) -> str:
    """Draws values as a one-line graph, newest on the right.

    Args:
        values: Oldest first, in the unit of `top`.
        top: The value drawn as a full cell (larger values are clipped).
        width: Cells; missing history is left blank on the left.

    Returns:
        `width` characters; a value above 0 is never drawn as blank.
    """
    cells = []
    for value in _fit(values, width):
        if value is None:
            cells.append(" ")
            continue
        level = 0 if top <= 0 else min(8, math.ceil(max(0.0, value) / top * 8))
        cells.append(EIGHTHS[max(level, 1)])  # the baseline shows a sample exists
    return "".join(cells)


def bar_rows(values: Sequence[float], top: float, width: int, height: int) -> list[str]:
    """Draws values as a graph `height` lines high, newest on the right.

    Args:
        values: Oldest first, in the unit of `top`.
        top: The value drawn as a full column.
        width: Columns.
        height: Lines.

    Returns:
        `height` strings of `width` characters, top line first; a value above
        0 is never drawn as blank, 0 is.
    """
    columns = []
    for value in _fit(values, width):
        if value is None or value <= 0 or top <= 0:
            columns.append(0)
        else:
            columns.append(max(1, min(8 * height, math.ceil(value / top * 8 * height))))
    rows = []
    for line in range(height - 1, -1, -1):
        base = line * 8
        rows.append("".join(EIGHTHS[min(8, max(0, filled - base))] for filled in columns))
    return rows
