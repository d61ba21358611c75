"""Provides the one way a screen runs a blocking backend call: `PanelScreen`
and `PanelModal` run it in a Textual thread worker, and its outcome comes
back as a `CallDone` or `CallFailed` message on the screen's own queue."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any, Callable, TypeVar, cast

from textual.dom import DOMNode
from textual.message import Message
from textual.screen import ModalScreen, Screen, ScreenResultType
from textual.worker import Worker, active_worker, get_current_worker

from sshpanel.errors import PanelError

T = TypeVar("T")

log = logging.getLogger(__name__)


def show_error(node: DOMNode, error: BaseException) -> None:
    """Shows an error as a notification: the one place errors reach the user.

    A `PanelError` shows its title and message; anything else is logged
    with its traceback and shown without details (they may hold secrets).

    Args:
        node: Any node of the session's app (a screen, a widget).
        error: The exception a backend call raised.
    """
    if isinstance(error, PanelError):
        node.notify(error.message, title=error.title, severity="error", markup=False)
        return
    log.error("unexpected error in the TUI", exc_info=error)
    node.notify(
        f"Something went wrong ({type(error).__name__}); the error was logged.",
        title="Unexpected error",
        severity="error",
        markup=False,
    )


class CallDone(Message, bubble=False):
    """A backend call returned; the screen that started it runs `then`.

    Args:
        call: The call's name (the worker's group).
        worker: The worker that ran it; a result of a cancelled worker is dropped.
        result: What the call returned.
        then: What the screen does with it, on the event loop.
    """

    def __init__(self, call: str, worker: Worker[None], result: Any, then: Callable[[Any], object]) -> None:
        super().__init__()
        self.call = call
        """The call's name."""
        self.worker = worker
        """The worker that ran the call."""
        self.result = result
        """What the call returned."""
        self.then = then
        """The continuation, run on the event loop."""


class CallFailed(Message, bubble=False):
    """A backend call raised; the screen that started it runs `failed`, by
    default `show_error`.

    Args:
        call: The call's name (the worker's group).
        worker: The worker that ran it; an error of a cancelled worker is dropped.
        error: The exception.
        failed: The screen's own handler, or None for `show_error`.
    """

    def __init__(self, call: str, worker: Worker[None], error: Exception,
                 failed: Callable[[Exception], object] | None) -> None:
        super().__init__()
        self.call = call
        """The call's name."""
        self.worker = worker
        """The worker that ran the call."""
        self.error = error
        """What the call raised."""
        self.failed = failed
        """The screen's own handler (None: the app's one error handler)."""


def _forget_worker() -> None:
    """Clears Textual's `active_worker` in this pool thread.

    Textual's thread workers set the context variable in the executor
    thread's own context rather than a copy, so each pool thread would keep
    its last worker, and through it the whole app, alive after the session
    ended. The variable is typed as never None, hence the cast.
    """
    cast("ContextVar[Worker[Any] | None]", active_worker).set(None)


class PanelScreen(Screen[ScreenResultType]):
    """A screen that runs backend calls: the base class of every screen
    that talks to the backend (`PanelModal` for the modal ones).

    Each call runs in a thread worker of this screen (a worker dies with its
    screen); its result or error is posted back to the screen as a
    `CallDone` / `CallFailed` message and handled by its continuation.
    """

    def call_backend(
        self,
        call: Callable[[], T],
        then: Callable[[T], object] | None = None,
        *,
        failed: Callable[[Exception], object] | None = None,
        group: str = "backend",
        exclusive: bool = False,
    ) -> Worker[None]:
        """Runs `call()` in a thread worker; `then(result)` or `failed(error)`
        runs later on the event loop.

        Args:
            call: The blocking backend call (Docker, database).
            then: Called on the event loop with the result.
            failed: Called on the event loop with the exception; by default
                it is shown by `show_error`.
            group: The call's name and worker group; with `exclusive`, an
                older call of the same group still running is cancelled (its
                outcome dropped).
            exclusive: See `group`.

        Returns:
            The worker.
        """
        continuation: Callable[[Any], object] = then or _ignore

        def work() -> None:
            worker = get_current_worker()
            try:
                message: Message = CallDone(group, worker, call(), continuation)
            except Exception as exc:
                message = CallFailed(group, worker, exc, failed)
            finally:
                _forget_worker()
            if not worker.is_cancelled:
                self.post_message(message)

        return self.run_worker(work, name=group, group=group, exclusive=exclusive, thread=True,
                               exit_on_error=False)

    def show_backend_error(self, error: BaseException) -> None:
        """Shows an error through the app's one error handler (`show_error`).

        Args:
            error: The exception a backend call raised.
        """
        show_error(self, error)

    def on_call_done(self, message: CallDone) -> None:
        """Runs the continuation of a call that returned."""
        if not message.worker.is_cancelled:
            message.then(message.result)

    def on_call_failed(self, message: CallFailed) -> None:
        """Runs the error handler of a call that raised."""
        if not message.worker.is_cancelled:
            (message.failed or self.show_backend_error)(message.error)


class PanelModal(PanelScreen[ScreenResultType], ModalScreen[ScreenResultType]):
    """A modal screen (a form, a question) that runs backend calls like
    `PanelScreen`."""


def _ignore(result: object) -> None:
    """The default continuation: nothing to do with the result."""
