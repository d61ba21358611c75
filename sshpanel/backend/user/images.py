"""Provides `ImagePolicy` (which images on the engine one user may use) and
`ImageRules` (the admin's allow/deny list), issue 6 "Allowed base images".

By default every image on the engine may be used; once an admin adds an
`allow` rule only matching images may; `deny` rules always win. A user's own
builds (`<namespace>/<user>/...`) are always usable by that user, other
users' builds never. An image named by ID or digest must carry at least one
tag the user may use, so untagged images are refused. Every refusal reads
the same as a missing image, so it reveals nothing about other users' images.
"""

from __future__ import annotations

from dataclasses import dataclass

from sshpanel.access.images import RULE_KINDS, Rules, check_pattern, is_id_or_digest, may_use, normalize_tag
from sshpanel.access.principal import require_admin
from sshpanel.access.spec import check_image_ref
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.user.scope import UserScope
from sshpanel.backend.views import ImageView
from sshpanel.errors import InvalidValue, NotFound, PermissionDenied
from sshpanel.store import images as queries


@dataclass(frozen=True)
class RuleView:
    """One admin rule.

    Attributes:
        kind: `allow` or `deny`.
        pattern: fnmatch pattern on `repository:tag`.
        author: The admin who added it.
    """

    kind: str
    pattern: str
    author: str


def current_rules() -> Rules:
    """Reads the admin's rules from the database (blocking)."""
    rows = queries.image_rules()
    return Rules(
        allow=tuple(r.pattern for r in rows if r.kind == "allow"),
        deny=tuple(r.pattern for r in rows if r.kind == "deny"),
    )


def unknown_image(reference: str) -> InvalidValue:
    """The one refusal for a missing image and a forbidden one alike."""
    return InvalidValue(f"unknown image {reference!r} (not on the engine or not allowed: ask your admin)")


class ImagePolicy:
    """The images one user may use. Every method blocks.

    Args:
        scope: The user's session (principal, settings, engine).
    """

    def __init__(self, scope: UserScope) -> None:
        self.scope = scope
        self.rules = current_rules()

    def allows(self, tag: str) -> bool:
        """True when the user may use the image tagged `tag` (`repo:tag`)."""
        return may_use(tag, self.scope.principal.name, self.scope.settings.namespace, self.rules)

    def image_id(self, reference: str) -> str:
        """Resolves an image reference present on the engine (never pulled)
        to its full ID, if the user may use it.

        Args:
            reference: `repository[:tag]`, `repository@sha256:...`, or an ID
                (`sha256:...` or a hex prefix of at least 12 digits).

        Returns:
            The full image ID (`sha256:...`).

        Raises:
            InvalidValue: Bad syntax; not on the engine; not allowed by the
                rules; another user's build; an ID or digest of an image
                without a tag the user may use (untagged images included).
        """
        check_image_ref(reference)
        by_name = not is_id_or_digest(reference)
        tag = normalize_tag(reference) if by_name else ""
        if by_name and not self.allows(tag):
            raise unknown_image(reference)
        try:
            with translate_errors(f"unknown image {reference!r}"):
                image = self.scope.engine.inspect_image(reference)
        except NotFound:
            raise unknown_image(reference) from None
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if by_name and tag in tags:
            return image["Id"]
        if not any(self.allows(t) for t in tags):
            raise unknown_image(reference)
        return image["Id"]

    def usable(self) -> list[ImageView]:
        """Lists the tags on the engine the user may use, by reference.

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        items = self.scope.engine.images()
        views = [
            ImageView(tag, item["Id"], int(item.get("Size") or 0))
            for item in items
            for tag in item.get("RepoTags") or []
            if tag != "<none>:<none>" and self.allows(tag)
        ]
        return sorted(views, key=lambda v: v.reference)


class ImageRules:
    """The admin's allow/deny rules. Reading is open to every user (`image
    ls` shows admins the rules); changes are admin-only, gated in every
    method against the database (an admin demoted mid-session loses the
    right at once) and audited, refusals included.

    Args:
        scope: The caller's session.
    """

    def __init__(self, scope: UserScope) -> None:
        self.scope = scope

    def rules(self) -> list[RuleView]:
        """Returns every rule (admins only).

        Raises:
            PermissionDenied: The caller is not an admin.
        """
        self._require()
        return [RuleView(r.kind, r.pattern, r.author) for r in queries.image_rules()]

    def add(self, kind: str, pattern: str) -> bool:
        """Adds an `allow` or `deny` rule (audited `image.allow`/`image.deny`).

        Returns:
            False when the same rule already existed.

        Raises:
            PermissionDenied: The caller is not an admin.
            InvalidValue: Bad kind or pattern (see `check_pattern`).
        """
        with self.scope.audited(f"image.{kind}", pattern):
            self._require()
            _check_kind(kind)
            check_pattern(pattern)
            return queries.add_image_rule(self.scope.store, kind, pattern, self.scope.principal.name)

    def remove(self, kind: str, pattern: str) -> None:
        """Removes a rule (audited `image.allow.rm`/`image.deny.rm`).

        Raises:
            PermissionDenied: The caller is not an admin.
            NotFound: No such rule.
        """
        with self.scope.audited(f"image.{kind}.rm", pattern):
            self._require()
            _check_kind(kind)
            if not queries.remove_image_rule(self.scope.store, kind, pattern):
                raise NotFound(f"no {kind} rule {pattern!r}")

    def _require(self) -> None:
        require_current_admin(self.scope)


def require_current_admin(scope: UserScope) -> None:
    """The gate of every admin change of images and templates: the principal
    must be an admin and still an enabled admin in the database.

    Args:
        scope: The caller's session.

    Raises:
        PermissionDenied: Not (or no longer) an admin.
    """
    require_admin(scope.principal)
    me = scope.store.user_by_id(scope.principal.user_id)
    if me is None or me.disabled or me.role != "admin":
        raise PermissionDenied("permission denied: you are no longer an admin")


def _check_kind(kind: str) -> None:
    if kind not in RULE_KINDS:
        raise InvalidValue(f"invalid rule kind {kind!r}: use allow or deny")
