"""Provides experimental patches the helper server (`panel_server.py
--patch NAME`) applies before it starts, to measure a direction of issue 8
before anyone changes the code: `run.py --patch NAME` runs every figure
against a patched server. Not used in production; each patch names the
module where the real change would go. Directions that were measured and
kept are in the code now (benchmarks/RESULTS.md lists them).

- `no-poll`: no timed dashboard refresh at all (Docker events only), to
  see what the once-a-minute refresh costs.
"""

from __future__ import annotations

from typing import Callable


def no_poll() -> None:
    """Would go in sshpanel/tui/screens/dashboard.py (`QUIET_REFRESH`)."""
    import sshpanel.tui.screens.dashboard as dashboard

    dashboard.QUIET_REFRESH = 24 * 3600.0


PATCHES: dict[str, Callable[[], None]] = {
    "no-poll": no_poll,
}
"""Patch name → the function that applies it."""
