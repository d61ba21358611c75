"""Provides experimental patches the helper server (`panel_server.py
--patch NAME`) applies before it starts, to measure a direction of issue 8
before anyone changes the code: `run.py --patch NAME` runs every figure
against a patched server. Not used in production; each patch names the
module where the real change would go. Directions that were measured and
kept are in the code now (benchmarks/RESULTS.md lists them).

- `no-poll`: no timed dashboard refresh at all (Docker events only), to
  see what the once-a-minute refresh costs.
- `reuse-port`: the SSH listener binds with `SO_REUSEPORT`, so that several
  server processes share one port (the kernel spreads connections), as a
  `serve --workers N` would (sshpanel/ssh/server.py).
"""

from __future__ import annotations

from typing import Callable


def no_poll() -> None:
    """Would go in sshpanel/tui/screens/dashboard.py (`QUIET_REFRESH`)."""
    import sshpanel.tui.screens.dashboard as dashboard

    dashboard.QUIET_REFRESH = 24 * 3600.0


def reuse_port() -> None:
    """Would go in sshpanel/ssh/server.py (`asyncssh.create_server(..., reuse_port=True)`)."""
    import functools

    import asyncssh

    asyncssh.create_server = functools.partial(asyncssh.create_server, reuse_port=True)


PATCHES: dict[str, Callable[[], None]] = {
    "no-poll": no_poll,
    "reuse-port": reuse_port,
}
"""Patch name → the function that applies it."""
