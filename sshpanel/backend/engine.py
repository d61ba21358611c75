"""Provides `Engine`, the connection to the Docker engine, and the translation
of Docker SDK exceptions into `PanelError`s."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import docker
import docker.errors
import requests.exceptions

from sshpanel.backend.locks import FileLock, lock_path
from sshpanel.config import Settings
from sshpanel.errors import Conflict, EngineError, EngineUnavailable, NotFound

API_VERSION = "auto"
"""Negotiated: the CLI on the machine may be newer than the engine
(docs/PITFALLS.md "Docker")."""


class Engine:
    """A lazily opened, thread-safe Docker SDK client for one engine.

    Args:
        settings: `docker_host` names the engine; empty means the SDK's
            default (`DOCKER_HOST` or `/var/run/docker.sock`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self.names_lock = FileLock(lock_path(settings.data_dir, "names"))
        """Held while creating an engine-wide named object that Docker does not
        keep unique (networks: two concurrent creates make two of one name),
        by every thread of every panel process (`serve --workers`)."""

    @property
    def address(self) -> str:
        """The engine address used, for error messages."""
        return self.settings.docker_host or "unix:///var/run/docker.sock"

    @property
    def client(self) -> docker.DockerClient:
        """The Docker SDK client (opened on first use).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        with self._lock:
            if self._client is None:
                with translate_errors():
                    if self.settings.docker_host:
                        self._client = docker.DockerClient(base_url=self.settings.docker_host, version=API_VERSION)
                    else:
                        self._client = docker.from_env(version=API_VERSION)
            return self._client

    def ping(self) -> str:
        """Checks the engine answers.

        Returns:
            The engine's version string.

        Raises:
            EngineUnavailable: Naming the address tried.
        """
        try:
            with translate_errors():
                return str(self.client.version().get("Version", "?"))
        except EngineUnavailable:
            raise EngineUnavailable(f"Docker engine unreachable at {self.address}") from None

    def close(self) -> None:
        """Closes the client's connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


@contextlib.contextmanager
def translate_errors(not_found: str = "not found") -> Iterator[None]:
    """Translates Docker SDK and transport exceptions into `PanelError`s.

    Args:
        not_found: Message for a 404 (the caller's own wording, so that Docker's
            text, which may name other users' objects, never reaches a user).

    Raises:
        NotFound, Conflict, EngineError, EngineUnavailable.
    """
    try:
        yield
    except docker.errors.NotFound:
        raise NotFound(not_found) from None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"conflict: {_explanation(exc)}") from None
        raise EngineError(f"Docker refused: {_explanation(exc)}") from None
    except docker.errors.DockerException as exc:
        raise EngineUnavailable(f"Docker engine unavailable: {str(exc)[:200]}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError) as exc:
        raise EngineUnavailable(f"Docker engine unavailable: {type(exc).__name__}") from None


def _explanation(exc: docker.errors.APIError) -> str:
    """Returns Docker's one-line explanation of an API error."""
    text = exc.explanation if isinstance(exc.explanation, str) else str(exc)
    return text.strip().splitlines()[0][:300] if text else f"HTTP {exc.status_code}"
