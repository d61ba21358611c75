"""Provides `translate_errors`, the one place Docker SDK and transport
exceptions become `PanelError`s, so that nothing above the engine seam
catches a `docker.errors` class."""

from __future__ import annotations

import contextlib
from typing import Iterator

import docker.errors
import requests.exceptions

from sshpanel.errors import Conflict, EngineError, EngineUnavailable, NotFound


@contextlib.contextmanager
def translate_errors(not_found: str | None = None) -> Iterator[None]:
    """Translates Docker SDK and transport exceptions into `PanelError`s.

    Every `Engine` method already runs under it; callers above the seam
    wrap an engine call in it only to give a 404 their own wording.

    Args:
        not_found: Message for a 404, also for a `NotFound` raised inside
            (an engine method's): the caller's own wording, so that Docker's
            text, which may name other users' objects, never reaches a user.
            None: `not found`, and a `NotFound` raised inside passes as is.

    Raises:
        NotFound: HTTP 404.
        Conflict: HTTP 409 (Docker's explanation, one line).
        EngineError: Any other refusal.
        EngineUnavailable: The engine does not answer or the connection broke.
    """
    try:
        yield
    except NotFound:
        if not_found is None:
            raise
        raise NotFound(not_found) from None
    except docker.errors.NotFound:
        raise NotFound(not_found or "not found") from None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"conflict: {explanation(exc)}") from None
        raise EngineError(f"Docker refused: {explanation(exc)}") from None
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"Docker engine unavailable: {str(exc)[:200]}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError) as exc:
        raise EngineUnavailable(f"Docker engine unavailable: {type(exc).__name__}") from None


def explanation(exc: docker.errors.APIError) -> str:
    """Returns Docker's one-line explanation of an API error (≤ 300
    characters; `HTTP <status>` when Docker gave none)."""
    text = exc.explanation if isinstance(exc.explanation, str) else str(exc)
    return text.strip().splitlines()[0][:300] if text else f"HTTP {exc.status_code}"
