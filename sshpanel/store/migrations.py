"""Provides the schema migration run at every start: additive changes only.

New tables are created; columns a newer model has and the database lacks are
added with `playhouse.migrate` (their default fills existing rows). Columns
are never dropped or changed here, so an older panel keeps working on a
newer database.
"""

from __future__ import annotations

import copy

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

from sshpanel.store.models import MODELS


def upgrade(database: pw.Database) -> list[str]:
    """Brings the schema up to the current models.

    Returns:
        `table.column` of every column added.

    Raises:
        peewee.DatabaseError: The database refused a change.
    """
    database.create_tables(MODELS, safe=True)
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
        with database.atomic():
            migrate(*operations)
    return added


def _nullable_copy(field: pw.Field) -> pw.Field:
    """A NOT NULL column without a default cannot be added to a table with rows."""
    clone = copy.copy(field)
    clone.null = True
    return clone
