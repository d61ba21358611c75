"""Provides the one error hierarchy of sshpanel.

Every layer translates its library's exceptions into these where the library
is called. The TUI shows them through one handler; exec commands print
`message` to stderr and exit with `exit_code`.
"""

from __future__ import annotations


class PanelError(Exception):
    """Base of every error a user or operator may see.

    Attributes:
        title: A short heading (a notification title).
        message: One line that says what went wrong and, where possible, what
            to do about it. Never contains secrets or other users' data.
        exit_code: Exit status for the command line (1 = failed action,
            2 = usage error).
    """

    title = "Error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(PanelError):
    """The request is malformed (bad flag, bad value); exit status 2."""

    title = "Invalid input"
    exit_code = 2


class InvalidValue(PanelError):
    """A value was rejected by validation (name, size, image, key text)."""

    title = "Invalid value"


class NotFound(PanelError):
    """The object does not exist *or* belongs to someone else.

    Both cases give the same message on purpose
    (docs/ARCHITECTURE.md invariant 1).
    """

    title = "Not found"


class Conflict(PanelError):
    """The object exists already (a duplicate name, a key of another user)."""

    title = "Conflict"


class PermissionDenied(PanelError):
    """The principal may not do this (an admin-only command)."""

    title = "Permission denied"


class QuotaExceeded(PanelError):
    """The request would take the user over one of their quotas."""

    title = "Quota exceeded"


class EngineUnavailable(PanelError):
    """The Docker engine could not be reached."""

    title = "Docker engine unavailable"


class EngineError(PanelError):
    """The Docker engine refused or failed an operation."""

    title = "Docker error"


class DatabaseUnavailable(PanelError):
    """The database server cannot be reached (down, restarting, or every
    pooled connection busy); the same request later may succeed.

    Attributes:
        reason: One line for the log, e.g. `connection refused
            (127.0.0.1:5432)`; users see only `message`.
    """

    title = "Database unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__("database unavailable, try again later")
        self.reason = reason


class ConfigError(PanelError):
    """A setting or an operator-supplied file is unusable."""

    title = "Configuration error"


class TimedOut(PanelError):
    """An action ran out of its time limit and was stopped (a provisioning run)."""

    title = "Timed out"
