"""Provides the local command line: `sshpanel serve`, `sshpanel user add|ls`,
`sshpanel hostkey`, `sshpanel db check|backup`.

Every flag of `serve` can also be set through an `SSHPANEL_*` environment
variable (see `sshpanel.config`). Errors print one line and exit non-zero,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

from sshpanel.config import Settings, load_settings
from sshpanel.errors import PanelError
from sshpanel.ssh.hostkeys import ssh_config_snippet


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the local `sshpanel` command."""
    parser = argparse.ArgumentParser(prog="sshpanel", description="A multi-user container panel reached over SSH.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the SSH server")
    serve.add_argument("--listen", help="address to bind (default 0.0.0.0, env SSHPANEL_LISTEN)")
    serve.add_argument("--port", type=int, help="TCP port (default 2222, 0 = any free port, env SSHPANEL_PORT)")
    _data_flags(serve)
    serve.add_argument("--host-keys", type=Path, dest="host_keys_dir", help="host key folder (default ./hostkeys, env SSHPANEL_HOST_KEYS_DIR)")
    serve.add_argument("--docker-host", help="Docker engine address (default: DOCKER_HOST or the local socket)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="processes serving sessions, e.g. one per core (default 1, env SSHPANEL_WORKERS)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    user = sub.add_parser("user", help="manage users without a running server")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="create a user with a public key")
    add.add_argument("name", help="user name (the SSH login name)")
    add.add_argument("--key", required=True, metavar="PUBKEY_FILE", help="OpenSSH public key file, or - for stdin")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--host", metavar="NAME", help="the panel's host name for the printed ~/.ssh/config entry "
                     "(default: this machine's name)")
    add.add_argument("--port", type=int, help="the panel's port for that entry (default 2222, env SSHPANEL_PORT)")
    _data_flags(add)
    ls = user_sub.add_parser("ls", help="list users and their key fingerprints")
    _data_flags(ls)

    hostkey = sub.add_parser("hostkey", help="print the host key's fingerprint, known_hosts line and SSHFP records")
    hostkey.add_argument("--host", metavar="NAME", help="the panel's DNS name (default: this machine's name)")
    hostkey.add_argument("--port", type=int, help="the panel's port (default 2222, env SSHPANEL_PORT)")
    hostkey.add_argument("--host-keys", type=Path, dest="host_keys_dir",
                         help="host key folder (default ./hostkeys, env SSHPANEL_HOST_KEYS_DIR)")

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    check = db_sub.add_parser("check", help="run the integrity check (exit 1 when damaged)")
    _data_flags(check)
    backup = db_sub.add_parser("backup", help="write an online copy of the database (SQLite: a database file; "
                               "PostgreSQL: a pg_dump archive)")
    backup.add_argument("path", type=Path, help="file to write")
    _data_flags(backup)
    return parser


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data folder (default ./data, env SSHPANEL_DATA_DIR)")
    parser.add_argument("--database-url", help="database URL, e.g. postgresql://... (default: SQLite in the data folder)")


def main(argv: list[str] | None = None) -> int:
    """Runs the local command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    overrides = {
        key: getattr(args, key, None)
        for key in ("listen", "port", "data_dir", "host_keys_dir", "database_url", "docker_host", "workers")
    }
    try:
        settings = load_settings(overrides)
        if args.command == "serve":
            return _serve(settings, args.verbose)
        if args.command == "db":
            return _db(settings, args)
        if args.command == "hostkey":
            return _hostkey(settings, args)
        return _user(settings, args)
    except PanelError as exc:
        print(f"sshpanel: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"sshpanel: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from sshpanel.backend.admin.accounts import Accounts
    from sshpanel.store import open_store

    accounts = Accounts(open_store(settings), settings)
    if args.user_command == "add":
        try:
            text = sys.stdin.read() if args.key == "-" else Path(args.key).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"sshpanel: cannot read key file {args.key}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            return 1
        summary = accounts.add_user(args.name, text.splitlines(), admin=args.admin)
        print(f"added {summary.role} {summary.name} with key {', '.join(summary.fingerprints)}")
        print(f"\n# for {summary.name}'s ~/.ssh/config (then: ssh {_host(args).split('.')[0]}):")
        print(ssh_config_snippet(summary.name, _host(args), settings.port), end="")
        return 0
    for summary in accounts.users():
        state = "disabled" if summary.disabled else "enabled"
        print(f"{summary.name}\t{summary.role}\t{state}\t{' '.join(summary.fingerprints)}")
    return 0


def _hostkey(settings: Settings, args: argparse.Namespace) -> int:
    """Prints what an admin hands users to trust the host key: the SHA256
    fingerprint (as `ssh-keygen -lf`), the `known_hosts` line and the SSHFP
    records (RFC 4255) of the panel's name; creates the key on first use,
    as `serve` would."""
    from sshpanel.ssh.hostkeys import host_key_fingerprint, known_hosts_line, load_or_create_host_key, sshfp_records

    key, _created = load_or_create_host_key(settings.host_keys_dir)
    host = _host(args)
    print(f"fingerprint: {host_key_fingerprint(key)}")
    print("# known_hosts line (~/.ssh/known_hosts):")
    print(known_hosts_line(key, [host], settings.port))
    print("# SSHFP records for the DNS zone (clients: ssh -o VerifyHostKeyDNS=yes):")
    for record in sshfp_records(key, f"{host}."):
        print(record)
    return 0


def _host(args: argparse.Namespace) -> str:
    return getattr(args, "host", None) or socket.getfqdn()


def _db(settings: Settings, args: argparse.Namespace) -> int:
    from sshpanel.store import open_store

    store = open_store(settings)
    if args.db_command == "check":
        ok = store.integrity_ok()
        print("ok" if ok else "integrity check FAILED")
        return 0 if ok else 1
    print(store.backup(args.path))
    return 0


def _serve(settings: Settings, verbose: bool) -> int:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    return asyncio.run(_serve_async(settings))


async def _serve_async(settings: Settings) -> int:
    from sshpanel.ssh.server import PanelServer
    from sshpanel.ssh.supervisor import Supervisor, check_workers
    from sshpanel.store import open_store

    if check_workers(settings.workers) == 1:
        server: PanelServer | Supervisor = PanelServer(settings, await asyncio.to_thread(open_store, settings))
    else:
        server = Supervisor(settings)
    try:
        await server.start()
    except OSError as exc:
        raise PanelError(f"cannot listen on {settings.listen}:{settings.port}: {exc.strerror or exc}") from None
    host = "localhost" if settings.listen in ("0.0.0.0", "::", "127.0.0.1") else settings.listen
    logging.getLogger("sshpanel").info("log in with: ssh -p %d USER@%s", server.port, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    logging.getLogger("sshpanel").info("shutting down")
    await server.stop()
    return 0
