"""Provides `BackendCalls`, how the admin screens and the forms run blocking
backend calls: in thread workers, with results back on the event loop."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from textual.worker import Worker, WorkerState, active_worker

T = TypeVar("T")

WORKER_NAME = "backend-call"
"""Name of the workers `call_backend` starts (others are left alone)."""


def in_worker_thread(call: Callable[[], T]) -> T:
    """Runs a blocking call inside a thread worker, then forgets the worker.

    Textual's thread workers set the `active_worker` context variable in the
    executor thread's own context rather than a copy, so each pool thread
    would keep its last worker, and through it the whole app, alive after the
    session ended. Clearing the variable when done lets the app be freed.

    Args:
        call: The blocking call.

    Returns:
        What `call` returns.
    """
    try:
        return call()
    finally:
        active_worker.set(None)  # type: ignore[arg-type]


def _run(call: Callable[[], T], then: Callable[[T], Any], failed: Callable[[Exception], Any]) -> Callable[[], Any]:
    """Runs in the worker thread: makes the call, returns what the loop runs next.

    Catching here (rather than letting the worker fail) keeps the error and
    the callback that handles it together.
    """
    try:
        result = in_worker_thread(call)
    except Exception as exc:
        return functools.partial(failed, exc)
    return functools.partial(then, result)


class BackendCalls:
    """Mixin for screens and modals: `call_backend` runs a blocking call in a
    thread worker, then its callback on the event loop.

    Errors go to the app's one error handler (`PanelApp.show_error`) unless
    the caller handles them itself. Mix it in before the Textual base class.
    """

    def call_backend(
        self,
        call: Callable[[], T],
        then: Callable[[T], Any] | None = None,
        *,
        failed: Callable[[Exception], Any] | None = None,
        group: str = "backend",
        exclusive: bool = False,
    ) -> Worker[Callable[[], Any]]:
        """Runs `call()` in a thread worker.

        Args:
            call: The blocking backend call (Docker, database).
            then: Called on the event loop with the result.
            failed: Called on the event loop with the exception; by default
                the error is shown by `PanelApp.show_error`.
            group: Worker group; with `exclusive`, an older call of the same
                group that is still running is cancelled (its result dropped).
            exclusive: See `group`.

        Returns:
            The worker.
        """
        work = functools.partial(_run, call, then or _ignore, failed or self.show_backend_error)
        return self.run_worker(  # type: ignore[attr-defined]
            work, name=WORKER_NAME, group=group, exclusive=exclusive, thread=True, exit_on_error=False
        )

    def show_backend_error(self, error: BaseException) -> None:
        """Shows an error through the app's one error handler.

        Args:
            error: The exception a backend call raised.
        """
        self.app.show_error(error)  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Runs the continuation of a finished backend call on the event loop."""
        worker = event.worker
        if worker.name != WORKER_NAME:
            return
        if event.state is WorkerState.SUCCESS and worker.result is not None:
            worker.result()
        elif event.state is WorkerState.ERROR and worker.error is not None:
            self.show_backend_error(worker.error)


def _ignore(result: object) -> None:
    """The default continuation: nothing to do with the result."""
