"""Provides `StartAt`, where a dashboard session opens when the user asked
for one place (a deep link). Kept apart from the screens so that the exec
command line can name it without importing Textual."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StartAt:
    """Where a session opens, from a deep link (`ssh -t panel.host
    dashboard NAME`, `ssh -t panel.host logs --tui NAME`).

    Attributes:
        container: The container to select (short name or ID prefix, as
            every command takes it).
        logs: Open its log view at once, following it.
    """

    container: str
    logs: bool = False
