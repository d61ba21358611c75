"""Provides the Textual dashboard each SSH session with a terminal gets.

The TUI talks only to backend services, from thread workers; it never imports
docker, peewee, asyncssh or the store (import-linter checks this).
"""

from sshpanel.tui.app import PanelApp

__all__ = ["PanelApp"]
