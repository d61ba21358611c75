"""Provides the disk quota over everything a user holds (issue 21): the home
directory, named volumes, the layers of the user's own builds, and the
writable layers of their containers; `DiskWatch`, which measures it at most
once a minute and stops the containers of a user past the quota; and
`check_room`, which `build` and `deploy` call first.

The home directory is not walked on demand (issue 26): its figure is the
per-user ledger in the database (`User.disk_home`), which SFTP writes
reserve against and removals lower (`sshpanel.backend.user.ledger`), and which
`DiskWatch` re-measures in its own thread with a bounded walk.

What counts as a user's image bytes: the layers of their builds above the
base image. Every build stage starts with the owner's `ARG` step
(`sshpanel.access.dockerfile`), so the layers of an image's history, from
the newest down to that step, are the user's own; a layer shared by two of
their images counts once. Builds made before the owner step existed count
down to the first layer that belongs to another image's tag.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from sshpanel.access.dockerfile import OWNER_ARG
from sshpanel.backend.engine import Engine
from sshpanel.backend.user.files import bounded_disk_usage, home_dir
from sshpanel.backend.user.ledger import expiry
from sshpanel.backend.user.scope import UserScope
from sshpanel.config import Settings
from sshpanel.errors import NotFound, PanelError, QuotaExceeded
from sshpanel.store import Store

log = logging.getLogger("sshpanel.disk")

INTERVAL = 60.0
"""Seconds between two measurements: sizing writable layers makes the
engine walk every container's files (`docker system df`), so at most once a
minute."""
STOP_TIMEOUT = 10
"""Seconds a container past the quota gets to stop before it is killed."""
HOME_WALK_LIMIT = 500_000
"""Most entries one measurement of one home directory visits; past it the
ledger is only raised, never lowered (`UserTransaction.measured_home`)."""


@dataclass(frozen=True)
class DiskUsage:
    """What a user holds against the disk quota, bytes.

    Attributes:
        home: Files of the home directory (SFTP uploads), from the ledger.
        volumes: Data of the named volumes.
        images: Layers of the user's own builds.
        containers: Writable layers of the user's containers.
        quota: The disk quota.
        measured: When volumes, images and containers were last measured
            (None: never yet).
    """

    home: int
    volumes: int
    images: int
    containers: int
    quota: int
    measured: dt.datetime | None = None

    @property
    def total(self) -> int:
        """Everything counted, bytes."""
        return self.home + self.volumes + self.images + self.containers


def image_bytes(engine: Engine, repository_prefix: str) -> int:
    """Returns the bytes of the layers of a user's builds (see the module
    docstring for what counts).

    Args:
        engine: The Docker engine.
        repository_prefix: The user's repositories, `<namespace>/<user>/`.

    Raises:
        EngineUnavailable, EngineError: The engine failed.
    """
    layers: dict[str, int] = {}
    for image in engine.images():
        if not any(str(t).startswith(repository_prefix) for t in image.get("RepoTags") or []):
            continue
        try:
            history = engine.image_history(image["Id"])
        except NotFound:
            continue
        for index, entry in enumerate(history):
            tags = [str(t) for t in entry.get("Tags") or []]
            if index > 0 and any(not t.startswith(repository_prefix) for t in tags):
                break
            layer = str(entry.get("Id") or "")
            if layer in ("", "<missing>"):
                break
            layers[layer] = int(entry.get("Size") or 0)
            if OWNER_ARG in str(entry.get("CreatedBy") or ""):
                break
    return sum(layers.values())


def measure(engine: Engine, settings: Settings, user: str, df: dict, home: int) -> DiskUsage:
    """Measures everything one user holds on the engine, now.

    Args:
        engine: The Docker engine.
        settings: Namespace, label keys, `quota_disk`.
        user: The user's name.
        df: The engine's disk usage (`Engine.df`, `docker system df -v`).
        home: The home directory's bytes (the ledger, just re-measured).

    Returns:
        The usage, `measured` now.

    Raises:
        EngineUnavailable, EngineError: The engine failed.
    """
    owned = {settings.label_owner: user}
    volumes = sum(max(int((v.get("UsageData") or {}).get("Size", 0)), 0)
                  for v in df.get("Volumes") or [] if _owned(v, owned))
    containers = sum(int(c.get("SizeRw") or 0) for c in df.get("Containers") or [] if _owned(c, owned))
    return DiskUsage(home, volumes, image_bytes(engine, f"{settings.namespace}/{user}/"),
                     containers, settings.quota_disk, dt.datetime.now(dt.timezone.utc))


def stored_usage(settings: Settings, user, images: int | None = None) -> DiskUsage:
    """Returns a user's usage from the last measurement (`User.disk_*`) and
    the home directory's ledger; no engine call unless `images` is measured
    by the caller, no walk of the home.

    Args:
        settings: Data dir and `quota_disk`.
        user: The user record.
        images: The user's image bytes measured now, or None for the stored.
    """
    measured = user.disk_measured.replace(tzinfo=dt.timezone.utc) if user.disk_measured else None
    return DiskUsage(int(user.disk_home or 0), int(user.disk_volumes or 0),
                     int(user.disk_images or 0) if images is None else images,
                     int(user.disk_containers or 0), settings.quota_disk, measured)


def check_room(engine: Engine, settings: Settings, user, action: str) -> DiskUsage:
    """Refuses `action` (`build`, `deploy`) when the user holds their disk
    quota or more: image layers measured now, the home's ledger, volumes
    and writable layers as last measured (at most a minute ago).

    Args:
        engine: The Docker engine.
        settings: Namespace, data dir, `quota_disk`.
        user: The user record.
        action: What is refused, for the message.

    Returns:
        The usage.

    Raises:
        QuotaExceeded: The user is full (the message gives the figures).
        EngineUnavailable, EngineError: The engine could not be asked.
    """
    images = image_bytes(engine, f"{settings.namespace}/{user.name}/")
    usage = stored_usage(settings, user, images)
    if usage.total >= usage.quota:
        raise QuotaExceeded(
            f"disk quota reached, {action} refused: you hold {usage.total} of {usage.quota} bytes "
            f"(files {usage.home}, volumes {usage.volumes}, images {usage.images}, containers {usage.containers}); "
            "remove builds (image rm NAME:N), volumes or files first"
        )
    return usage


def usage_of(scope: UserScope) -> DiskUsage:
    """Returns the signed-in user's disk usage as last measured (`quota`);
    blocks (database)."""
    return stored_usage(scope.settings, scope.store.user_by_id(scope.principal.user_id))


class DiskWatch:
    """Measures every user's disk usage once a minute, in its own thread
    (home directories with a bounded walk, `HOME_WALK_LIMIT`, that replaces
    the ledger's figure; expired SFTP holds are deleted first);
    stops the running containers that write into their writable layer of a
    user past the quota, each with a `stop` event in its history (a disk
    that fills up would otherwise fill the engine's data root for everyone).

    Args:
        store: The repository (users, container records, events).
        engine: The Docker engine.
        settings: Namespace, label keys, `quota_disk`.
        interval: Seconds between measurements (`INTERVAL`).
    """

    def __init__(self, store: Store, engine: Engine, settings: Settings, interval: float = INTERVAL) -> None:
        self.store = store
        self.engine = engine
        self.settings = settings
        self.interval = max(float(interval), 1.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the measuring thread (idempotent); the first measurement
        is made at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sshpanel-disk", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def check_all(self) -> list[str]:
        """Measures every user once and stops what is past the quota.

        Returns:
            The full IDs of the containers stopped.

        Raises:
            EngineUnavailable, EngineError: The engine could not be asked.
        """
        stopped: list[str] = []
        self.store.expire_disk_holds(expiry())
        df = self.engine.df()
        for user in self.store.users():
            try:
                home = self.measure_home(user)
            except NotFound:  # deleted meanwhile
                continue
            usage = measure(self.engine, self.settings, user.name, df, home)
            self.store.record_disk(user.id, usage.volumes, usage.images, usage.containers)
            if usage.total > usage.quota:
                stopped += self._stop_writers(user, usage, df)
        return stopped

    def measure_home(self, user) -> int:
        """Walks one user's home directory (bounded) and stores the figure in
        the ledger (`UserTransaction.measured_home`).

        No walk while a session of the user holds bytes ahead of its
        writes: the ledger counts those writes already, and the figure would
        be left as it is anyway.

        Args:
            user: The user record, read before the walk.

        Returns:
            The ledger's figure, bytes.
        """
        if self.store.disk_held(user.id):
            return int(user.disk_home or 0)
        measured, complete = bounded_disk_usage(home_dir(self.settings, user.name), HOME_WALK_LIMIT)
        with self.store.user_transaction(user.id) as tx:
            return tx.measured_home(measured, int(user.disk_home_grown or 0), complete)

    def _stop_writers(self, user, usage: DiskUsage, df: dict) -> list[str]:
        """Stops the user's running containers with a non-empty writable layer."""
        stopped = []
        owned = {self.settings.label_owner: user.name}
        for item in df.get("Containers") or []:
            if not _owned(item, owned) or item.get("State") != "running" or not int(item.get("SizeRw") or 0):
                continue
            record = self.store.container_by_docker_id(item["Id"])
            detail = (f"stopped: disk quota exceeded ({usage.total} of {usage.quota} bytes; "
                      f"this container's writable layer holds {int(item['SizeRw'])})")
            # The record comes first, so the events recorder reads the engine's
            # `stop` as the panel's own and does not record it twice.
            self.store.add_event(user.id, record.id if record else None, "stop", ok=False, detail=detail)
            try:
                self.engine.stop(item["Id"], timeout=STOP_TIMEOUT)
            except NotFound:
                continue
            log.warning("stopped %s of %s: disk quota exceeded", item["Id"][:12], user.name)
            stopped.append(item["Id"])
        return stopped

    def _run(self) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.check_all()
            except PanelError as exc:
                log.warning("disk usage not measured: %s", exc.message)
            except Exception:  # one failed round must never end the watch
                log.exception("disk usage not measured")


def _owned(item: dict, owned: dict[str, str]) -> bool:
    labels = item.get("Labels") or {}
    return all(labels.get(key) == value for key, value in owned.items())

