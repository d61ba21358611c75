"""Provides `Engine`, the one seam to a Docker engine: every Docker call the
panel makes is a typed method here, run under `translate_errors`, so the
rest of the backend never sees the SDK, its client objects or its
exceptions (docs/ARCHITECTURE.md "The engine seam").

Return values are the engine's own JSON objects (dicts with Docker's keys,
as the Engine API documents them, https://docs.docker.com/engine/api/v1.41/):
the panel mirrors docker's output, so it keeps docker's shapes.
"""

from __future__ import annotations

import threading
from typing import IO, Any, Iterator

import docker
import docker.errors
import docker.models.containers
import docker.utils
import requests.exceptions
from docker.types import CancellableStream

from sshpanel.backend.engine.build import BuildOutput, stream_build
from sshpanel.backend.engine.errors import translate_errors
from sshpanel.backend.engine.exec import ExecStream
from sshpanel.backend.locks import FileLock, lock_path
from sshpanel.config import Settings
from sshpanel.errors import EngineUnavailable

API_VERSION = "auto"
"""Negotiated: the CLI on the machine may be newer than the engine
(docs/PITFALLS.md "Docker")."""

Json = dict[str, Any]
"""One JSON object of the Engine API."""


class Engine:
    """A lazily opened, thread-safe connection to one Docker engine.

    Args:
        settings: `docker_host` names the engine; empty means the SDK's
            default (`DOCKER_HOST` or `/var/run/docker.sock`).
        pool_size: HTTP connections kept open at once (the SDK's
            `max_pool_size`; a thread beyond them waits for one).

    Every method blocks on the engine: call it in a thread. Every method
    raises `NotFound` (404), `Conflict` (409), `EngineError` (another
    refusal) or `EngineUnavailable` (no answer), see `translate_errors`.
    """

    def __init__(self, settings: Settings, pool_size: int = 10) -> None:
        self.settings = settings
        self.pool_size = pool_size
        self._docker: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self.names_lock = FileLock(lock_path(settings.data_dir, "names"))
        """Held while creating an engine-wide named object that Docker does not
        keep unique (networks: two concurrent creates make two of one name),
        by every thread of every panel process (`serve --workers`)."""

    # Connection ------------------------------------------------------------

    @property
    def address(self) -> str:
        """The engine address used, for error messages."""
        return self.settings.docker_host or "unix:///var/run/docker.sock"

    def pool(self, size: int) -> "Engine":
        """Returns another connection to the same engine with a pool of its
        own of `size` connections (the stats sampler's concurrent requests
        must not take the sessions' connections)."""
        return Engine(self.settings, pool_size=size)

    def client_options(self) -> dict[str, Any]:
        """The SDK client's connection arguments: `base_url` from
        `settings.docker_host`, else the SDK's reading of `DOCKER_HOST` and
        `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, and the negotiated version."""
        options = ({"base_url": self.settings.docker_host} if self.settings.docker_host
                   else docker.utils.kwargs_from_env())
        return dict(options, version=API_VERSION)

    def _sdk(self) -> docker.DockerClient:
        """The SDK's client (opened on first use).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        with self._lock:
            if self._docker is None:
                with translate_errors():
                    self._docker = docker.DockerClient(max_pool_size=self.pool_size, **self.client_options())
            return self._docker

    def _client(self) -> docker.APIClient:
        """The SDK's low-level client (see `_sdk`)."""
        return self._sdk().api

    def ping(self) -> str:
        """Checks the engine answers.

        Returns:
            The engine's version string.

        Raises:
            EngineUnavailable: Naming the address tried.
        """
        try:
            return str(self.version().get("Version", "?"))
        except EngineUnavailable:
            raise EngineUnavailable(f"Docker engine unreachable at {self.address}") from None

    def close(self) -> None:
        """Closes the connection pool (the next call opens it again)."""
        with self._lock:
            if self._docker is not None:
                self._docker.close()
                self._docker = None

    # System ----------------------------------------------------------------

    def info(self) -> Json:
        """`GET /info` (`docker info`)."""
        with translate_errors():
            return self._client().info()

    def version(self) -> Json:
        """`GET /version` (`docker version`)."""
        with translate_errors():
            return self._client().version()

    def df(self) -> Json:
        """`GET /system/df` (`docker system df -v`): sizes of images,
        containers' writable layers (`SizeRw`, bytes) and volumes. The engine
        walks every container's files: seconds on a busy engine."""
        with translate_errors():
            return self._client().df()

    def events(self, since: str, filters: dict[str, Any]) -> Iterator[Json]:
        """`GET /events` from `since` (epoch seconds with nanoseconds, as
        text), decoded; the iterator ends or raises when the engine goes away.

        The returned iterator has `close()` (the SDK's `CancellableStream`),
        which ends it from another thread.
        """
        with translate_errors():
            return self._client().events(since=since, decode=True, filters=filters)

    # Containers ------------------------------------------------------------

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Json]:
        """`GET /containers/json` (`docker ps [-a]`), filtered as the API
        documents (`{"label": "k=v", "status": "running", "id": ...}`)."""
        with translate_errors():
            return self._client().containers(all=all, filters=filters)

    def inspect_container(self, container_id: str) -> Json:
        """`GET /containers/{id}/json` (`docker inspect`)."""
        with translate_errors():
            return self._client().inspect_container(container_id)

    def create_container(self, arguments: dict[str, Any], network: str, aliases: list[str]) -> str:
        """Creates a container; returns its full ID.

        Args:
            arguments: The keyword arguments of the SDK's
                `containers.create` (`sshpanel.access.policy.create_arguments`
                makes them), `network` among them.
                A `stop_timeout` among them (seconds, Compose's
                `stop_grace_period`) is sent as the API's `StopTimeout`,
                which the SDK's `containers.create` does not take.
            network: The network to attach it to at creation.
            aliases: Its DNS names on that network.
        """
        with translate_errors():
            client = self._sdk()
            arguments = dict(arguments, networking_config={
                network: client.api.create_endpoint_config(aliases=aliases)})
            stop_timeout = arguments.pop("stop_timeout", None)
            if stop_timeout is None:
                return str(client.containers.create(**arguments).id)
            # The SDK's own translation of `containers.create` arguments, then
            # the low-level create, which takes `stop_timeout`.
            create = docker.models.containers._create_container_args(
                dict(arguments, version=client.api._version))
            return str(client.api.create_container(**create, stop_timeout=stop_timeout)["Id"])

    def start(self, container_id: str) -> None:
        """`POST /containers/{id}/start`."""
        with translate_errors():
            self._client().start(container_id)

    def stop(self, container_id: str, timeout: int = 10) -> None:
        """`POST /containers/{id}/stop`: SIGTERM, then SIGKILL after
        `timeout` seconds."""
        with translate_errors():
            self._client().stop(container_id, timeout=timeout)

    def restart(self, container_id: str, timeout: int = 10) -> None:
        """`POST /containers/{id}/restart` (stop with `timeout` seconds' grace,
        then start)."""
        with translate_errors():
            self._client().restart(container_id, timeout=timeout)

    def remove_container(self, container_id: str, force: bool = False) -> None:
        """`DELETE /containers/{id}?v=1`: also its anonymous volumes; `force`
        kills a running one first."""
        with translate_errors():
            self._client().remove_container(container_id, v=True, force=force)

    def rename(self, container_id: str, name: str) -> None:
        """`POST /containers/{id}/rename` (the engine-wide Docker name)."""
        with translate_errors():
            self._client().rename(container_id, name)

    def update_container(self, container_id: str, body: Json) -> None:
        """`POST /containers/{id}/update` with `body` as the docker CLI sends
        it (the SDK's `update_container` cannot send `NanoCpus`, and Docker
        refuses `CpuQuota` on a container created with `NanoCpus`)."""
        with translate_errors():
            api = self._client()
            api._result(api._post_json(api._url("/containers/{0}/update", container_id), data=body), True)

    def put_archive(self, container_id: str, path: str, data: bytes) -> None:
        """`PUT /containers/{id}/archive`: unpacks the tar `data` at `path`."""
        with translate_errors():
            self._client().put_archive(container_id, path, data)

    def logs_tail(self, container_id: str, lines: int) -> str:
        """The last `lines` lines of a container's output, both streams,
        decoded as UTF-8 (invalid bytes replaced)."""
        with translate_errors():
            data = self._client().logs(container_id, stdout=True, stderr=True, tail=lines)
        return data.decode("utf-8", "replace")

    def open_logs(self, container_id: str, params: dict[str, Any]) -> tuple[bool, requests.Response]:
        """Opens `GET /containers/{id}/logs` as a stream with no read timeout
        (a quiet container may write nothing for hours).

        Args:
            params: The query (`stdout`, `stderr`, `timestamps`, `follow`,
                `tail`, `since`), as the API documents it.

        Returns:
            (whether the container has a TTY — its stream is then raw bytes,
            else frames for `FrameDecoder` — and the stream of byte chunks,
            the SDK's `CancellableStream`: its `close()` shuts the socket
            down, which ends a read blocked in another thread at once; the
            caller closes it). A plain `Response.close()` would instead wait
            for that read, i.e. for the container's next line (hours, for a
            quiet one), on whatever thread called it.
        """
        with translate_errors():
            api = self._client()
            tty = bool(api.inspect_container(container_id).get("Config", {}).get("Tty"))
            response = api.get(api._url("/containers/{0}/logs", container_id), params=params, stream=True,
                               timeout=None)
            try:
                response.raise_for_status()
            except requests.exceptions.HTTPError as exc:
                response.close()
                raise docker.errors.create_api_error_from_http_exception(exc) from None
        return tty, CancellableStream(response.iter_content(chunk_size=None), response)

    def stats(self, container_id: str) -> Json:
        """One `GET /containers/{id}/stats?stream=0&one-shot=1` sample."""
        with translate_errors():
            return self._client().stats(container_id, stream=False, one_shot=True)

    # Exec ------------------------------------------------------------------

    def exec_attach(self, container_id: str, argv: list[str], tty: bool = False, stdin: bool = False,
                    user: str = "", environment: list[str] | None = None) -> ExecStream:
        """Starts a process in a running container, attached: the stream
        carries its output, input and terminal size; the caller closes it.

        Args:
            argv: The command (not run through a shell).
            tty: Give it a terminal.
            stdin: Attach its standard input.
            user: `USER[:GROUP]` inside the container; empty: the image's.
            environment: `KEY=VALUE` entries added to its environment.
        """
        with translate_errors():
            api = self._client()
            created = api.exec_create(container_id, argv, stdout=True, stderr=True, stdin=stdin, tty=tty,
                                      privileged=False, user=user, environment=environment or None)
            raw = api.exec_start(created["Id"], socket=True, tty=tty)
        try:
            return ExecStream(self, created["Id"], raw, tty)
        except BaseException:
            raw.close()
            raise

    def exec_run(self, container_id: str, argv: list[str], user: str = "0") -> bytes:
        """Runs a process in a running container to its end, as root by
        default (the panel's own helpers: a signal sender, a clean-up);
        returns its output, both streams."""
        with translate_errors():
            api = self._client()
            created = api.exec_create(container_id, argv, user=user, privileged=False)
            return bytes(api.exec_start(created["Id"]) or b"")

    def exec_inspect(self, exec_id: str) -> Json:
        """`GET /exec/{id}/json`: `Running`, `ExitCode`, `Pid`, `ContainerID`."""
        with translate_errors():
            return self._client().exec_inspect(exec_id)

    def exec_resize(self, exec_id: str, width: int, height: int) -> None:
        """`POST /exec/{id}/resize` (columns, rows)."""
        with translate_errors():
            self._client().exec_resize(exec_id, height=height, width=width)

    # Images ----------------------------------------------------------------

    def images(self, name: str | None = None, all: bool = False) -> list[Json]:
        """`GET /images/json` (`docker image ls [NAME]`)."""
        with translate_errors():
            return self._client().images(name=name, all=all)

    def inspect_image(self, reference: str) -> Json:
        """`GET /images/{name}/json`."""
        with translate_errors():
            return self._client().inspect_image(reference)

    def image_history(self, image_id: str) -> list[Json]:
        """`GET /images/{name}/history`: its layers, newest first."""
        with translate_errors():
            return self._client().history(image_id)

    def remove_image(self, reference: str) -> list[Json]:
        """`DELETE /images/{name}` (`docker image rm`): Docker's
        `Untagged`/`Deleted` entries."""
        with translate_errors():
            return self._client().remove_image(reference, noprune=False) or []

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        """`POST /images/{id}/tag`."""
        with translate_errors():
            self._client().tag(image_id, repository, tag)

    def build(self, context: IO[bytes], output: BuildOutput, cgroup_parent: str) -> str:
        """Builds a tar `context` with the classic builder under the panel's
        build limits; see `sshpanel.backend.engine.build.stream_build` (its
        arguments, return value and errors)."""
        return stream_build(self.settings, self.client_options(), context, output, cgroup_parent)

    # Volumes ---------------------------------------------------------------

    def volumes(self, filters: dict[str, Any] | None = None) -> list[Json]:
        """`GET /volumes` (`docker volume ls`)."""
        with translate_errors():
            return self._client().volumes(filters=filters).get("Volumes") or []

    def inspect_volume(self, name: str) -> Json:
        """`GET /volumes/{name}`."""
        with translate_errors():
            return self._client().inspect_volume(name)

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        """`POST /volumes/create` with the `local` driver."""
        with translate_errors():
            self._client().create_volume(name, driver="local", labels=labels)

    def remove_volume(self, name: str) -> None:
        """`DELETE /volumes/{name}` (409 while a container uses it)."""
        with translate_errors():
            self._client().remove_volume(name)

    # Networks --------------------------------------------------------------

    def networks(self, names: list[str] | None = None, filters: dict[str, Any] | None = None) -> list[Json]:
        """`GET /networks`; Docker's `name` filter also matches parts of
        names: compare `Name` exactly."""
        with translate_errors():
            return self._client().networks(names=names, filters=filters)

    def create_network(self, name: str, labels: dict[str, str]) -> None:
        """`POST /networks/create`: a `bridge` network."""
        with translate_errors():
            self._client().create_network(name, driver="bridge", labels=labels, check_duplicate=True)

    def remove_network(self, network_id: str) -> None:
        """`DELETE /networks/{id}`."""
        with translate_errors():
            self._client().remove_network(network_id)
