"""The store: pragmas, file mode, additive migrations of an older schema;
on PostgreSQL too, the pool that survives a server restart and the
one-line error of a bad URL."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading

import pytest

from sshpanel.config import load_settings
from sshpanel.errors import Conflict, ConfigError, DatabaseUnavailable, NotFound
from sshpanel.store import open_store
from tests.databases import postgres_ctl


def test_pragmas_and_mode(tmp_path):
    store = open_store(load_settings({"data_dir": tmp_path}))
    db = store.database
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2
    assert (tmp_path / "sshpanel.db").stat().st_mode & 0o777 == 0o600
    store.close()


def test_older_schema_gains_missing_columns(tmp_path):
    path = tmp_path / "sshpanel.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE user (id INTEGER PRIMARY KEY, name VARCHAR(32) NOT NULL UNIQUE, role VARCHAR(8) NOT NULL,"
            " disabled INTEGER NOT NULL, password_hash VARCHAR(100), quota_containers INTEGER NOT NULL,"
            " quota_memory INTEGER NOT NULL, quota_cpus REAL NOT NULL, created DATETIME NOT NULL, last_login DATETIME)"
        )
        conn.execute("INSERT INTO user (name, role, disabled, quota_containers, quota_memory, quota_cpus, created)"
                     " VALUES ('old', 'user', 0, 1, 1, 1.0, '2026-01-01')")
    store = open_store(load_settings({"data_dir": tmp_path}))
    user = store.user_by_name("old")
    assert user is not None and user.role == "user"
    store.close()


@pytest.mark.databases
def test_users_keys_and_conflicts(database, tmp_path):
    store = open_store(load_settings({"data_dir": tmp_path, "database_url": database.new_url()}, environ={}))
    user = store.create_user("ann", "user", 3, 2**30, 2.0)
    store.add_key(user, "ssh-ed25519", "SHA256:x", "ssh-ed25519 AAAA", "")
    with pytest.raises(Conflict, match="already registered"):
        store.add_key(user, "ssh-ed25519", "SHA256:x", "ssh-ed25519 AAAA", "")
    with pytest.raises(Conflict, match="already exists"):
        store.create_user("ann", "user", 1, 1, 1.0)
    with store.user_transaction(user.id) as tx:
        tx.reserve_container("web", "img", "{}", 2**20, 0.5)
    with pytest.raises(Conflict):
        with store.user_transaction(user.id) as tx:
            tx.reserve_container("web", "img", "{}", 2**20, 0.5)
    assert store.usage(user.id) == (1, 2**20, 0.5)
    with pytest.raises(NotFound):
        with store.user_transaction(user.id + 100):
            pass
    store.close()


def test_a_bad_url_gives_one_line(tmp_path):
    """psycopg2's message has a hint on a second line; the panel says one."""
    settings = load_settings({"data_dir": tmp_path, "database_url": "postgresql://u:p@127.0.0.1:1/db"}, environ={})
    with pytest.raises(ConfigError) as refused:
        open_store(settings)
    assert str(refused.value) == "cannot open database: connection refused (127.0.0.1:1)"
    with pytest.raises(ConfigError, match="must be at least 1"):
        open_store(dataclasses.replace(settings, database_max_connections=0))


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_the_pool_reconnects_after_a_server_restart(database, tmp_path):
    """While PostgreSQL is down every query raises `DatabaseUnavailable` (one
    line); once it is back every thread works again, with no more
    connections than the maximum and none held between two queries."""
    settings = load_settings({"data_dir": tmp_path, "database_url": database.new_url(),
                              "database_max_connections": 3}, environ={})
    store = open_store(settings)
    user = store.create_user("rex", "user", 3, 2**30, 2.0)
    postgres_ctl("stop")
    try:
        with pytest.raises(DatabaseUnavailable) as down:
            store.users()
        assert down.value.message == "database unavailable, try again later"
        assert down.value.reason.startswith("connection refused (127.0.0.1:")
        with pytest.raises(DatabaseUnavailable):
            with store.user_transaction(user.id):
                pass
    finally:
        postgres_ctl("start")
    assert [row.name for row in store.users()] == ["rex"]
    opened = []

    def work() -> None:
        for _ in range(20):
            assert store.usage(user.id) == (0, 0, 0.0)
            opened.append(len(store.database._in_use))

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(opened) == 240 and max(opened) <= 3
    assert not store.database._in_use
    store.close()
