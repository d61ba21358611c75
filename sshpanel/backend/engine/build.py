"""Provides `stream_build`, one engine build of a prepared context under the
build-safety limits of issue 6 (network, memory, hard CPU limit, a deadline
that really stops the build) and `BuildOutput`, its capped log."""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import IO, Any, Callable

import docker
import docker.errors
import requests
import requests.exceptions
from docker.utils.json_stream import json_stream

from sshpanel.backend.engine.errors import translate_errors
from sshpanel.config import Settings
from sshpanel.errors import EngineError, EngineUnavailable, TimedOut

MAX_OUTPUT = 1024 * 1024
"""Bytes of build output streamed live to the user; the rest is dropped
(the last `TAIL_LINES` are kept and replayed after a failure)."""
TAIL_LINES = 20
CPU_SHARES = 512
CPU_PERIOD = 100_000
"""CFS period of a build's `RUN` containers, microseconds."""
BUILD_CPUS = 1.0
"""Hard CPU limit of a build's `RUN` containers, in CPUs (`cpuquota` /
`cpuperiod` of the engine's build API), on top of the relative shares."""
TRUNCATED = "... (output truncated)"


class BuildOutput:
    """The log of one build: lines go to `on_line` until `MAX_OUTPUT` bytes,
    then a single `TRUNCATED` notice; the last `TAIL_LINES` are always kept.

    Args:
        on_line: Called with each shown line (from the building thread).
    """

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        """The last lines of the log, shown or not."""
        self.shown = 0
        """Bytes of output counted so far (shown or dropped)."""

    @property
    def truncated(self) -> bool:
        """True once lines were dropped because of the cap."""
        return self.shown > MAX_OUTPUT

    def add(self, line: str) -> None:
        """Keeps `line` in the tail and shows it while under the cap."""
        was_truncated = self.truncated
        self.tail.append(line)
        self.shown += len(line) + 1
        if not self.truncated:
            self.on_line(line)
        elif not was_truncated:
            self.on_line(TRUNCATED)

    def replay_tail(self) -> None:
        """After a failure whose live output was cut: shows the tail, so the
        end of the log (where the error is) is never lost."""
        if self.truncated:
            self.on_line(f"... the last {len(self.tail)} lines of the build log:")
            for line in self.tail:
                self.on_line(line)


def stream_build(settings: Settings, options: dict[str, Any], context: IO[bytes], output: BuildOutput,
                 cgroup_parent: str) -> str:
    """Runs the engine's classic build of `context` and returns the image ID.

    The build runs on a client of its own with `pull=False`, the network
    `settings.build_network` (`none` or `bridge`, never `host`), memory
    `settings.build_memory` (swap not added), `BUILD_CPUS` as a hard CPU
    limit and the cgroup parent `cgroup_parent`. At `settings.build_timeout` seconds a watchdog shuts the
    connection's socket down: the engine cancels a build whose client went
    away (it kills and removes the running `RUN` container), and the reader
    wakes up at once. Before the engine answers, the socket timeout (the
    time left) bounds each wait.

    Args:
        settings: `build_network`, `build_memory`, `build_timeout`.
        options: The SDK client's connection arguments
            (`Engine.client_options`).
        context: A tar file with the Dockerfile at its top.
        output: Where the log goes.
        cgroup_parent: The cgroup every `RUN` container is placed under
            (`sshpanel.backend.pipeline.cgroup`: it holds the pids limit).

    Returns:
        The built image's ID (`sha256:...`).

    Raises:
        TimedOut: The build ran longer than `settings.build_timeout`.
        EngineError: The build failed (the engine's error line) or produced
            no image.
        EngineUnavailable: The engine could not be reached or the connection
            broke.
    """
    deadline = time.monotonic() + settings.build_timeout
    watchdog = _Watchdog()
    timer = threading.Timer(settings.build_timeout, watchdog.fire)
    timer.start()
    api = None
    try:
        with translate_errors():
            api = docker.APIClient(timeout=settings.build_timeout, **options)
            image_id, error = _read(_post(api, settings, context, deadline, watchdog, cgroup_parent), output, watchdog)
    except (EngineUnavailable, requests.exceptions.RequestException, OSError, ValueError):
        # ValueError: a JSON line cut by the watchdog. A socket timeout may win
        # the race against the watchdog at the deadline: that is a timeout too.
        if watchdog.fired.is_set() or time.monotonic() >= deadline:
            raise _timed_out(settings) from None
        raise EngineUnavailable("the connection to the Docker engine broke during the build") from None
    finally:
        timer.cancel()
        if api is not None:
            api.close()
    if watchdog.fired.is_set():
        raise _timed_out(settings)
    if error or not image_id:
        raise EngineError(f"the build failed: {error or 'no image was produced'}")
    return image_id


class _Watchdog:
    """Stops a build at its deadline by shutting its socket down (from the
    timer thread; `shutdown` wakes a `recv` blocked in another thread)."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None

    def watch(self, response: requests.Response) -> None:
        """Sets the response to cut; cuts it at once when the deadline passed."""
        with self._lock:
            self._response = response
        if self.fired.is_set():
            self._cut()

    def fire(self) -> None:
        """The deadline passed."""
        self.fired.set()
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            connection = self._response.raw.connection if self._response is not None else None
            sock = getattr(connection, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _post(api: docker.APIClient, settings: Settings, context: IO[bytes], deadline: float,
          watchdog: _Watchdog, cgroup_parent: str) -> requests.Response:
    """Sends the build request (the SDK's `build()` refuses `cpuquota`, so the
    request is made here with the engine's documented query parameters)."""
    params = {
        "rm": "1", "forcerm": "1", "pull": "0", "networkmode": settings.build_network,
        "memory": settings.build_memory, "memswap": settings.build_memory, "cpushares": CPU_SHARES,
        "cpuperiod": CPU_PERIOD, "cpuquota": int(CPU_PERIOD * BUILD_CPUS), "cgroupparent": cgroup_parent,
    }
    left = max(deadline - time.monotonic(), 0.1)
    response = api.post(api._url("/build"), params=params, data=context,
                        headers={"Content-Type": "application/tar"}, stream=True, timeout=left)
    watchdog.watch(response)
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as exc:
        raise docker.errors.create_api_error_from_http_exception(exc) from None
    return response


def _read(response: requests.Response, output: BuildOutput, watchdog: _Watchdog) -> tuple[str, str]:
    """Reads the build's JSON stream into `output`; returns (image ID, the
    engine's error line), stopping early when the watchdog fired."""
    image_id = ""
    error = ""
    for chunk in json_stream(response.iter_content(chunk_size=None, decode_unicode=False)):
        if watchdog.fired.is_set():
            break
        if not isinstance(chunk, dict):
            continue
        text = str(chunk.get("stream") or chunk.get("status") or "")
        if chunk.get("error"):
            error = str(chunk["error"]).strip()
            text = error + "\n"
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            image_id = str(aux["ID"])
        for line in text.splitlines():
            output.add(line)
    return image_id, error


def _timed_out(settings: Settings) -> TimedOut:
    return TimedOut(f"the build timed out after {settings.build_timeout:g} s and was stopped")
