"""Provides `HostScreen`, the host overview refreshed live while it is shown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from textual import events
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.timer import Timer

from sshpanel.backend.admin.host import HostView
from sshpanel.tui.screens.admin_base import AdminSectionScreen
from sshpanel.tui.widgets.host_overview import HostOverview

if TYPE_CHECKING:
    from sshpanel.backend.admin.admin import Admin

REFRESH_INTERVAL = 2.0
"""Seconds between two measurements while the screen is shown."""


class HostScreen(AdminSectionScreen):
    """CPU per core and total, memory, swap, the Docker data root's disk,
    load, uptime, engine version, containers and images.

    Measures every `REFRESH_INTERVAL` seconds, only while the screen is the
    active one: the timer pauses when another screen (a dialog, the command
    palette) covers it, and goes away with the screen.
    """

    LABEL = "Host"

    def __init__(self, admin: Admin, sections: Sequence[type[AdminSectionScreen]]) -> None:
        super().__init__(admin, sections)
        self._timer: Timer | None = None

    def compose_section(self) -> ComposeResult:
        """The overview, scrollable (many cores make it tall)."""
        with VerticalScroll(id="host-scroll"):
            yield HostOverview(id="host-overview")

    def on_mount(self) -> None:
        """Prepares the timer; `on_screen_resume` starts it."""
        super().on_mount()
        self._timer = self.set_interval(REFRESH_INTERVAL, self.refresh_host, pause=True)

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        """Measures at once and every few seconds from now on."""
        self.refresh_host()
        if self._timer is not None:
            self._timer.resume()

    def on_screen_suspend(self, event: events.ScreenSuspend) -> None:
        """Stops measuring while covered."""
        if self._timer is not None:
            self._timer.pause()

    def refresh_host(self) -> None:
        """Measures the host (a measurement still running is superseded)."""
        self.call_backend(self.admin.host, self._show_host, failed=self.load_failed, group="host", exclusive=True)

    def _show_host(self, host: HostView) -> None:
        self.load_succeeded()
        self.query_one(HostOverview).show_host(host)
