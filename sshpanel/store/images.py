"""Provides the queries over the admin's image rules (`ImageRule` rows).

Call them from worker threads, like `Store`.
"""

from __future__ import annotations

from sshpanel.store.models import ImageRule, utcnow
from sshpanel.store.store import Store


def image_rules() -> list[ImageRule]:
    """Returns every rule, allow rules first, then by pattern."""
    return list(ImageRule.select().order_by(ImageRule.kind, ImageRule.pattern))


def add_image_rule(store: Store, kind: str, pattern: str, author: str) -> bool:
    """Adds an `allow` or `deny` rule.

    Args:
        store: For the write transaction.
        kind: `allow` or `deny`.
        pattern: A validated pattern.
        author: The admin's name.

    Returns:
        True when added, False when the same rule already existed.
    """
    with store.write():
        if ImageRule.get_or_none((ImageRule.kind == kind) & (ImageRule.pattern == pattern)) is not None:
            return False
        ImageRule.create(kind=kind, pattern=pattern, author=author, created=utcnow())
        return True


def remove_image_rule(store: Store, kind: str, pattern: str) -> bool:
    """Removes a rule.

    Returns:
        True when a rule was removed, False when there was no such rule.
    """
    with store.write():
        return ImageRule.delete().where((ImageRule.kind == kind) & (ImageRule.pattern == pattern)).execute() > 0
