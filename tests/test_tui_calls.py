"""One way back from a worker (issue 18 item 5): every screen runs backend
calls through `PanelScreen.call_backend`, gets the outcome as a message, and
a failing call shows its error the same way from every screen."""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil

import pytest
from textual.app import App
from textual.screen import Screen

import sshpanel.tui
from sshpanel.errors import InvalidValue
from sshpanel.tui.screens.admin import SECTIONS
from sshpanel.tui.screens.calls import PanelModal, PanelScreen
from sshpanel.tui.screens.history import HistoryScreen
from sshpanel.tui.screens.keys import UserKeysModal
from sshpanel.tui.screens.logs import LogScreen
from sshpanel.tui.screens.scripts import ScriptsScreen
from tests.test_tui_render import async_test, notifications, settle

TUI = pathlib.Path(sshpanel.tui.__file__).parent

ONE_WAY = ("call_backend", "show_backend_error", "on_call_done", "on_call_failed")
"""The methods of the one way back; no screen replaces them."""


def tui_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages([str(TUI)], "sshpanel.tui.")]


def test_no_type_ignore_under_tui():
    offenders = [f"{path.relative_to(TUI)}:{number}" for path in sorted(TUI.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if "type: ignore" in line]
    assert offenders == []


def test_workers_are_started_only_by_the_one_way_back():
    """No `@work` methods and no worker-state routers; `run_worker` only in
    `calls.py` (and the shell, an async worker that lends the terminal)."""
    allowed = {"calls.py": "run_worker", "container_screen.py": "run_worker"}
    for path in sorted(TUI.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        decorators = {ast.unparse(decorator).split("(")[0] for function in functions
                      for decorator in function.decorator_list}
        assert not decorators & {"work", "textual.work"}, path
        assert "on_worker_state_changed" not in {function.name for function in functions}, path
        if "run_worker" in names:
            assert allowed.get(path.name) == "run_worker", path


def test_no_screen_replaces_the_one_way_back():
    screens = set()
    for name in tui_modules():
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(cls, Screen) and cls.__module__.startswith("sshpanel."):
                screens.add(cls)
    assert len(screens) > 15
    for cls in screens:
        if "call_backend" in inspect.getsource(cls):
            assert issubclass(cls, PanelScreen), cls
        if cls not in (PanelScreen, PanelModal):
            assert not set(ONE_WAY) & set(vars(cls)), cls


class Failing:
    """A backend whose every method raises `error` (reached through any
    attribute path: `admin.users()`, `provisioner.scripts()`)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Failing:
        return self

    def subscribe(self, callback: object) -> object:
        """Following engine events is no backend call: it only registers."""
        return lambda: None

    def __call__(self, *args: object, **kwargs: object) -> Failing:
        raise self.error


class Bare(PanelScreen[None]):
    def __init__(self, backend: Failing) -> None:
        super().__init__()
        self.backend = backend

    def on_mount(self) -> None:
        self.call_backend(self.backend, lambda result: None)


class BareModal(PanelModal[None]):
    def __init__(self, backend: Failing) -> None:
        super().__init__()
        self.backend = backend

    def on_mount(self) -> None:
        self.call_backend(self.backend)


SCREENS = {
    "screen": Bare,
    "modal": BareModal,
    "history": lambda backend: HistoryScreen(backend),
    "scripts": lambda backend: ScriptsScreen(backend),
    "logs": lambda backend: LogScreen(backend, "web"),
    "keys": lambda backend: UserKeysModal("Keys", backend, backend, backend),
    **{section.__name__: (lambda section: lambda backend: section(backend, SECTIONS))(section)
       for section in SECTIONS},
}


class OneScreen(App[None]):
    def __init__(self, make, error: Exception) -> None:
        super().__init__()
        self.make = make
        self.error = error

    def on_mount(self) -> None:
        self.push_screen(self.make(Failing(self.error)))


async def shown_error(make, error: Exception) -> tuple[str | None, str, str]:
    app = OneScreen(make, error)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: any(n.severity == "error" for n in notifications(app)))
        errors = [n for n in notifications(app) if n.severity == "error"]
        assert app.is_running
    assert len(errors) == 1
    return errors[0].title, errors[0].message, errors[0].severity


@pytest.mark.parametrize("screen", sorted(SCREENS))
@async_test
async def test_a_failing_call_shows_its_error_the_same_way_from_every_screen(screen):
    make = SCREENS[screen]
    assert await shown_error(make, InvalidValue("invalid value: boom")) == (
        "Invalid value", "invalid value: boom", "error")
    title, message, _ = await shown_error(make, RuntimeError("secret detail"))
    assert title == "Unexpected error" and "secret" not in message and "RuntimeError" in message
