"""Provides `Volumes`, the named volumes of one user (`volume ls|create|rm`,
`run -v VOLUME:/path`), counted in the user's disk quota (issue 6).

A volume is `<namespace>.<user>.<name>` on the engine with the owner label,
driver `local` and no driver options: a local volume with `o=bind` would be
a bind mount of a host path (CIS Docker 5.5, issue 7). Another user's
volume reads exactly like one that does not exist.

The disk quota (`Settings.quota_disk`) covers the home directory (SFTP
uploads) and the volumes together. Containers write into volumes directly,
so the quota is checked where the panel takes part: `volume create`, and a
create that mounts volumes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sshpanel.access.names import docker_volume_name
from sshpanel.errors import Conflict, InvalidValue, NotFound, QuotaExceeded

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


@dataclass(frozen=True)
class VolumeView:
    """One of the user's volumes.

    Attributes:
        name: The user's name of the volume.
        size: Bytes held (-1 when the engine did not say).
        created: When it was created (engine time, UTC).
    """

    name: str
    size: int
    created: str


class Volumes:
    """The named volumes of one user. Every method blocks (Docker calls).

    Args:
        scope: The user's `UserScope` (engine, settings, principal).
    """

    def __init__(self, scope) -> None:
        self.scope = scope
        self.settings = scope.settings
        self.engine = scope.engine
        self.prefix = docker_volume_name(self.settings.namespace, scope.principal.name, "")

    def ls(self) -> list[VolumeView]:
        """Lists the user's volumes with their sizes, by name.

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        sizes = self._sizes()
        views = []
        for item in self._owned():
            name = item["Name"][len(self.prefix):]
            views.append(VolumeView(name, sizes.get(item["Name"], -1), str(item.get("CreatedAt", ""))))
        return sorted(views, key=lambda view: view.name)

    def create(self, name: str) -> bool:
        """Creates the volume `name` unless the user has it.

        Returns:
            True when it was created, False when it existed.

        Raises:
            InvalidValue: Bad name.
            NotFound: The engine has a volume of that Docker name the user
                does not own (reads as "no such volume").
            QuotaExceeded: The home directory and volumes hold the disk quota.
        """
        full = self._full(name)
        existing = self._inspect(full)
        if existing is not None:
            if not self._mine(existing):
                raise NotFound(f"no such volume: {name}")
            return False
        self.check_quota()
        self.engine.create_volume(full, labels={self.settings.label_owner: self.scope.principal.name})
        return True

    def remove(self, name: str) -> None:
        """Removes one of the user's volumes and its data.

        Raises:
            NotFound: No such volume of the user's.
            Conflict: A container uses it.
        """
        full = self._full(name)
        existing = self._inspect(full)
        if existing is None or not self._mine(existing):
            raise NotFound(f"no such volume: {name}")
        try:
            self.engine.remove_volume(full)
        except Conflict:
            raise Conflict(f"volume {name} is in use by a container: remove the container first") from None

    def ensure(self, names: list[str]) -> None:
        """Makes sure every named volume exists and is the user's (creating
        missing ones, as `docker run -v` does); checks the disk quota once.

        Raises:
            NotFound, QuotaExceeded: See `create`.
        """
        if names:
            self.check_quota()
        for name in names:
            self.create(name)

    def size(self) -> int:
        """Returns the bytes the user's volumes hold (sizes the engine does
        not know count 0).

        Raises:
            EngineUnavailable: The engine does not answer.
        """
        return sum(max(view.size, 0) for view in self.ls())

    def used(self) -> int:
        """Returns the bytes the user holds: the home directory's ledger
        (`User.disk_home`, no walk) plus the volumes now."""
        user = self.scope.store.user_by_id(self.scope.principal.user_id)
        return (int(user.disk_home or 0) if user else 0) + self.size()

    def check_quota(self) -> None:
        """Raises QuotaExceeded unless the user has room left under the disk
        quota for a volume to be created or mounted.

        A volume adds no bytes when it is made, but everything a container
        then writes into it counts: so at least one byte must be free
        (holding exactly the quota, the user is full), the same boundary as
        an SFTP write, which may fill the quota exactly and not one byte
        more (`sshpanel.ssh.sftp`).
        """
        used, quota = self.used(), self.settings.quota_disk
        if used >= quota:
            raise QuotaExceeded(f"disk quota reached: your files and volumes hold {used} of {quota} bytes")

    # Internals -----------------------------------------------------------

    def _full(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidValue(f"invalid volume name {str(name)[:60]!r}: letters, digits, '_', '.', '-' (at most 63)")
        return self.prefix + name

    def _inspect(self, full: str) -> dict | None:
        try:
            return self.engine.inspect_volume(full)
        except NotFound:
            return None

    def _mine(self, volume: dict) -> bool:
        """Owner label, the local driver and no driver options (never a bind)."""
        labels = volume.get("Labels") or {}
        return (labels.get(self.settings.label_owner) == self.scope.principal.name
                and volume.get("Driver") == "local" and not volume.get("Options"))

    def _owned(self) -> list[dict]:
        label = f"{self.settings.label_owner}={self.scope.principal.name}"
        listed = self.engine.volumes(filters={"label": label})
        return [item for item in listed if item["Name"].startswith(self.prefix) and self._mine(item)]

    def _sizes(self) -> dict[str, int]:
        """Bytes per volume from the engine's disk usage (`docker system df -v`)."""
        volumes = self.engine.df().get("Volumes") or []
        return {item["Name"]: int((item.get("UsageData") or {}).get("Size", -1)) for item in volumes}


def volume_created(created: str) -> str:
    """Formats the engine's `CreatedAt` as `YYYY-MM-DD HH:MM` (or as given)."""
    try:
        return dt.datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created[:16]
