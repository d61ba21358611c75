"""Provides the Textual dashboard each SSH session with a terminal gets.

The TUI talks only to backend services, from thread workers; it never imports
docker, peewee, asyncssh or the store (import-linter checks this). `PanelApp`
is imported on first use (PEP 562), so that the exec command line can name
`sshpanel.tui.start.StartAt` without loading Textual.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PanelApp"]


def __getattr__(name: str) -> Any:
    """Imports `PanelApp` when it is first asked for."""
    if name == "PanelApp":
        from sshpanel.tui.app import PanelApp

        return PanelApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
