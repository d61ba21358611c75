"""Provides the panel's one reading of a Dockerfile (issue 21): parsed by
Docker's own parser, checked in that parsed form, and re-written as the text
the engine builds, so that no difference between two parsers can matter.

The parser is BuildKit's, through the `dockerfile` package (a binding of
`github.com/moby/buildkit/frontend/dockerfile/parser`). It applies Docker's
rules that a hand-written reader gets wrong (docs/PITFALLS.md, "Dockerfiles"):
the `# escape=` directive, a UTF-8 byte-order mark, continuation lines joined
without a space with comment and blank lines inside them skipped, heredocs,
JSON and shell forms, `ONBUILD` wrapping. The engine (Docker 20.10's classic
builder) then parses only the re-written text: one line per instruction, no
comments, no continuations, the escape directive the parser saw, so both
parsers read the same instructions. A re-written file that does not parse
back to the same instructions is refused. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import dockerfile as buildkit

from sshpanel.access.build_rules import REMOTE
from sshpanel.errors import InvalidValue

_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")
"""An image reference as the engine takes it. The engine expands `FROM` and
`--from` words like a shell (variables, quotes, escapes): a reference made of
these characters only is left as it is, so the checked name is the built one."""
_STAGE = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
"""A stage name (`FROM x AS name`), as Docker requires it (lower-cased)."""
_EXPANDED = set("$\"'\\`")
"""Characters the engine's word expansion interprets (variables, quotes and
both escape characters) in `ADD` sources, `FROM` and `--from` words."""
FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown", "chmod"},
    "ADD": {"chown", "chmod"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "retries"},
}
"""The flags each instruction may carry; every other flag (BuildKit's `RUN
--mount`, `--network`, `--security`, `ADD --checksum`...) is refused."""
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}
"""The instructions of Docker's Dockerfile reference."""
NOT_TRIGGERS = {"ONBUILD", "FROM", "MAINTAINER"}
"""Instructions Docker refuses as `ONBUILD` triggers."""
OWNER_ARG = "SSHPANEL_CACHE_OWNER_"


@dataclass(frozen=True)
class Instruction:
    """One instruction as Docker's parser read it.

    Attributes:
        keyword: Upper-case instruction (`COPY`).
        flags: Its flags as written (`--from=builder`).
        args: Its arguments (JSON form decoded; shell form one string for
            `RUN`/`CMD`/`ENTRYPOINT`).
        json: True for the JSON (exec) form.
        text: The instruction on one line, as the engine will read it.
        line: The line it started on in the user's file (1-based).
        trigger: For `ONBUILD`, the instruction it stores; it runs at the
            `FROM` of any build from this image, a later stage of the same
            Dockerfile included, so its images are bases too.
    """

    keyword: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json: bool
    text: str
    line: int
    trigger: "Instruction | None" = None

    def flag(self, name: str) -> str | None:
        """Returns the value of `--name=VALUE`, or None when absent."""
        for item in self.flags:
            key, _, value = item[2:].partition("=")
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Dockerfile:
    """A checked Dockerfile.

    Attributes:
        escape: The escape character the file chose (`\\` or a backtick).
        instructions: Its instructions, in order.
        bases: The images it builds from (`FROM` images and `COPY --from=`
            images, earlier stages left out), as written.
    """

    escape: str
    instructions: tuple[Instruction, ...]
    bases: tuple[str, ...]

    def render(self, owner: str = "") -> str:
        """Returns the text the engine builds: the escape directive, then one
        line per instruction; with `owner`, an `ARG` naming the owner right
        after every `FROM`, so that the engine's build cache, shared by
        every user of an engine, answers a user only with their own steps
        (docs/PITFALLS.md, "Dockerfiles": a step is cached by its parent and
        its instruction, and a user's chain now starts with their own step).

        Args:
            owner: A stable identity of the user ("" for none).
        """
        lines = [f"# escape={self.escape}"]
        marker = f"ARG {OWNER_ARG}{hashlib.sha256(owner.encode()).hexdigest()[:16].upper()}" if owner else ""
        for instruction in self.instructions:
            lines.append(instruction.text)
            if marker and instruction.keyword == "FROM":
                lines.append(marker)
        return "\n".join(lines) + "\n"


def parse(text: str) -> Dockerfile:
    """Parses and checks a Dockerfile.

    Checks: every instruction parses; no heredocs (the engine's classic
    builder does not know them); only the flags of `FLAGS`; `FROM` and
    `COPY --from` name a stage or an image reference without variables,
    quotes or escapes; `ADD` fetches no URL (dockerd fetches those itself,
    from the host's network namespace, whatever the build's network: a URL
    could reach the host's loopback) and takes no variable, quote or
    escape in a source; `ONBUILD` triggers pass the same checks.

    Args:
        text: The Dockerfile as the user wrote it.

    Returns:
        The checked Dockerfile; `render()` gives the text to build.

    Raises:
        InvalidValue: It does not parse, or a check fails (the message
            names the line).
    """
    commands = _parse(text)
    escape = _escape_of(text, commands[0].start_line)
    instructions = tuple(_instruction(command) for command in commands)
    result = Dockerfile(escape, instructions, tuple(_bases(instructions)))
    again = _parse(result.render())
    if [_shape(c) for c in again] != [_shape(c) for c in commands]:
        raise InvalidValue("the Dockerfile could not be re-written exactly: write each instruction on lines of its own")
    return result


def trigger_bases(triggers: list[str], stages: set[str] = frozenset()) -> list[str]:
    """Checks a base image's `ONBUILD` triggers (`Config.OnBuild` of `docker
    image inspect`), which the engine runs at the `FROM` of a build from it,
    like the user's own instructions; returns the images they name.

    Args:
        triggers: The trigger texts; the engine parses each with the
            default escape character.
        stages: Stage names of the Dockerfile building from the image.

    Raises:
        InvalidValue: A trigger fails the checks of `parse`.
    """
    found: list[str] = []
    for trigger in triggers:
        for command in _parse(str(trigger)):
            instruction = _instruction(command, trigger=True)
            found += [ref for ref in _refs(instruction) if ref.lower() not in stages]
    return found


def _parse(text: str) -> tuple:
    """Docker's parse of `text`, a tuple of `dockerfile.Command`."""
    try:
        commands = buildkit.parse_string(text)
    except buildkit.GoParseError as exc:
        first = (str(exc).strip().splitlines() or ["syntax error"])[0]
        raise InvalidValue(f"the Dockerfile does not parse: {first[:200]}") from None
    if not commands:
        raise InvalidValue("the Dockerfile has no instructions")
    return commands


def _escape_of(text: str, first_line: int) -> str:
    """Returns the escape character the parser used: the lines before the
    first instruction (where the directive lives) followed by a probe."""
    header = "\n".join(text.split("\n")[: first_line - 1])
    for escape in ("\\", "`"):
        probe = _parse(f"{header}\nRUN a{escape}\nb\n")
        if probe[-1].value == ("ab",):
            return escape
    raise InvalidValue("the Dockerfile's escape directive is not understood")


def _instruction(command, trigger: bool = False) -> Instruction:
    """Checks one parsed command; returns it as an `Instruction`."""
    if not command.cmd or command.original is None:
        raise InvalidValue(f"the Dockerfile does not parse at line {command.start_line}")
    keyword = command.cmd.upper()
    where = f"line {command.start_line}: {keyword}"
    if keyword not in INSTRUCTIONS:
        raise InvalidValue(f"not a Dockerfile: unknown instruction {keyword[:20]!r} on line {command.start_line}")
    if command.heredocs:
        raise InvalidValue(f"{where}: heredocs (<<) are not supported by this engine's builder")
    if "\n" in command.original or "\r" in command.original:
        raise InvalidValue(f"{where}: an instruction must fit on one logical line")
    if trigger and keyword in NOT_TRIGGERS:
        raise InvalidValue(f"{where} is not allowed as an ONBUILD trigger")
    for item in command.flags:
        name, equals, _ = item[2:].partition("=")
        if name not in FLAGS.get(keyword, set()) or not equals:
            raise InvalidValue(f"{where}: the flag {item[:60]!r} is not supported")
    trigger_of = None
    if keyword == "ONBUILD":
        inner = command.original.strip().split(None, 1)
        subs = _parse(inner[1] if len(inner) > 1 else "")
        if len(subs) != 1:
            raise InvalidValue(f"{where}: ONBUILD takes exactly one instruction")
        trigger_of = _instruction(subs[0], trigger=True)
    instruction = Instruction(keyword, tuple(command.flags), tuple(command.value), bool(command.json),
                              command.original.strip(), command.start_line, trigger_of)
    if keyword == "ADD":
        _check_add_sources(where, instruction.args[:-1])
    return instruction


def _check_add_sources(where: str, sources: tuple[str, ...]) -> None:
    """Refuses `ADD` of a URL, and sources the engine would expand."""
    for source in sources:
        if REMOTE.match(source) or "://" in source:
            raise InvalidValue(f"ADD {source[:80]} is refused: builds fetch nothing from the network; "
                               "download the file into the folder and ADD or COPY it from there")
        if set(source) & _EXPANDED:
            raise InvalidValue(f"{where} {source[:80]} is refused: ADD takes no variables, quotes or escapes "
                               "(a variable may hold a URL); use COPY, or name the file")


def _refs(instruction: Instruction) -> list[str]:
    """The image-or-stage words of one instruction, checked for syntax."""
    if instruction.trigger is not None:
        return _refs(instruction.trigger)
    words: list[str] = []
    if instruction.keyword == "FROM" and instruction.args:
        words.append(instruction.args[0])
    elif instruction.keyword == "COPY":
        source = instruction.flag("from")
        if source is not None and not source.isdigit():  # --from=N is always stage N
            words.append(source)
    for word in words:
        if "$" in word:
            raise InvalidValue(f"base image {word[:80]!r}: variables are not allowed in FROM / --from")
        if not _REFERENCE.fullmatch(word):
            raise InvalidValue(f"base image {word[:80]!r}: not an image reference")
    return words


def _bases(instructions: tuple[Instruction, ...]) -> list[str]:
    """The images the instructions build from, stages left out; also checks
    that instructions before the first `FROM` are `ARG`s and stage names."""
    stages: set[str] = set()
    bases: list[str] = []
    seen_from = False
    for instruction in instructions:
        if instruction.keyword == "FROM":
            seen_from = True
        elif not seen_from and instruction.keyword != "ARG":
            raise InvalidValue(f"line {instruction.line}: a Dockerfile must start with FROM (ARG lines may come first)")
        for ref in _refs(instruction):
            if ref.lower() not in stages and ref != "scratch":
                bases.append(ref)
        args = instruction.args
        if instruction.keyword == "FROM" and len(args) >= 3 and args[1].lower() == "as":
            if len(args) > 3 or not _STAGE.fullmatch(args[2].lower()):
                raise InvalidValue(f"line {instruction.line}: invalid stage name {args[2][:40]!r}")
            stages.add(args[2].lower())
    if not seen_from:
        raise InvalidValue("not a Dockerfile: it must start with FROM (ARG lines may come first)")
    return bases


def _shape(command) -> tuple:
    """What an instruction means, without where it was written."""
    return (str(command.cmd).upper(), command.sub_cmd, command.json, tuple(command.flags), tuple(command.value))
