"""Provides the Peewee models of sshpanel (docs/ARCHITECTURE.md "Data model").

The models are bound to a database by `sshpanel.store.store.open_store`; one
process serves one database.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw


def utcnow() -> dt.datetime:
    """Returns the current time in UTC, naive (as stored in the database)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class BaseModel(pw.Model):
    """Common base: models are bound to a database at run time."""

    class Meta:
        legacy_table_names = False


class User(BaseModel):
    """A panel account; the SSH user name is `name`.

    Quota fields bound what the user's containers may take together:
    count, memory (bytes), CPUs, pids per container (None = the server's
    `default_pids`) and the inclusive host port range for published ports
    (None = the user may publish nothing). The `disk_*` fields are the last
    measurement of the engine's side of the disk quota (bytes held in named
    volumes, the user's build layers and containers' writable layers), made
    at most once a minute by `sshpanel.backend.user.disk.DiskWatch`. The
    `login_*` fields count failed logins over every panel host sharing the
    database (`sshpanel.store.logins`).
    """

    name = pw.CharField(max_length=32, unique=True)
    role = pw.CharField(max_length=8, default="user")
    disabled = pw.BooleanField(default=False)
    password_hash = pw.CharField(max_length=100, null=True)
    quota_containers = pw.IntegerField()
    quota_memory = pw.BigIntegerField()
    quota_cpus = pw.FloatField()
    quota_pids = pw.IntegerField(null=True)
    quota_port_low = pw.IntegerField(null=True)
    quota_port_high = pw.IntegerField(null=True)
    created = pw.DateTimeField(default=utcnow)
    last_login = pw.DateTimeField(null=True)
    disk_volumes = pw.BigIntegerField(default=0)
    disk_images = pw.BigIntegerField(default=0)
    disk_containers = pw.BigIntegerField(default=0)
    disk_measured = pw.DateTimeField(null=True)
    login_failures = pw.IntegerField(default=0)
    login_failed_at = pw.DateTimeField(null=True)
    login_locked_until = pw.DateTimeField(null=True)
    disk_home = pw.BigIntegerField(default=0)
    disk_home_grown = pw.BigIntegerField(default=0)


class PublicKey(BaseModel):
    """An SSH public key that logs in as its user.

    The SHA256 fingerprint (as `ssh-keygen -lf` prints it) is unique across
    users: a key belongs to at most one user.
    """

    user = pw.ForeignKeyField(User, backref="keys", on_delete="CASCADE")
    algorithm = pw.CharField(max_length=64)
    fingerprint = pw.CharField(max_length=80, unique=True)
    openssh = pw.TextField()
    comment = pw.CharField(max_length=255, default="")
    created = pw.DateTimeField(default=utcnow)
    last_used = pw.DateTimeField(null=True)


class Container(BaseModel):
    """Ownership record of a Docker container created through the panel.

    `docker_id` is empty while the create is in flight (the row reserves the
    name and counts against the quota). `removed` is set when the container
    is gone; the row stays for the history.
    """

    user = pw.ForeignKeyField(User, backref="containers", on_delete="CASCADE")
    docker_id = pw.CharField(max_length=64, null=True, unique=True)
    name = pw.CharField(max_length=64)
    image = pw.CharField(max_length=255)
    spec = pw.TextField()
    memory = pw.BigIntegerField()
    cpus = pw.FloatField()
    created = pw.DateTimeField(default=utcnow)
    removed = pw.DateTimeField(null=True)


Container.add_index(
    Container.index(Container.user, Container.name, unique=True, where=Container.removed.is_null())
)


class Event(BaseModel):
    """A lifecycle event of a user's container (history and 30-day chart)."""

    user = pw.ForeignKeyField(User, backref="events", on_delete="CASCADE")
    container = pw.ForeignKeyField(Container, null=True, backref="events", on_delete="SET NULL")
    kind = pw.CharField(max_length=32)
    ok = pw.BooleanField(default=True)
    exit_code = pw.IntegerField(null=True)
    detail = pw.TextField(default="")
    time = pw.DateTimeField(default=utcnow, index=True)


class AuditEntry(BaseModel):
    """One action of one principal: who, with which key, from where, what.

    `actor` is a name, not a foreign key, so the entry outlives the user.
    """

    actor = pw.CharField(max_length=32)
    fingerprint = pw.CharField(max_length=80, default="")
    source = pw.CharField(max_length=64, default="")
    action = pw.CharField(max_length=64)
    target = pw.CharField(max_length=255, default="")
    outcome = pw.CharField(max_length=255)
    time = pw.DateTimeField(default=utcnow, index=True)


class Script(BaseModel):
    """A user's named provisioning script."""

    user = pw.ForeignKeyField(User, backref="scripts", on_delete="CASCADE")
    name = pw.CharField(max_length=64)
    body = pw.TextField()
    created = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "name"), True),)


class ImageRule(BaseModel):
    """An admin's allow or deny pattern on the images users may use (issue 6)."""

    kind = pw.CharField(max_length=8)
    pattern = pw.CharField(max_length=255)
    author = pw.CharField(max_length=32, default="")
    created = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("kind", "pattern"), True),)


class Secret(BaseModel):
    """An environment secret of a user's container name (issue 6): `value`
    is a Fernet token, never the clear text."""

    user = pw.ForeignKeyField(User, backref="secrets", on_delete="CASCADE")
    name = pw.CharField(max_length=64)
    key = pw.CharField(max_length=128)
    value = pw.TextField()
    updated = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "name", "key"), True),)


class SecretKeyCheck(BaseModel):
    """One row (id 1): a Fernet token of a fixed text made with the secret
    key of the first panel started on this database, so a panel given
    another key refuses to start (issue 19, several hosts)."""

    token = pw.TextField()
    created = pw.DateTimeField(default=utcnow)


class DiskHold(BaseModel):
    """Disk quota bytes one SFTP session of a user holds ahead of its
    writes (issue 26): counted in the user's usage by every process until
    the session settles them into `User.disk_home` or gives them back.

    `holder` names the session (random, unique); `updated` is refreshed at
    every reservation, and `DiskWatch` deletes holds older than
    `sshpanel.backend.user.ledger.HOLD_TTL` (their process died).
    """

    user = pw.ForeignKeyField(User, backref="disk_holds", on_delete="CASCADE")
    holder = pw.CharField(max_length=64, unique=True)
    bytes = pw.BigIntegerField(default=0)
    updated = pw.DateTimeField(default=utcnow, index=True)


class SchemaVersion(BaseModel):
    """The schema version the database was last upgraded to (one row; see
    `sshpanel.store.migrations.SCHEMA_VERSION`)."""

    version = pw.IntegerField()
    upgraded = pw.DateTimeField(default=utcnow)


MODELS: list[type[BaseModel]] = [User, PublicKey, Container, Event, AuditEntry, Script, ImageRule, Secret,
                                 SecretKeyCheck, SchemaVersion, DiskHold]
