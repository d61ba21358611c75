"""Provides `KeyFooter`, Textual's compact key footer without the work it
repeats at every focus change."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import Footer

if TYPE_CHECKING:
    from textual.screen import Screen


class KeyFooter(Footer):
    """`Footer` in its compact style that rebuilds its keys only when the keys
    it would show change.

    Textual's footer recomposes all its keys at every change of the screen's
    bindings signal (each focus change, each screen resume), and every key
    is styled again when its compact class arrives; at a login that was a
    fifth of the first frame's CPU (issue 8, benchmarks/RESULTS.md). Here a
    recompose happens only when the shown keys, their descriptions or their
    enabled state differ.

    Args:
        **kwargs: Passed on to `textual.widgets.Footer` (not `compact`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(compact=True, **kwargs)
        self._shown: tuple[tuple[str, str, bool, str], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        """Recomposes only when what the footer shows changed."""
        shown = tuple(
            (binding.key, binding.description, enabled, tooltip)
            for _, binding, enabled, tooltip in screen.active_bindings.values()
            if binding.show
        )
        will_compose = screen.app.app_focus and self.is_attached and screen is self.screen
        if will_compose and shown == self._shown:
            return
        if will_compose:
            self._shown = shown
        super().bindings_changed(screen)
