"""Provides the strict reading of a compose file's text: YAML in safe mode
without tags, with bounded size and alias expansion, no duplicate keys, and
the Compose Specification's variable interpolation (issue 22).

Pure: no Docker, no files. Rules from the Compose Specification
(https://github.com/compose-spec/compose-spec/blob/main/spec.md,
"Interpolation") and YAML 1.1 as PyYAML reads it.
"""

from __future__ import annotations

import io
import re
from typing import Any, Mapping

import dotenv
import yaml

from sshpanel.errors import InvalidValue

MAX_FILE = 256 * 1024
"""Bytes a compose file (or an `.env` or `env_file`) may have."""
MAX_NODES = 20_000
"""YAML nodes a file may expand to, aliases counted as often as they are used
(a "billion laughs" file of nested aliases stays small as text)."""
_PLAIN = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|)")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", re.DOTALL)


def load_yaml(text: str, what: str = "compose file") -> Any:
    """Reads YAML text as plain data (mappings, lists, strings, numbers,
    booleans, None), refusing what a compose file has no use for.

    Args:
        text: The file's text.
        what: The word the messages use.

    Returns:
        The document's data; None for an empty document.

    Raises:
        InvalidValue: Over `MAX_FILE` bytes, not YAML, several documents, an
            explicit tag (`!!python/object`, `!!binary`, `!custom`), a
            document that expands to over `MAX_NODES` nodes, or a duplicate
            key (named by its path).
    """
    if len(text.encode("utf-8", "replace")) > MAX_FILE:
        raise InvalidValue(f"{what} too large: at most {MAX_FILE // 1024} KiB")
    try:
        loader = yaml.SafeLoader(text)
        try:
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                tag = getattr(event, "tag", None)
                if tag not in (None, "!"):
                    raise InvalidValue(f"{what}: YAML tags are not allowed ({_shown(tag)})")
            node = loader.get_single_node()
            if node is None:
                return None
            _check_nodes(node, what)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise InvalidValue(f"{what}: {problem}{where}") from None


def _check_nodes(root: yaml.Node, what: str) -> None:
    """Counts nodes as expanded (memoised per node, so the count itself is
    cheap) and refuses duplicate keys, naming their path."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = MAX_NODES + 1  # a recursive alias counts as too many
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        sizes[id(node)] = min(total, MAX_NODES + 1)
        return sizes[id(node)]

    if size(root) > MAX_NODES:
        raise InvalidValue(f"{what}: expands to more than {MAX_NODES} values (aliases counted each time used)")

    def walk(node: yaml.Node, path: str, seen: set[int]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                if name in keys and name != "<<":
                    raise InvalidValue(f"{join(path, name)}: duplicate key")
                keys.add(name)
                walk(value, join(path, name), seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                walk(child, f"{path}[{index}]", seen)

    walk(root, "", set())


def join(path: str, key: Any) -> str:
    """Returns the key path `services.web.ports` of `key` under `path`,
    the key shown escaped when it is not a plain printable word."""
    shown = _shown(key)
    return f"{path}.{shown}" if path else shown


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 64 and text.isprintable() and text.strip() == text and text else repr(text[:64])


def read_env(text: str, what: str = ".env") -> dict[str, str]:
    """Reads an `.env` or `env_file` as Compose does (`KEY=VALUE` lines,
    `#` comments, quotes, `export ` prefixes), with python-dotenv; values
    are not interpolated (the server's own environment never leaks in).

    Raises:
        InvalidValue: Over `MAX_FILE` bytes.
    """
    if len(text.encode("utf-8", "replace")) > MAX_FILE:
        raise InvalidValue(f"{what} too large: at most {MAX_FILE // 1024} KiB")
    values = dotenv.dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {key: value or "" for key, value in values.items()}


def interpolate(data: Any, variables: Mapping[str, str], path: str = "") -> Any:
    """Replaces variables in every string value (keys stay as written), as
    the Compose Specification's "Interpolation" says: `$VAR`, `${VAR}`,
    `${VAR:-default}`/`${VAR-default}`, `${VAR:?error}`/`${VAR?error}`,
    `${VAR:+other}`/`${VAR+other}`, `$$` for a `$`; defaults may hold
    variables themselves. An unset variable without a default is "".

    Args:
        data: What `load_yaml` returned.
        variables: The values (the `.env` next to the file, the project's
            secrets).
        path: Key path of `data`, for messages.

    Raises:
        InvalidValue: A bad `${...}` or a `?` variable unset, with its path.
    """
    if isinstance(data, dict):
        return {key: interpolate(value, variables, join(path, key)) for key, value in data.items()}
    if isinstance(data, list):
        return [interpolate(value, variables, f"{path}[{index}]") for index, value in enumerate(data)]
    if isinstance(data, str):
        return substitute(data, variables, path)
    return data


def substitute(text: str, variables: Mapping[str, str], path: str) -> str:
    """Interpolates one string (see `interpolate`); a `${...}` ends at the
    `}` that closes it, so a default may hold `${...}` itself.

    Raises:
        InvalidValue: A bad `${...}` or a required variable unset.
    """
    out, index = [], 0
    while True:
        start = text.find("$", index)
        if start < 0:
            out.append(text[index:])
            return "".join(out)
        out.append(text[index:start])
        if text.startswith("${", start):
            depth, end = 0, start + 1
            while end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                if depth == 0:
                    break
                end += 1
            if end >= len(text):
                raise InvalidValue(f"{path}: invalid interpolation format: an unclosed '${{'")
            out.append(_braced(text[start + 2:end], variables, path))
            index = end + 1
            continue
        match = _PLAIN.match(text, start)
        if match.group(1):
            out.append("$")
        elif match.group(2):
            out.append(variables.get(match.group(2), ""))
        else:
            raise InvalidValue(f"{path}: invalid interpolation format: a lone '$' (write $$ for a dollar)")
        index = match.end()


def _braced(inner: str, variables: Mapping[str, str], path: str) -> str:
    """The value of one `${inner}`: `NAME`, then an operator and a word."""
    braced = _BRACED.fullmatch(inner)
    if not braced:
        raise InvalidValue(f"{path}: invalid interpolation format for {_shown('${' + inner + '}')}")
    name, operator, word = braced.group(1), braced.group(2), braced.group(3) or ""
    value = variables.get(name)
    empty = value is None or (operator is not None and operator.startswith(":") and value == "")
    if operator in (":-", "-"):
        return substitute(word, variables, path) if empty else value or ""
    if operator in (":?", "?"):
        if empty:
            raise InvalidValue(f"{path}: required variable {name} is missing a value: {word[:80]}")
        return value or ""
    if operator in (":+", "+"):
        return "" if empty else substitute(word, variables, path)
    return value or ""
