"""Provides the schema migration run at every start: versioned, additive.

The schema has versions (`SCHEMA_VERSION`, kept in the `schema_version`
table). An older database is brought up to the current models: new tables
are created, and columns a newer model has and the database lacks are added
with `playhouse.migrate` (their default fills existing rows). Columns are
never dropped or changed here, so a panel one version older keeps working
on an upgraded database, and a database upgraded by a newer panel than this
one is refused rather than half understood. Two panel hosts starting at
once upgrade one after the other: on PostgreSQL the upgrade holds an
advisory lock (DDL is transactional there), on SQLite a write lock.

Versions:

1. Every schema before versions were recorded, from the first release
   (users, keys, containers, events, audit, scripts) on: upgraded column by
   column.
2. Versions recorded (`schema_version`).
3. `secretkeycheck`: the secret key's check token (several panel hosts on
   one database must share one key); `user.login_failures`,
   `login_failed_at`, `login_locked_until` (failed logins counted over
   every host).
4. The disk ledger (issue 26): `user.disk_home`, `user.disk_home_grown`
   and the table `disk_hold`.
"""

from __future__ import annotations

import copy

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from sshpanel.errors import ConfigError
from sshpanel.store.models import MODELS, SchemaVersion

SCHEMA_VERSION = 4
"""The schema version these models are (see the module docstring)."""

UPGRADE_LOCK = 0x73687370_00000001
"""PostgreSQL advisory lock key held while upgrading (`shsp` + 1)."""


def upgrade(database: pw.Database) -> list[str]:
    """Brings the schema up to the current models and records the version.

    Returns:
        `table.column` of every column added.

    Raises:
        ConfigError: The database was upgraded by a newer sshpanel
            (its version is above `SCHEMA_VERSION`).
        peewee.DatabaseError: The database refused a change.
    """
    if not isinstance(database, pw.SqliteDatabase):
        with database.atomic():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK,))
            return _upgrade(database)
    # Adding a NOT NULL column makes playhouse rebuild the table on SQLite
    # (copy, drop, rename): with foreign keys on, dropping `user` would
    # cascade into every key and container. SQLite's own procedure for
    # schema changes turns them off outside the transaction and checks the
    # references before committing (https://www.sqlite.org/lang_altertable.html).
    database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        with database.atomic(lock_type="IMMEDIATE"):
            added = _upgrade(database)
            broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise ConfigError(f"the upgrade would break {len(broken)} references; nothing was changed")
        return added
    finally:
        database.execute_sql("PRAGMA foreign_keys = ON")


def _upgrade(database: pw.Database) -> list[str]:
    """The upgrade itself, inside the caller's transaction."""
    found = schema_version(database)
    if found > SCHEMA_VERSION:
        raise ConfigError(f"the database has schema version {found}, made by a newer sshpanel than this one "
                          f"(version {SCHEMA_VERSION}): upgrade sshpanel")
    database.create_tables(MODELS, safe=True)
    added = _add_missing_columns(database)
    if found != SCHEMA_VERSION:
        SchemaVersion.delete().execute()
        SchemaVersion.create(version=SCHEMA_VERSION)
    return added


def schema_version(database: pw.Database) -> int:
    """Returns the database's schema version: 0 for an empty database, 1
    for one made before versions were recorded.

    Raises:
        peewee.DatabaseError: The database cannot be read.
    """
    tables = set(database.get_tables())
    if SchemaVersion._meta.table_name in tables:
        row = SchemaVersion.select(pw.fn.MAX(SchemaVersion.version)).scalar()
        if row is not None:
            return int(row)
    return 1 if tables & {model._meta.table_name for model in MODELS} else 0


def _add_missing_columns(database: pw.Database) -> list[str]:
    migrator = SchemaMigrator.from_database(database)
    added, operations = [], []
    for model in MODELS:
        table = model._meta.table_name
        present = {column.name for column in database.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name in present:
                continue
            if not field.null and field.default is None:
                field = _nullable_copy(field)
            operations.append(migrator.add_column(table, field.column_name, field))
            added.append(f"{table}.{field.column_name}")
    if operations:
        migrate(*operations)
    return added


def _nullable_copy(field: pw.Field) -> pw.Field:
    """A NOT NULL column without a default cannot be added to a table with rows."""
    clone = copy.copy(field)
    clone.null = True
    return clone
