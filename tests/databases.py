"""Provides the databases the tests run on: SQLite (the default) and the
throwaway PostgreSQL server `scripts/test.sh` starts (`setup_postgres` in
scripts/lib.sh), one fresh database per panel, dropped at the end."""

from __future__ import annotations

import os
import secrets
import subprocess
from urllib.parse import urlsplit, urlunsplit

# Read at import: the autouse fixture `_isolate_environment` removes every
# `SSHPANEL_*` variable before each test runs.
POSTGRES_URL = os.environ.get("SSHPANEL_TEST_POSTGRES_URL", "")
"""The PostgreSQL superuser's URL, or empty when no server was started."""
POSTGRES_BIN = os.environ.get("SSHPANEL_TEST_POSTGRES_BIN", "")
POSTGRES_DATA = os.environ.get("SSHPANEL_TEST_POSTGRES_DATA", "")
POSTGRES_USER = os.environ.get("SSHPANEL_TEST_POSTGRES_USER", "")
KINDS = ("sqlite", "postgres")
"""The parameters of the `database` fixture in modules marked `databases`."""


class Databases:
    """Hands out empty databases of one kind.

    Args:
        kind: `sqlite` (an empty URL: the panel's own file in its data dir)
            or `postgres` (a new database on the test server per call).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.created: list[str] = []

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def new_url(self) -> str:
        """Returns the `SSHPANEL_DATABASE_URL` of a new, empty database
        (empty for SQLite)."""
        if not self.is_postgres:
            return ""
        name = f"sptest_{secrets.token_hex(6)}"
        admin_query(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _with_database(POSTGRES_URL, name)

    def drop_all(self) -> None:
        """Drops every database this object created (their panels have stopped;
        `WITH (FORCE)` ends any connection left over)."""
        for name in self.created:
            admin_query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def admin_query(statement: str, params: tuple = ()) -> list[tuple]:
    """Runs one statement as the superuser outside a transaction; returns
    its rows (none for a statement that returns none)."""
    import psycopg2

    conn = psycopg2.connect(POSTGRES_URL)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def postgres_ctl(action: str) -> None:
    """Stops (`stop`, fast: open connections are cut) or starts (`start`,
    waiting until it answers) the test PostgreSQL server.

    Raises:
        subprocess.CalledProcessError: pg_ctl failed.
    """
    command = ["runuser", "-u", POSTGRES_USER, "--", f"{POSTGRES_BIN}/pg_ctl", "-D", POSTGRES_DATA, "-w"]
    if action == "stop":
        command += ["stop", "-m", "fast"]
    else:
        command += ["-l", f"{POSTGRES_DATA}/server.log", "start"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
