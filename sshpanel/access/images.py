"""Provides the pure rules of which images a user may use: allow/deny
patterns and the ownership of panel builds (issue 6 "Allowed base
images"); no I/O here. The base images a Dockerfile names are read by
`sshpanel.access.dockerfile`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from sshpanel.errors import InvalidValue

MAX_PATTERN = 255
_PATTERN = re.compile(r"[A-Za-z0-9._/:@*?\[\]!-]{1,255}")
_DIGEST_OR_ID = re.compile(r"(sha256:)?[a-f0-9]{12,64}")
RULE_KINDS = ("allow", "deny")


@dataclass(frozen=True)
class Rules:
    """The admin's image rules.

    Attributes:
        allow: fnmatch patterns on `repository:tag`; when any exist, only
            matching images may be used.
        deny: Patterns that are never usable; they win over `allow`.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def permit(self, tag: str) -> bool:
        """True when the rules let anyone use `tag` (`repository:tag`):
        no deny pattern matches, and an allow pattern matches or none exist."""
        if any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.allow)


def check_pattern(text: str) -> str:
    """Validates an image pattern (`busybox:*`, `python:3.1?-slim`).

    Returns:
        The pattern, unchanged.

    Raises:
        InvalidValue: Empty, longer than 255 characters, or with characters
            outside letters, digits, `._/:@-` and the wildcards `*?[]!`.
    """
    if not isinstance(text, str) or not _PATTERN.fullmatch(text):
        raise InvalidValue(
            f"invalid image pattern {text[:40]!r}: use repository:tag with * ? [ ] wildcards (at most {MAX_PATTERN})"
        )
    return text


def is_id_or_digest(reference: str) -> bool:
    """True when `reference` names an image by ID or digest, not by a tag."""
    return "@" in reference or bool(_DIGEST_OR_ID.fullmatch(reference))


def normalize_tag(reference: str) -> str:
    """Returns a by-name reference as the engine lists it in `RepoTags`:
    `docker.io/library/` dropped, `:latest` added when no tag is given
    (`busybox` -> `busybox:latest`)."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if reference.startswith(prefix):
            reference = reference[len(prefix):]
            break
    last = reference.rsplit("/", 1)[-1]
    return reference if ":" in last else f"{reference}:latest"


def may_use(tag: str, user: str, namespace: str, rules: Rules) -> bool:
    """Decides whether `user` may use the image tagged `tag`.

    Args:
        tag: `repository:tag` as the engine lists it.
        user: The user's name.
        namespace: The panel's namespace; `<namespace>/<user>/...` are that
            user's builds.
        rules: The admin's rules.

    Returns:
        True for the user's own builds (whatever the rules), False for any
        other image under the namespace (another user's builds), else what
        the rules say.
    """
    prefix = f"{namespace}/"
    if tag.startswith(prefix):
        return tag.startswith(f"{prefix}{user}/")
    return rules.permit(tag)
