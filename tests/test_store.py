"""The store: pragmas, file mode, additive migrations of an older schema;
users, keys, conflicts and user transactions on PostgreSQL too."""

from __future__ import annotations

import sqlite3

import pytest

from sshpanel.config import load_settings
from sshpanel.errors import Conflict, NotFound
from sshpanel.store import open_store


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
