"""Provides `ProvisionScreen`, one provisioning run with its output live, and
`ScriptPickerModal`, which asks which script to run."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Header, OptionList, Static
from textual.widgets.option_list import Option

from sshpanel.access.units import format_bytes
from sshpanel.backend.user.provision import ProvisionResult
from sshpanel.errors import PanelError, TimedOut
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.screens.confirm import ConfirmModal
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import drawn
from sshpanel.tui.widgets.output_log import OutputInbox, OutputLog

if TYPE_CHECKING:
    from sshpanel.backend.user.provision import Provisioner

LOG_LINES = 5000
"""Output lines the screen keeps (the history keeps the last 20 anyway)."""


class ScriptPickerModal(ModalScreen[str | None]):
    """Asks which script to run on a container; dismisses with its name or None.

    Args:
        container: The container's name (for the title).
        scripts: The user's script names.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, container: str, scripts: Sequence[str]) -> None:
        super().__init__()
        self.container = container
        """The container the script will run in."""
        self.scripts = list(scripts)
        """The script names offered."""

    def compose(self) -> ComposeResult:
        """A list of the scripts in a dialog."""
        with Vertical(id="picker-dialog", classes="dialog") as dialog:
            dialog.border_title = f"Provision {self.container} with"
            dialog.border_subtitle = "Enter run · Esc cancel"
            yield OptionList(*(Option(Text(drawn(name)), id=name) for name in self.scripts), id="picker-list")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        """Closes without running anything."""
        self.dismiss(None)


class ProvisionScreen(PanelScreen[None]):
    """Runs one script in one container and shows its output as it comes.

    The run happens in a thread worker (`Provisioner.run` blocks until the
    script ends); its output goes through an `OutputInbox`, so a script that
    writes fast never waits for the screen, and the screen keeps only the
    last `LOG_LINES` lines. `x` cancels the run (the script is killed and the
    run recorded as a failure); leaving while it runs asks first and cancels
    it, and so does the end of the session.

    Args:
        provisioner: The user's scripts and runs.
        container: The container's short name.
        script: The script's name.
    """

    BINDINGS = [
        Binding("x", "cancel_run", "Cancel run"),
        Binding("escape", "close", "Back"),
    ]

    class OutputArrived(Message):
        """The run wrote output (posted from the worker thread, coalesced)."""

    def __init__(self, provisioner: Provisioner, container: str, script: str) -> None:
        super().__init__()
        self.provisioner = provisioner
        """The user's scripts and runs; only ever called from thread workers."""
        self.container = container
        """The container's short name."""
        self.script = script
        """The script's name."""
        self.running = False
        """True while the script runs."""
        self.result: ProvisionResult | None = None
        """The outcome, once the script ended normally."""
        self._cancel = threading.Event()
        self._inbox = OutputInbox()

    def compose(self) -> ComposeResult:
        """Header, a status line, the output, the footer."""
        yield Header()
        yield Static("", id="provision-status", markup=False)
        yield OutputLog(LOG_LINES, id="provision-log")
        yield KeyFooter()

    def on_mount(self) -> None:
        """Starts the run."""
        self.title = "sshpanel"
        self.sub_title = f"Provision {self.container}"
        self._set_status(f"Running {self.script} in {self.container}…", "bold")
        self.running = True
        self.call_backend(self._run, self._finished, failed=self._failed, group="provision")

    def on_unmount(self) -> None:
        """Kills a script still running: nobody would see its output."""
        self._cancel.set()

    def _run(self) -> ProvisionResult:
        """Runs in the worker thread."""
        return self.provisioner.run(self.container, script=self.script, on_output=self._receive, cancel=self._cancel)

    def _receive(self, stream: int, data: bytes) -> None:
        """Runs in the worker thread: queues output, wakes the screen once."""
        if self._inbox.put(stream, data):
            try:
                self.post_message(self.OutputArrived())
            except RuntimeError:  # the app's loop is gone: nobody is watching
                pass

    def on_provision_screen_output_arrived(self, message: OutputArrived) -> None:
        """Shows what arrived since the last time."""
        self._drain()

    def _drain(self) -> None:
        chunks, dropped = self._inbox.take()
        log = self.query_one(OutputLog)
        if dropped:
            log.write_line(f"[… {format_bytes(dropped)} of output skipped …]", style="dim")
        for stream, data in chunks:
            log.feed(stream, data)

    def _finished(self, result: ProvisionResult) -> None:
        self.running = False
        self.result = result
        self._end_output()
        outcome = "finished" if result.ok else "failed"
        text = f"{self.script} {outcome} in {self.container}: exit {result.exit_code} after {result.duration:.1f}s"
        self._set_status(("✓ " if result.ok else "✗ ") + text, "bold green" if result.ok else "bold red")
        self.notify(text, severity="information" if result.ok else "error", markup=False)

    def _failed(self, error: Exception) -> None:
        self.running = False
        self._end_output()
        cancelled = isinstance(error, TimedOut) and self._cancel.is_set()
        message = error.message if isinstance(error, PanelError) else "the run failed"
        self._set_status(f"✗ {self.script} in {self.container}: {message}", "bold red")
        if not cancelled:
            self.show_backend_error(error)

    def _end_output(self) -> None:
        self.refresh_bindings()  # `x` goes from the footer
        self._drain()
        self.query_one(OutputLog).flush()

    def _set_status(self, text: str, style: str) -> None:
        self.query_one("#provision-status", Static).update(Text(drawn(text), style=style))

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return str(self.query_one("#provision-status", Static).content)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`x` is offered only while the script runs."""
        if action == "cancel_run":
            return self.running
        return True

    def action_cancel_run(self) -> None:
        """Kills the script (it is recorded as a failed run)."""
        if self.running and not self._cancel.is_set():
            self._cancel.set()
            self._set_status(f"Cancelling {self.script} in {self.container}…", "bold yellow")

    def action_close(self) -> None:
        """Back to where the run was started; asks first while it runs."""
        if not self.running:
            self.app.pop_screen()
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.action_cancel_run()
                self.app.pop_screen()

        question = f"{self.script} is still running in {self.container}. Cancel it and leave?"
        self.app.push_screen(ConfirmModal(question, "Cancel run"), callback=answered)
