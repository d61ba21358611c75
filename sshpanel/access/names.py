"""Provides validation of user-typed names and the per-user Docker names.

Docker names are global on an engine (docs/PITFALLS.md "Docker"), so every
container, network and image tag the panel creates is namespaced by its
owner. User names cannot contain `.`, which makes `ns.user.name`
unambiguous.
"""

from __future__ import annotations

import re

from sshpanel.errors import InvalidValue

_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def check_container_name(name: str) -> str:
    """Validates a short container name as the docker CLI would accept it.

    Args:
        name: 1–63 characters of `[a-zA-Z0-9_.-]`, starting with a letter or
            digit (docker's own rule, with a length bound).

    Returns:
        The name, unchanged.

    Raises:
        InvalidValue: The name is empty, too long or has other characters.
    """
    if not isinstance(name, str) or not _CONTAINER_NAME.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 40 and name.isprintable() else "(given)"
        raise InvalidValue(
            f"invalid container name {shown!r}: use 1-63 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_user_name(name: str) -> str:
    """Validates a user name (POSIX-like: `[a-z_][a-z0-9_-]{0,31}`).

    Raises:
        InvalidValue: The name does not match.
    """
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise InvalidValue("invalid user name: use 1-32 lowercase letters, digits, '_' or '-', not starting with a digit")
    return name


def docker_container_name(namespace: str, user: str, name: str) -> str:
    """Returns the engine-wide Docker name of a user's container."""
    return f"{namespace}.{user}.{name}"


def docker_volume_name(namespace: str, user: str, name: str) -> str:
    """Returns the engine-wide Docker name of a user's named volume."""
    return f"{namespace}.{user}.{name}"


def network_name(namespace: str, user: str) -> str:
    """Returns the name of a user's own bridge network."""
    return f"{namespace}.{user}"


def project_network_name(namespace: str, user: str, project: str) -> str:
    """Returns the name of a user's Compose project's own bridge network
    (Compose's `PROJECT_default`; project names have no `.`)."""
    return f"{namespace}.{user}.{project}_default"


def compose_container_name(project: str, service: str) -> str:
    """Returns the user's short name of a project's service container,
    `PROJECT-SERVICE-1` as Compose names it.

    Raises:
        InvalidValue: The name is not a valid container name (too long).
    """
    return check_container_name(f"{project}-{service}-1")


def generate_name(image: str, taken: set[str], token: str) -> str:
    """Returns a container name for `run` without `--name`: the image's base
    name and a short token (`busybox-3f9a`), unique among `taken`.

    Args:
        image: Image reference (`repo/name:tag`).
        taken: Names the user already has.
        token: Random hex text supplied by the caller (keeps this pure).
    """
    base = image.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
    base = "".join(c for c in base if c.isalnum() or c in "_.-").lstrip("_.-")[:40] or "container"
    name = f"{base}-{token[:4]}"
    suffix = 4
    while name in taken:
        suffix += 1
        name = f"{base}-{token[:suffix]}"
    return check_container_name(name)
