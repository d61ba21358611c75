"""Provides experimental patches the helper server (`panel_server.py
--patch NAME`) applies before it starts, to measure a direction of issue 8
before anyone changes the code: `run.py --patch NAME` runs every figure
against a patched server. Not used in production; each patch names the
module where the real change would go.

- `unchanged-cells`: the container table skips cells whose value did not
  change (`ContainerTable.show_containers` updates every cell at every
  5-s refresh, and each update makes the DataTable re-render all its lines).
- `no-op-updates`: `unchanged-cells`, plus the quota line, the stats
  panel's selection and the last-record line ignore values equal to those
  shown (each of them repaints, the last-record line even re-lays out the
  screen, at every 5-s refresh).
- `no-poll`: no 5-s container refresh per session (Docker events only).
- `quiet-stats`: a stats panel with nothing to show ignores a round that
  brings nothing new (the collector calls every subscriber every round,
  2 s, even with no running container, and every panel then repaints).
- `reuse-port`: the SSH listener binds with `SO_REUSEPORT`, so that several
  server processes share one port (the kernel spreads connections), as a
  `serve --workers N` would (sshpanel/ssh/server.py).
- `shared-css`: parsed stylesheets shared by all apps of the process
  (Textual parses the app's and every widget's CSS again for each app).
"""

from __future__ import annotations

from typing import Any, Callable


def unchanged_cells() -> None:
    """Would go in sshpanel/tui/widgets/container_table.py."""
    from textual.widgets import DataTable
    from textual.widgets.data_table import CellDoesNotExist

    from sshpanel.tui.widgets.container_table import ContainerTable

    def update_cell(self: ContainerTable, row_key: Any, column_key: Any, value: Any, *,
                    update_width: bool = False) -> None:
        try:
            if self.get_cell(row_key, column_key) == value:
                return
        except CellDoesNotExist:
            pass
        DataTable.update_cell(self, row_key, column_key, value, update_width=update_width)

    ContainerTable.update_cell = update_cell  # type: ignore[method-assign]


def no_op_updates() -> None:
    """Would go in sshpanel/tui/widgets/{container_table,quota_bar,stats_panel}.py
    and sshpanel/tui/screens/container_actions.py."""
    from sshpanel.tui.screens.container_actions import ContainerActions
    from sshpanel.tui.widgets.quota_bar import QuotaBar
    from sshpanel.tui.widgets.stats_panel import ContainerMonitor

    unchanged_cells()
    show_quota, select, show_last = QuotaBar.show_quota, ContainerMonitor.select, ContainerActions._show_last_record

    def quota_if_changed(self: QuotaBar, quota: Any) -> None:
        if quota != self.quota:
            show_quota(self, quota)

    def select_if_changed(self: ContainerMonitor, view: Any) -> None:
        if view != self.view:
            select(self, view)

    def last_if_changed(self: Any, entry: Any) -> None:
        if getattr(self, "_experiment_last", ...) != entry:
            self._experiment_last = entry
            show_last(self, entry)

    QuotaBar.show_quota = quota_if_changed  # type: ignore[method-assign]
    ContainerMonitor.select = select_if_changed  # type: ignore[method-assign]
    ContainerActions._show_last_record = last_if_changed  # type: ignore[method-assign]


def no_poll() -> None:
    """Would go in sshpanel/tui/screens/dashboard.py (`REFRESH_INTERVAL`)."""
    import sshpanel.tui.screens.dashboard as dashboard

    dashboard.REFRESH_INTERVAL = 24 * 3600.0


def quiet_stats() -> None:
    """Would go in sshpanel/tui/widgets/stats_panel.py (`StatsWatcher`), or
    in the collector (no callback for an empty round after an empty round)."""
    from sshpanel.tui.widgets.stats_panel import StatsWatcher

    original = StatsWatcher.on_stats_watcher_round_arrived

    def on_round(self: StatsWatcher, message: StatsWatcher.RoundArrived) -> None:
        stats_round = message.stats_round
        same_error = (stats_round.error is None and self.error is None) or (
            stats_round.error is not None and self.error is not None
            and stats_round.error.message == self.error.message)
        if not stats_round.stats and not self._samples and same_error:
            self.rounds += 1
            return
        original(self, message)

    StatsWatcher.on_stats_watcher_round_arrived = on_round  # type: ignore[method-assign]


def reuse_port() -> None:
    """Would go in sshpanel/ssh/server.py (`asyncssh.create_server(..., reuse_port=True)`)."""
    import functools

    import asyncssh

    asyncssh.create_server = functools.partial(asyncssh.create_server, reuse_port=True)


def shared_css() -> None:
    """Would go in sshpanel/ssh/driver_patches.py: one cache of parsed rule
    sets per process, keyed like Textual's per-stylesheet cache plus the CSS
    variables (the theme), so apps with another theme never share rules."""
    from textual.css.stylesheet import Stylesheet

    original = Stylesheet._parse_rules
    cache: dict[tuple, list] = {}

    def _parse_rules(self: Stylesheet, css: str, read_from: Any, is_default_rules: bool = False,
                     tie_breaker: int = 0, scope: str = "") -> list:
        key = (css, read_from, is_default_rules, tie_breaker, scope, tuple(sorted(self._variables.items())))
        rules = cache.get(key)
        if rules is None:
            rules = cache[key] = original(self, css, read_from, is_default_rules, tie_breaker, scope)
        return rules

    Stylesheet._parse_rules = _parse_rules  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "unchanged-cells": unchanged_cells,
    "no-op-updates": no_op_updates,
    "no-poll": no_poll,
    "quiet-stats": quiet_stats,
    "reuse-port": reuse_port,
    "shared-css": shared_css,
}
