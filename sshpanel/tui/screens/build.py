"""Provides `BuildScreen`: one image build from a folder of the home
directory with its log live and a progress bar per Dockerfile step, then
`d` deploys the new image as the container of the same name (issue 6)."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Header, ProgressBar, RichLog, Static

from sshpanel.backend.pipeline.builds import BuildResult, Builder
from sshpanel.backend.pipeline.deploy import Deployer, DeployResult
from sshpanel.errors import PanelError
from sshpanel.tui.screens.calls import PanelScreen
from sshpanel.tui.widgets.key_footer import KeyFooter
from sshpanel.tui.widgets.log_view import drawn

if TYPE_CHECKING:
    from sshpanel.backend.user.workspace import Workspace

STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
"""The classic builder's step line (`Step 2/5 : COPY . /www`)."""
LOG_LINES = 5000


def image_name(folder: str) -> str:
    """The image name a folder builds as: its last part, lowercased, with
    characters an image name cannot hold replaced by `-`."""
    name = re.sub(r"[^a-z0-9_.-]", "-", posixpath.basename(folder.rstrip("/")).lower())
    return name.lstrip("._-")[:64] or "app"


class BuildScreen(PanelScreen[None]):
    """Builds `folder` as the image `<namespace>/<user>/<name>:<n>`.

    The build runs in a thread worker (minutes, at most the build time
    limit); each output line is posted to the screen. Leaving is refused
    while it runs (the engine would keep building anyway).

    Args:
        workspace: The user's workspace (the builder and deployer use it).
        folder: The folder, relative to the home directory.
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("d", "deploy", "Deploy"),
    ]

    class Line(Message):
        """One line of output (posted from the worker thread)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, workspace: Workspace, folder: str) -> None:
        super().__init__()
        self.workspace = workspace
        """The user's workspace; only ever called from thread workers."""
        self.folder = folder
        """The folder built."""
        self.name_ = image_name(folder)
        """The image name (and the container name of a deployment)."""
        self.running = False
        """True while a build or deployment runs."""
        self.result: BuildResult | None = None
        """The outcome of a successful build."""

    def compose(self) -> ComposeResult:
        """Header, status line, the step bar, the log, the footer."""
        yield Header()
        yield Static("", id="build-status", markup=False)
        yield ProgressBar(total=None, show_eta=False, id="build-progress")
        yield Static("", id="build-step", markup=False)
        yield RichLog(max_lines=LOG_LINES, id="build-log", wrap=False, markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        """Starts the build."""
        self.title = "sshpanel"
        self.sub_title = f"Build {drawn(self.folder)}"
        self.running = True
        self._status(f"Building ~/{self.folder} as {self.name_}…", "bold")
        self.call_backend(self._build, self._built, failed=self._failed, group="build")

    def _build(self) -> BuildResult:
        """Runs in the worker thread."""
        builder = Builder(self.workspace)
        builder.repository(self.name_)
        context = builder.context_from_folder(self.folder)
        try:
            return builder.run(self.name_, context, self._post)
        finally:
            context.close()

    def _post(self, text: str) -> None:
        """Runs in the worker thread."""
        try:
            self.post_message(self.Line(text))
        except RuntimeError:  # the app is gone: nobody is watching
            pass

    def on_build_screen_line(self, message: Line) -> None:
        """Appends the line; a step line advances the bar."""
        if not message.text.strip():
            return
        self.query_one(RichLog).write(Text(drawn(message.text)))
        step = STEP.match(message.text)
        if step:
            number, total = int(step.group(1)), int(step.group(2))
            self.query_one(ProgressBar).update(total=total, progress=number - 1)
            self.query_one("#build-step", Static).update(f"Step {number} of {total}: {drawn(step.group(3)[:200])}")

    def _built(self, result: BuildResult) -> None:
        self.running = False
        self.result = result
        bar = self.query_one(ProgressBar)
        bar.update(total=bar.total or 1, progress=bar.total or 1)
        self._status(f"✓ Built {result.tag} in {result.seconds:.1f}s — press d to deploy it as {self.name_}",
                     "bold green")
        self.refresh_bindings()

    def _failed(self, error: Exception) -> None:
        self.running = False
        message = error.message if isinstance(error, PanelError) else "the build failed"
        self._status(f"✗ {message}", "bold red")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`d` only after a successful build, and not while deploying."""
        if action == "deploy":
            return self.result is not None and not self.running
        return True

    def action_deploy(self) -> None:
        """Deploys the new image as the container of the same name."""
        if self.result is None or self.running:
            return
        self.running = True
        self.refresh_bindings()
        self._status(f"Deploying {self.result.tag} as {self.name_}…", "bold")
        deployer = Deployer(self.workspace)
        tag = self.result.tag.rpartition(":")[2]
        self.call_backend(lambda: deployer.deploy(self.name_, tag, self._post), self._deployed,
                          failed=self._failed, group="build")

    def _deployed(self, result: DeployResult) -> None:
        self.running = False
        self.refresh_bindings()
        self._status(("✓ " if result.ok else "✗ ") + result.message, "bold green" if result.ok else "bold red")

    def action_close(self) -> None:
        """Back; refused while the build or deployment runs."""
        if self.running:
            self.notify("The build is still running: wait for it to end.", severity="warning")
            return
        self.app.pop_screen()

    def _status(self, text: str, style: str) -> None:
        self.query_one("#build-status", Static).update(Text(drawn(text), style=style))

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return str(self.query_one("#build-status", Static).content)
