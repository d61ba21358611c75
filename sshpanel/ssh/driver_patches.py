"""Provides the process-wide fixes Textual needs when many apps share one
process (docs/PITFALLS.md "Textual in many sessions in one process"): the
per-session colour system, no stdout/stderr redirect, render caches that
respect the colour system, a key parser whose cache dies with it, and
parsed stylesheets shared between apps.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any, Iterator

import textual.app
from rich.color import ColorSystem
from rich.console import COLOR_SYSTEMS
from textual import events
from textual._xterm_parser import XTermParser
from textual.cache import LRUCache
from textual.css.model import RuleSet
from textual.css.stylesheet import Stylesheet
from textual.strip import Strip

if TYPE_CHECKING:
    from rich.console import Console
    from textual.app import App

EXTENDED_KEY_CACHE_SIZE = 256
"""Entries in each parser's own cache of parsed key sequences."""
PARSED_CSS_CACHE_SIZE = 512
"""Parsed CSS sources kept for all apps (one per source text, location and
theme; the dashboard and its screens have about 80)."""

_TRUECOLOR_TERMS = frozenset(
    {"xterm-kitty", "alacritty", "wezterm", "foot", "foot-extra", "ghostty", "xterm-ghostty", "contour", "iterm2"}
)
_TRUECOLOR_SUFFIX = re.compile(r"-(direct\d*|truecolor|24bits?)$")


def color_system_for_term(term: str | None) -> str:
    """Chooses a session's colour system from the client's `TERM` (over SSH
    `COLORTERM` never arrives).

    Args:
        term: The terminal type the client sent, or None without a PTY.

    Returns:
        A Rich colour system name: `truecolor`, `256` or `standard`.
    """
    name = (term or "").strip().lower()
    if name in _TRUECOLOR_TERMS or _TRUECOLOR_SUFFIX.search(name):
        return "truecolor"
    if name.endswith("256color") or name.endswith("256colour"):
        return "256"
    # xterm, vt*, screen, linux and anything unknown: the 16 colours every
    # terminal since the VT era understands.
    return "standard"


def apply_color_system(app: App[Any], color_system: str) -> None:
    """Sets the colour system of one app's console, before it runs.

    `App.__init__` detects it from the *server's* environment and Rich has no
    setter; a new Console would lose Textual's settings (null file, forced
    terminal), so the detected value is overwritten in place.
    """
    app.console._color_system = COLOR_SYSTEMS[color_system]


@contextlib.contextmanager
def _no_redirect(_target: object) -> Iterator[None]:
    """Stands in for `contextlib.redirect_stdout`/`redirect_stderr`: does nothing."""
    yield


def neutralise_stdout_redirect() -> None:
    """Stops every app from redirecting the process's stdout/stderr (idempotent).

    With overlapping sessions the redirects restore out of order and leave
    `sys.stdout` on a dead app; threads started meanwhile also keep the app's
    capture object (`Thread._stderr`). App code never prints.
    """
    textual.app.redirect_stdout = _no_redirect
    textual.app.redirect_stderr = _no_redirect


_ORIGINAL_STRIP_RENDER = Strip.render


def _render_style(cls: type[Strip], style: Any, text: str, color_system: ColorSystem) -> str:
    """`Strip.render_style` without the colour-blind `style._ansi` shortcut
    (`render_ansi` is cached per style *and* colour system)."""
    ansi = cls.render_ansi(style, color_system)
    output = f"\x1b[{ansi}m{text}\x1b[0m" if ansi else text
    if style._link:
        output = f"\x1b]8;id={style._link_id};{style._link}\x1b\\{output}\x1b]8;;\x1b\\"
    return output


def _render_strip(self: Strip, console: Console) -> str:
    """`Strip.render` that uses the per-strip cache for truecolor only: strips
    are shared between apps (`Strip.blank` is cached per class) and their cache
    does not note the colour system."""
    color_system = console._color_system or ColorSystem.TRUECOLOR
    if color_system == ColorSystem.TRUECOLOR:
        return _ORIGINAL_STRIP_RENDER(self, console)
    render = Strip.render_style
    return "".join(
        [text if style is None else render(style, text, color_system) for text, style, _ in self._segments]
    )


def isolate_strip_render_cache() -> None:
    """Makes Textual's process-wide render caches safe across colour systems
    (idempotent): otherwise the first session to render a style fixes its
    escape codes for all, and a 256-colour terminal gets truecolor codes."""
    Strip.render_style = classmethod(_render_style)  # type: ignore[method-assign, assignment]
    Strip.render = _render_strip  # type: ignore[method-assign]


class SessionParser(XTermParser):
    """`XTermParser` whose cache of parsed key sequences belongs to the instance.

    The base class caches `_parse_extended_key` with a class-level
    `lru_cache`, which keeps up to 1024 parsers (and through them their apps)
    alive after their sessions end.
    """

    _parse_extended_key_uncached = getattr(
        XTermParser._parse_extended_key, "__wrapped__", XTermParser._parse_extended_key
    )

    def __init__(self) -> None:
        self._extended_keys: dict[str, list[events.Key] | None] = {}
        # debug=False always: debug mode appends keystrokes to ./keys.log.
        super().__init__(debug=False)

    def _parse_extended_key(self, sequence: str) -> list[events.Key] | None:  # type: ignore[override]
        """Parses a Kitty keyboard sequence, cached per parser (bounded)."""
        cache = self._extended_keys
        if sequence not in cache:
            if len(cache) >= EXTENDED_KEY_CACHE_SIZE:
                cache.pop(next(iter(cache)))
            cache[sequence] = self._parse_extended_key_uncached(sequence)
        return cache[sequence]


_ORIGINAL_PARSE_RULES = Stylesheet._parse_rules
_PARSED_CSS: LRUCache[tuple[Any, ...], list[RuleSet]] = LRUCache(PARSED_CSS_CACHE_SIZE)
"""Rule sets by source and theme, shared by every app of the process; they
hold no reference to an app or a widget."""


def _variables_key(stylesheet: Stylesheet) -> tuple[tuple[str, str], ...]:
    """The stylesheet's CSS variables (its theme) as a hashable key, computed
    once per variables mapping (Textual replaces the mapping, never edits it)."""
    memo = stylesheet.__dict__.get("_sshpanel_variables_key")
    if memo is None or memo[0] is not stylesheet._variables:
        memo = (stylesheet._variables, tuple(sorted(stylesheet._variables.items())))
        stylesheet.__dict__["_sshpanel_variables_key"] = memo
    return memo[1]


def _parse_rules_shared(
    self: Stylesheet,
    css: str,
    read_from: Any,
    is_default_rules: bool = False,
    tie_breaker: int = 0,
    scope: str = "",
) -> list[RuleSet]:
    """`Stylesheet._parse_rules` with a process-wide cache: the key is
    Textual's own per-stylesheet key plus the theme's variables, the only
    other input of the parse."""
    key = (css, read_from, is_default_rules, tie_breaker, scope, _variables_key(self))
    rules = _PARSED_CSS.get(key)
    if rules is None:
        rules = _ORIGINAL_PARSE_RULES(self, css, read_from, is_default_rules, tie_breaker, scope)
        _PARSED_CSS[key] = rules
    return rules


def share_parsed_stylesheets() -> None:
    """Parses each CSS source once per process and theme instead of once per
    app (idempotent).

    Textual parses the app's stylesheet and every widget's `DEFAULT_CSS` again
    for each app: 14 % of a login's CPU with the profiler (issue 8,
    benchmarks/RESULTS.md). Textual itself reuses parsed rule sets across
    re-parses of one stylesheet (`Stylesheet._parse_cache`), so rule sets are
    not changed after parsing; sharing them between apps with the same theme
    is the same reuse one level up.
    """
    Stylesheet._parse_rules = _parse_rules_shared  # type: ignore[method-assign]
