"""Schema versions and backups, on SQLite and PostgreSQL: a database made
with the first release's schema is upgraded by `open_store` with its rows
kept; a database from a newer sshpanel is refused; two panels starting at
once upgrade one after the other; `sshpanel db backup` copies both kinds."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import peewee as pw
import pytest

from sshpanel.config import load_settings
from sshpanel.errors import ConfigError
from sshpanel.store import open_store
from sshpanel.store.migrations import SCHEMA_VERSION, schema_version
from sshpanel.store.models import SchemaVersion

pytestmark = pytest.mark.databases

FIRST = pw.Proxy()
"""The database the first release's models below are bound to."""


class _First(pw.Model):
    """The first release's schema (commit ed5a1bd, 2026-11-22), frozen here."""

    class Meta:
        database = FIRST
        legacy_table_names = False


class User(_First):
    name = pw.CharField(max_length=32, unique=True)
    role = pw.CharField(max_length=8, default="user")
    disabled = pw.BooleanField(default=False)
    password_hash = pw.CharField(max_length=100, null=True)
    quota_containers = pw.IntegerField()
    quota_memory = pw.BigIntegerField()
    quota_cpus = pw.FloatField()
    created = pw.DateTimeField()
    last_login = pw.DateTimeField(null=True)


class PublicKey(_First):
    user = pw.ForeignKeyField(User, backref="keys", on_delete="CASCADE")
    algorithm = pw.CharField(max_length=64)
    fingerprint = pw.CharField(max_length=80, unique=True)
    openssh = pw.TextField()
    comment = pw.CharField(max_length=255, default="")
    created = pw.DateTimeField()
    last_used = pw.DateTimeField(null=True)


class Container(_First):
    user = pw.ForeignKeyField(User, backref="containers", on_delete="CASCADE")
    docker_id = pw.CharField(max_length=64, null=True, unique=True)
    name = pw.CharField(max_length=64)
    image = pw.CharField(max_length=255)
    spec = pw.TextField()
    memory = pw.BigIntegerField()
    cpus = pw.FloatField()
    created = pw.DateTimeField()
    removed = pw.DateTimeField(null=True)


class Event(_First):
    user = pw.ForeignKeyField(User, backref="events", on_delete="CASCADE")
    container = pw.ForeignKeyField(Container, null=True, backref="events", on_delete="SET NULL")
    kind = pw.CharField(max_length=32)
    ok = pw.BooleanField(default=True)
    exit_code = pw.IntegerField(null=True)
    detail = pw.TextField(default="")
    time = pw.DateTimeField(index=True)


class AuditEntry(_First):
    actor = pw.CharField(max_length=32)
    fingerprint = pw.CharField(max_length=80, default="")
    source = pw.CharField(max_length=64, default="")
    action = pw.CharField(max_length=64)
    target = pw.CharField(max_length=255, default="")
    outcome = pw.CharField(max_length=255)
    time = pw.DateTimeField(index=True)


class Script(_First):
    user = pw.ForeignKeyField(User, backref="scripts", on_delete="CASCADE")
    name = pw.CharField(max_length=64)
    body = pw.TextField()
    created = pw.DateTimeField()


FIRST_MODELS = [User, PublicKey, Container, Event, AuditEntry, Script]
WHEN = dt.datetime(2026, 11, 22, 12, 0, 0)


def _settings(tmp_path: Path, url: str):
    return load_settings({"data_dir": tmp_path / "data", "database_url": url})


def _raw(settings) -> pw.Database:
    """The settings' database, opened plainly (no upgrade)."""
    if settings.database_url:
        return pw.PostgresqlDatabase(**_pg_params(settings.database_url))
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    return pw.SqliteDatabase(str(settings.database_path))


def _pg_params(url: str) -> dict:
    from playhouse import db_url

    params = db_url.parse(url)
    return dict(params, database=params.pop("database"))


def _make_first_schema(settings) -> None:
    database = _raw(settings)
    FIRST.initialize(database)
    with database.connection_context():
        database.create_tables(FIRST_MODELS)
        user = User.create(name="old", quota_containers=3, quota_memory=2**30, quota_cpus=2.0, created=WHEN)
        PublicKey.create(user=user, algorithm="ssh-ed25519", fingerprint="SHA256:old", openssh="ssh-ed25519 AAAA",
                         created=WHEN)
        box = Container.create(user=user, docker_id="f" * 64, name="web", image="busybox", spec="{}",
                               memory=2**26, cpus=0.5, created=WHEN)
        Event.create(user=user, container=box, kind="create", time=WHEN)
        AuditEntry.create(actor="old", action="run", target="web", outcome="ok", time=WHEN)
        Script.create(user=user, name="setup", body="#!/bin/sh\necho hi\n", created=WHEN)
    database.close()


def test_the_first_schema_is_upgraded_with_its_rows(tmp_path, database):
    settings = _settings(tmp_path, database.new_url())
    _make_first_schema(settings)
    store = open_store(settings)
    try:
        user = store.user_by_name("old")
        assert user is not None and user.quota_containers == 3
        assert [key.fingerprint for key in store.keys_of(user)] == ["SHA256:old"]
        assert [row.name for row in store.containers_of(user.id)] == ["web"]
        assert [event.kind for event in store.events_of(user.id)] == ["create"]
        assert [entry.action for entry in store.audit_entries()] == ["run"]
        assert schema_version(store.database) == SCHEMA_VERSION
        # A new row in an upgraded table takes the new columns' defaults.
        store.add_event(user.id, None, "build", detail="after the upgrade")
        assert {event.kind for event in store.events_of(user.id)} == {"create", "build"}
    finally:
        store.close()
    again = open_store(settings)  # an upgraded database opens as it is
    try:
        assert SchemaVersion.select().count() == 1
    finally:
        again.close()


def test_a_database_of_a_newer_sshpanel_is_refused(tmp_path, database):
    settings = _settings(tmp_path, database.new_url())
    open_store(settings).close()
    with SchemaVersion._meta.database.connection_context():
        SchemaVersion.update(version=SCHEMA_VERSION + 1).execute()
    with pytest.raises(ConfigError, match=f"schema version {SCHEMA_VERSION + 1}, made by a newer sshpanel"):
        open_store(settings)


def _sshpanel(settings, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SSHPANEL_DATA_DIR=str(settings.data_dir))
    if settings.database_url:
        env["SSHPANEL_DATABASE_URL"] = settings.database_url
    return subprocess.run([sys.executable, "-m", "sshpanel", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_two_panels_starting_at_once_both_upgrade(tmp_path, database):
    """Two processes (two panel hosts) open one old database at once: both
    start, the schema is upgraded once, nothing is lost."""
    settings = _settings(tmp_path, database.new_url())
    _make_first_schema(settings)
    env = dict(os.environ, SSHPANEL_DATA_DIR=str(settings.data_dir), SSHPANEL_DATABASE_URL=settings.database_url)
    starts = [subprocess.Popen([sys.executable, "-m", "sshpanel", "db", "check"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [start.communicate(timeout=120) for start in starts]
    assert [start.returncode for start in starts] == [0, 0], results
    store = open_store(settings)
    try:
        assert schema_version(store.database) == SCHEMA_VERSION
        assert [key.fingerprint for key in store.keys_of(store.user_by_name("old"))] == ["SHA256:old"]
    finally:
        store.close()


def test_db_backup_copies_the_database(tmp_path, database):
    settings = _settings(tmp_path, database.new_url())
    _make_first_schema(settings)
    target = tmp_path / "backups" / "panel.backup"
    done = _sshpanel(settings, "db", "backup", str(target))
    assert done.returncode == 0, done.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    if not database.is_postgres:
        assert "SQLite database file" in done.stdout
        copy = sqlite3.connect(str(target))
        try:
            assert copy.execute("SELECT name FROM user").fetchall() == [("old",)]
        finally:
            copy.close()
        return
    assert "pg_restore" in done.stdout
    restored = database.new_url()
    restore = subprocess.run(["pg_restore", "--no-owner", f"--dbname={restored}", str(target)],
                             capture_output=True, text=True, timeout=120)
    assert restore.returncode == 0, restore.stderr
    store = open_store(_settings(tmp_path / "restored", restored))
    try:
        assert store.user_by_name("old") is not None
    finally:
        store.close()
