"""Provides `backup`, an online, consistent copy of the panel's database:
SQLite through its backup API, PostgreSQL through `pg_dump` (custom
format, restored with `pg_restore`). The file is made readable by its
owner only: it holds password hashes and encrypted secrets."""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import peewee as pw

from sshpanel.errors import ConfigError

DUMP_TIMEOUT = 3600.0
"""Seconds `pg_dump` may take at most."""


def backup(database: pw.Database, path: Path) -> str:
    """Writes a copy of `database` to `path` while writers keep going.

    Returns:
        One line for the admin: what was written and how to restore it.

    Raises:
        ConfigError: The target is unusable, `pg_dump` is missing or failed,
            or the database is of another kind.
    """
    secure_file(path)
    if isinstance(database, pw.SqliteDatabase):
        _sqlite(database, path)
        return f"backed up to {path} (a SQLite database file: stop the panel and put it in place to restore)"
    if isinstance(database, pw.PostgresqlDatabase):
        _postgres(database, path)
        return f"backed up to {path} (pg_dump custom format: restore with pg_restore --clean -d DATABASE {path})"
    raise ConfigError(f"backup does not know databases of kind {type(database).__name__}")


def secure_file(path: Path) -> None:
    """Creates `path` (and its folder) readable by its owner only (mode 0600).

    Raises:
        ConfigError: It cannot be created.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _sqlite(database: pw.SqliteDatabase, path: Path) -> None:
    try:
        target = sqlite3.connect(str(path))
        try:
            database.connection().backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"backup to {path} failed: {exc}") from None


def _postgres(database: pw.PostgresqlDatabase, path: Path) -> None:
    """Runs `pg_dump --format=custom`; the password goes through the
    environment (`PGPASSWORD`), never the command line, which `ps` shows."""
    program = pg_dump()
    params = database.connect_params
    argv = [program, "--format=custom", "--no-password", f"--file={path}", f"--dbname={database.database}"]
    for flag, key in (("--host", "host"), ("--port", "port"), ("--username", "user")):
        if params.get(key):
            argv.append(f"{flag}={params[key]}")
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DUMP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"pg_dump failed: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"pg_dump failed: {last[:300]}")


def pg_dump() -> str:
    """Finds `pg_dump`, newest server version first (it must be at least the
    server's major version).

    Raises:
        ConfigError: It is not installed (Debian: `postgresql-client`).
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    program = found[-1] if found else shutil.which("pg_dump")
    if not program:
        raise ConfigError("pg_dump is not installed (Debian: apt install postgresql-client); "
                          "it is what backs up a PostgreSQL database")
    return program
