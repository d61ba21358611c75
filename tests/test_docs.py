"""The repository carries its own design: nothing points at documents outside
it, every document under docs/ that code or docs name exists, every section
they name is a heading there, and the files and tests the docs name exist."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh", ".cfg", ".txt", ".tcss", ".Dockerfile", ""}

OUTSIDE = [
    re.compile(re.escape("../" + "shared")),
    re.compile(r"shared/(DESIGN|PITFALLS|STYLE)"),
    re.compile(r"(?<![\w/])(DESIGN|STYLE)\.md"),
    re.compile(r"(?<![\w/])PITFALLS\.md(?!\])"),
]
"""Names of the design notes that lived outside the repository. Inside
docs/ the pitfalls file may be named bare (relative links between the docs);
elsewhere only as `docs/...` or as the text of a Markdown link."""

REFERENCE = re.compile(r'docs/([\w-]+\.md)(?:\s+"([^"]+)"|\s+invariant\s+(\d+))?')
"""A document under docs/, optionally followed by `"Section"` or
`invariant N`."""

LINK = re.compile(r"\]\(([^)\s]+)\)")
"""The target of a Markdown link."""


def tracked_files() -> list[Path]:
    """Files git tracks, plus new ones it does not ignore; every file under
    the root (but .git and virtual environments) outside a checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        listed = [
            str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not {".git", ".venv"} & set(p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def text_files() -> list[Path]:
    """The tracked files worth reading as text (sources, docs, scripts)."""
    return [p for p in tracked_files() if p.suffix in TEXT_SUFFIXES or p.name.endswith(".Dockerfile")]


def read(path: Path) -> str:
    """A file's text, or "" when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def headings(doc: Path) -> list[str]:
    """The Markdown headings of a document, without their `#` marks."""
    return [line.lstrip("#").strip() for line in read(doc).splitlines() if line.startswith("#")]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading (`Invariant 1: Scope` -> `invariant-1-scope`)."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def test_no_file_points_outside_the_repository():
    found = []
    for path in text_files():
        in_docs = path.parent == DOCS
        for number, line in enumerate(read(path).splitlines(), 1):
            if any(pattern.search(line) for pattern in (OUTSIDE[:3] if in_docs else OUTSIDE)):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not found, "pointers to documents outside the repository:\n" + "\n".join(found)


def references() -> list[tuple[str, str, str | None, str | None]]:
    """Every reference to a document under docs/ in the repository, with the
    section or invariant it names, as (where, document, section, invariant)."""
    found = []
    for path in text_files():
        text = read(path)
        for match in REFERENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            section = re.sub(r"\s+", " ", match.group(2)) if match.group(2) else None
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), section, match.group(3)))
    return found


def test_references_name_existing_documents_and_sections():
    refs = references()
    assert len(refs) > 40  # docstrings do point at the docs
    wrong = []
    for where, name, section, invariant in refs:
        doc = DOCS / name
        if not doc.is_file():
            wrong.append(f"{where}: docs/{name} does not exist")
            continue
        titles = headings(doc)
        if section is not None and section not in titles:
            wrong.append(f'{where}: docs/{name} has no section "{section}"')
        if invariant is not None and not any(t.startswith(f"Invariant {invariant}:") for t in titles):
            wrong.append(f"{where}: docs/{name} has no invariant {invariant}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")) + ["../README.md"])
def test_links_between_documents_resolve(doc):
    path = (DOCS / doc).resolve()
    wrong = []
    for target in LINK.findall(read(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            wrong.append(f"{doc}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in {slug(h) for h in headings(linked)}:
            wrong.append(f"{doc}: {target}: no such heading")
    assert not wrong, "\n".join(wrong)


def test_readme_links_to_the_docs():
    readme = read(ROOT / "README.md")
    assert "docs/ARCHITECTURE.md" in readme and "docs/PITFALLS.md" in readme


def defined_tests(path: Path) -> set[str]:
    """Names of the module-level functions of a test file."""
    tree = ast.parse(read(path))
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_files_and_tests_named_in_the_docs_exist():
    wrong = []
    for doc in sorted(DOCS.glob("*.md")):
        text = read(doc)
        for match in re.finditer(r"`((?:tests/)?test_\w+\.py)(?:::(\w+))?`", text):
            path = ROOT / "tests" / Path(match.group(1)).name
            if not path.is_file():
                wrong.append(f"{doc.name}: {match.group(1)}: no such test file")
            elif match.group(2) and match.group(2) not in defined_tests(path):
                wrong.append(f"{doc.name}: {match.group(0)}: no such test")
        for match in re.finditer(r"`((?:sshpanel/)?(?:ssh|tui|backend|access|store)/[\w/]+\.py)", text):
            name = match.group(1)
            if not (ROOT / name).is_file() and not (ROOT / "sshpanel" / name).is_file():
                wrong.append(f"{doc.name}: {name}: no such module")
    assert not wrong, "\n".join(wrong)
