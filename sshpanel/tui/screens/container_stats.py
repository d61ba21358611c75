"""Provides `ContainerStatsScreen`, one container's CPU and memory as larger
graphs over the last minutes, with the keys that act on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header

from sshpanel.backend.engine.samples import ContainerStats
from sshpanel.backend.views import ContainerView
from sshpanel.tui.screens.container_screen import ContainerScreen
from sshpanel.tui.widgets.container_graphs import ContainerGraphs, history_span
from sshpanel.tui.widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from sshpanel.tui.services import PanelServices


class ContainerStatsScreen(ContainerScreen):
    """Graphs of one container, live from the shared collector (this screen
    subscribes while it is shown, which costs the engine nothing more), first
    filled with the samples the collector kept of the last minutes.

    Args:
        services: The session's services.
        view: The container.
    """

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("o", "open_shell", "Shell"),
        Binding("l", "open_logs", "Logs"),
        Binding("p", "provision_container", "Provision"),
        Binding("h", "open_history", "History"),
    ]

    def __init__(self, services: PanelServices, view: ContainerView) -> None:
        super().__init__(services)
        self.services: PanelServices = services
        """The session's services."""
        self.view = view
        """The container shown."""

    def compose(self) -> ComposeResult:
        """Header, the graphs, the footer."""
        yield Header()
        yield ContainerGraphs(self.services.stats, self.view.id, history_span(self.services.stats),
                              id="container-graphs")
        yield KeyFooter()

    def on_mount(self) -> None:
        """Names the container and fetches the samples already kept."""
        self.title = "sshpanel"
        self.sub_title = f"{self.view.name} · {self.view.image}"
        stats = self.services.stats
        if stats is not None:
            docker_id = self.view.id
            self.call_backend(lambda: stats.history(docker_id), self._prefill, group="stats-history")

    def _prefill(self, samples: list[ContainerStats]) -> None:
        self.query_one(ContainerGraphs).prefill(self.view.id, samples)

    def current_container(self) -> ContainerView | None:
        """The keys act on the container shown."""
        return self.view

    def history_scope(self) -> str | None:
        """`h` shows this container's history."""
        return self.view.name

    def action_close(self) -> None:
        """Back to the dashboard."""
        self.app.pop_screen()
