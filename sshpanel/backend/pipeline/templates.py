"""Provides `Templates`, the Dockerfiles a build uses when the user's folder
has none (issue 6 "templates").

Built-in templates ship in the package (`sshpanel/templates/NAME.Dockerfile`);
an admin adds or overrides them as `<data dir>/templates/NAME.Dockerfile`
(by hand or with `template set`). A template's base images must be allowed
by the admin's image rules, checked when it is set and again at every build.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sshpanel.access.dockerfile import parse
from sshpanel.access.images import is_id_or_digest, may_use, normalize_tag
from sshpanel.backend.user.images import current_rules, require_current_admin
from sshpanel.backend.user.scope import UserScope
from sshpanel.errors import InvalidValue, NotFound

SUFFIX = ".Dockerfile"
MAX_TEMPLATE = 64 * 1024
"""Bytes of one template's text."""
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
DETECTION = (("python", ("app.py", "requirements.txt")), ("static", ("index.html",)))
"""Which template a folder without a Dockerfile gets: the first whose files
are present at its top."""


@dataclass(frozen=True)
class TemplateView:
    """One template.

    Attributes:
        name: The template's name (`static`).
        source: `built-in`, `custom` (the admin's) or `override` (the
            admin's file replacing a built-in one).
        base: The first base image it names ("" when none).
        text: The Dockerfile text.
    """

    name: str
    source: str
    base: str
    text: str


def check_template_name(name: str) -> str:
    """Validates a template name: a-z, 0-9, `_`, `-`, at most 32.

    Raises:
        InvalidValue: Not such a name.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidValue(f"invalid template name {name[:40]!r}: use a-z, 0-9, '_', '-' (at most 32)")
    return name


class Templates:
    """The templates, read by any user; changed by admins only (gated and
    audited in every changing method). Every method blocks (files, database).

    Args:
        scope: The caller's scope (settings for the data dir; the
            principal for the admin gate and the audit log).
    """

    def __init__(self, scope: UserScope) -> None:
        self.scope = scope
        self.custom_dir = Path(scope.settings.data_dir) / "templates"

    def views(self) -> list[TemplateView]:
        """Returns every template by name (unreadable admin files skipped)."""
        names = set(self._builtin()) | set(self._custom())
        views = []
        for name in sorted(names):
            try:
                views.append(self.get(name))
            except (InvalidValue, NotFound):
                continue
        return views

    def get(self, name: str) -> TemplateView:
        """Returns one template; the admin's file wins over a built-in one.

        Raises:
            InvalidValue: Bad name, or the admin's file is not valid text.
            NotFound: No such template.
        """
        check_template_name(name)
        builtin, custom = self._builtin(), self._custom()
        if name in custom:
            path = custom[name]
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_TEMPLATE:
                raise InvalidValue(f"template {name!r} is not a regular file of at most {MAX_TEMPLATE} bytes")
            text = path.read_bytes().decode("utf-8", "replace")
            source = "override" if name in builtin else "custom"
        elif name in builtin:
            text, source = builtin[name].read_text("utf-8"), "built-in"
        else:
            raise NotFound(f"no such template: {name} (templates: {', '.join(self.names()) or 'none'})")
        try:
            bases = parse(text).bases
        except InvalidValue:
            bases = ()
        return TemplateView(name, source, bases[0] if bases else "", text)

    def names(self) -> list[str]:
        """Returns the names of every template, sorted."""
        return sorted(set(self._builtin()) | set(self._custom()))

    def detect(self, files: set[str]) -> str:
        """Chooses the template of a folder without a Dockerfile (`DETECTION`).

        Args:
            files: Names of the regular files at the top of the folder.

        Raises:
            InvalidValue: No template fits (the message lists them).
        """
        for name, markers in DETECTION:
            if any(marker in files for marker in markers):
                return name
        raise InvalidValue(
            "no Dockerfile, and no template fits the files (app.py or requirements.txt: python; "
            f"index.html: static): add a Dockerfile or use --template (templates: {', '.join(self.names())})"
        )

    def set(self, name: str, text: str) -> bool:
        """Writes the admin's template `name` (audited `template.set`).

        Returns:
            True when it was new (no admin file of that name before).

        Raises:
            PermissionDenied: Not an admin.
            InvalidValue: Bad name; text too long or not a Dockerfile; a base
                image the rules do not allow (named by ID, or under the panel
                namespace, which is users' builds).
        """
        with self.scope.audited("template.set", name):
            require_current_admin(self.scope)
            check_template_name(name)
            self._check_text(text)
            self.custom_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            target = self.custom_dir / f"{name}{SUFFIX}"
            new = not target.exists()
            handle, temporary = tempfile.mkstemp(dir=self.custom_dir, prefix=".template-")
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text if text.endswith("\n") else text + "\n")
                os.chmod(temporary, 0o644)
                os.replace(temporary, target)
            except BaseException:
                os.unlink(temporary)
                raise
            return new

    def remove(self, name: str) -> str:
        """Removes the admin's template file `name` (audited `template.rm`);
        a built-in template of that name is used again.

        Returns:
            What is left: `built-in` or "".

        Raises:
            PermissionDenied: Not an admin.
            NotFound: No admin file of that name (built-in templates cannot
                be removed).
        """
        with self.scope.audited("template.rm", name):
            require_current_admin(self.scope)
            check_template_name(name)
            path = self._custom().get(name)
            if path is None:
                hint = " (a built-in template cannot be removed)" if name in self._builtin() else ""
                raise NotFound(f"no such admin template: {name}{hint}")
            path.unlink()
            return "built-in" if name in self._builtin() else ""

    def _check_text(self, text: str) -> None:
        """Checks that `text` reads as a Dockerfile whose bases the rules allow."""
        if len(text.encode("utf-8", "replace")) > MAX_TEMPLATE or "\x00" in text:
            raise InvalidValue(f"a template is text of at most {MAX_TEMPLATE} bytes")
        bases = parse(text).bases
        rules = current_rules()
        for base in bases:
            if is_id_or_digest(base) or not may_use(normalize_tag(base), "", self.scope.settings.namespace, rules):
                raise InvalidValue(f"base image {base!r} is not allowed by the image rules (see image ls)")

    def _builtin(self) -> dict:
        """Built-in templates by name (package resources)."""
        folder = importlib.resources.files("sshpanel").joinpath("templates")
        return {
            entry.name[: -len(SUFFIX)]: entry
            for entry in folder.iterdir()
            if entry.name.endswith(SUFFIX) and _NAME.fullmatch(entry.name[: -len(SUFFIX)])
        }

    def _custom(self) -> dict[str, Path]:
        """The admin's templates by name (`<data dir>/templates`)."""
        if not self.custom_dir.is_dir():
            return {}
        return {
            path.name[: -len(SUFFIX)]: path
            for path in self.custom_dir.iterdir()
            if path.name.endswith(SUFFIX) and _NAME.fullmatch(path.name[: -len(SUFFIX)])
        }
