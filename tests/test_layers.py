"""The layer rules of docs/ARCHITECTURE.md "Layers", written as import-linter
contracts in pyproject.toml, hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Finds the import loops of a graph (Tarjan's strongly connected
    components).

    Args:
        graph: The package's import graph, every import counted (module
            level, under TYPE_CHECKING, inside functions).

    Returns:
        One sorted list of module names per loop: each strongly connected
        component of more than one module, or a module importing itself.
    """
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowlink[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        imported = graph.find_modules_directly_imported_by(module)
        for other in sorted(imported):
            if other not in index:
                visit(other)
                lowlink[module] = min(lowlink[module], lowlink[other])
            elif other in on_stack:
                lowlink[module] = min(lowlink[module], index[other])
        if lowlink[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or module in imported:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def describe_cycle(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """Returns a loop's modules and the imports that join them, one
    `importer:line -> imported` per line."""
    members = set(cycle)
    lines = [f"loop of {len(cycle)} modules:"]
    for importer in cycle:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"  {importer}:{detail['line_number']} -> {imported}")
    return "\n".join(lines)


def test_no_import_loops():
    graph = grimp.build_graph("sshpanel", include_external_packages=False)
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(describe_cycle(graph, cycle) for cycle in cycles)


ENGINE_SEAM = "sshpanel.backend.engine"
"""The package that alone talks to Docker (docs/ARCHITECTURE.md "The engine seam")."""


def test_only_the_engine_seam_imports_docker():
    graph = grimp.build_graph("sshpanel", include_external_packages=True)
    importers = sorted(graph.find_modules_that_directly_import("docker"))
    outside = [m for m in importers if m != ENGINE_SEAM and not m.startswith(ENGINE_SEAM + ".")]
    assert not outside, f"import docker outside {ENGINE_SEAM}: {outside}"


def test_no_module_outside_the_engine_seam_reaches_the_sdk_client():
    seam = ROOT / "sshpanel" / "backend" / "engine"
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "sshpanel").rglob("*.py"))
        if seam not in path.parents and (".client.api" in path.read_text() or "engine.client" in path.read_text())
    ]
    assert not offenders, f"the SDK client is reached outside the engine seam: {offenders}"
