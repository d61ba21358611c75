"""Provides the admin commands: `user ...`, `audit` and `host`.

One gate covers them all (docs/ARCHITECTURE.md "Conventions", as in
soft-serve): every verb of this module runs through `_gated`, which builds the
`Admin` service first; a non-admin gets "permission denied" (exit 1) and the
attempt is written to the audit log, whatever the subcommand, including ones
added later.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Callable

from sshpanel.access.units import format_age, format_bytes, format_uptime, parse_cpus, parse_since, parse_size
from sshpanel.backend.admin.admin import Admin, open_admin
from sshpanel.backend.admin.host import HostView
from sshpanel.backend.records import AuditView, UserView
from sshpanel.ssh.commands.account import print_keys, quota_json, read_stdin
from sshpanel.ssh.commands.base import Context, Handler, table

Action = Callable[[Admin, Context, argparse.Namespace, str], int]
"""An admin subcommand: runs in a worker thread with the gated service and
what was read from stdin (empty unless the command takes `-`)."""


def register(sub) -> dict[str, Handler]:
    """Adds the admin commands to the parser; returns their (gated) handlers."""
    user = sub.add_parser("user", help="manage users, their keys and quotas (admin)")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    ls = user_sub.add_parser("ls", help="list users")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    add = user_sub.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="give the admin role")
    add.add_argument("--key", metavar="KEY|-", help="public key line, or - to read key lines from stdin")
    rm = user_sub.add_parser("rm", help="delete a user (refused while they own containers)")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="remove their containers too")
    for verb, text in (("disable", "refuse logins and close live sessions"), ("enable", "allow logins again")):
        user_sub.add_parser(verb, help=text).add_argument("name")
    role = user_sub.add_parser("set-role", help="make a user an admin or a plain user")
    role.add_argument("name")
    role.add_argument("role", choices=("admin", "user"))
    quota = user_sub.add_parser("set-quota", help="change a user's quotas")
    quota.add_argument("name")
    quota.add_argument("--containers", type=int, metavar="N", help="maximum number of containers")
    quota.add_argument("--memory", metavar="SIZE", help="total memory (e.g. 2g)")
    quota.add_argument("--cpus", metavar="F", help="total CPUs (e.g. 1.5)")
    quota.add_argument("--pids", type=int, metavar="N", help="process limit of each new container")
    quota.add_argument("--ports", metavar="LOW-HIGH", help="host port range for published ports, or none")
    key = user_sub.add_parser("key", help="list, add or remove a user's keys")
    key_sub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    key_ls = key_sub.add_parser("ls", help="list a user's keys")
    key_ls.add_argument("name")
    key_ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    key_add = key_sub.add_parser("add", help="add a key: a public key line, or - to read it from stdin")
    key_add.add_argument("name")
    key_add.add_argument("key", nargs="?", default="-", metavar="KEY|-")
    key_rm = key_sub.add_parser("rm", help="remove a key by fingerprint")
    key_rm.add_argument("name")
    key_rm.add_argument("fingerprint", metavar="FINGERPRINT")

    audit = sub.add_parser("audit", help="read the audit log, newest first (admin)")
    audit.add_argument("--user", help="only this user's actions")
    audit.add_argument("--since", metavar="WHEN", help="duration (1h, 30m, 2d) or time (2026-01-31T12:00)")
    audit.add_argument("--action", help="only this action (run, stop, user.add, ...)")
    audit.add_argument("--outcome", help="only outcomes starting with this (ok, failed, error)")
    audit.add_argument("-n", "--limit", type=int, default=200, metavar="N", help="at most N entries (default 200)")
    audit.add_argument("--format", choices=("table", "json"), default="table", help="output format")

    host = sub.add_parser("host", help="show the host and the Docker engine (admin)")
    host.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    return {"user": _gated, "audit": _gated, "host": _gated}


async def _gated(ctx: Context, args: argparse.Namespace) -> int:
    """The gate of every admin verb: builds the Admin service (auditing a
    refusal), then reads stdin if the subcommand takes `-`, then runs it in
    a worker thread."""
    name, action = _route(args)
    target = getattr(args, "name", "") or ""

    def disconnect(user: str, reason: str) -> None:
        ctx.loop.call_soon_threadsafe(ctx.close_user_sessions, user, reason)

    admin = await asyncio.to_thread(open_admin, ctx.workspace, name, target, disconnect)
    text = ""
    if getattr(args, "key", None) == "-":
        text = await read_stdin(ctx)
    elif getattr(args, "key", None):
        text = args.key
    return await asyncio.to_thread(action, admin, ctx, args, text)


def _route(args: argparse.Namespace) -> tuple[str, Action]:
    """Returns the audit name (`user.key.add`) and the action of a command."""
    if args.verb == "user":
        sub = args.user_command
        if sub == "key":
            return f"user.key.{args.key_command}", _KEY_ACTIONS[args.key_command]
        return f"user.{sub}", _USER_ACTIONS[sub]
    return args.verb, _audit if args.verb == "audit" else _host


def _user_ls(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    users = admin.users()
    if args.format == "json":
        for user in users:
            ctx.out(json.dumps(user_json(user)))
        return 0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [
        (
            u.name,
            u.role,
            "disabled" if u.disabled else "enabled",
            u.keys,
            f"{u.running}/{u.quota.containers}",
            f"{format_bytes(u.quota.memory)}/{format_bytes(u.quota.max_memory)}",
            f"{u.quota.cpus:g}/{u.quota.max_cpus:g}",
            format_age((now - u.last_login).total_seconds()) if u.last_login else "never",
        )
        for u in users
    ]
    ctx.out(table(("NAME", "ROLE", "STATUS", "KEYS", "CONTAINERS", "MEMORY", "CPUS", "LAST LOGIN"), rows))
    return 0


def user_json(user: UserView) -> dict:
    """Returns one user as a JSON object (bytes and CPUs as numbers)."""
    return {
        "Name": user.name,
        "Role": user.role,
        "Disabled": user.disabled,
        "Keys": user.keys,
        "Running": user.running,
        **quota_json(user.quota),
        "Password": user.has_password,
        "CreatedAt": _iso(user.created),
        "LastLogin": _iso(user.last_login),
    }


def _user_add(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    user = admin.add_user(args.name, admin=args.admin, keys=text)
    ctx.out(f"added {user.role} {user.name} with {user.keys} key(s)")
    return 0


def _user_rm(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    removed = admin.remove_user(args.name, force=args.force)
    suffix = f" and {len(removed)} container(s): {', '.join(removed)}" if removed else ""
    ctx.out(f"removed user {args.name}{suffix}")
    return 0


def _user_disable(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    admin.set_disabled(args.name, True)
    ctx.out(f"disabled {args.name}")
    return 0


def _user_enable(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    admin.set_disabled(args.name, False)
    ctx.out(f"enabled {args.name}")
    return 0


def _user_set_role(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    admin.set_role(args.name, args.role)
    ctx.out(f"{args.name} is now {args.role}")
    return 0


def _user_set_quota(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    q = admin.set_quota(
        args.name,
        containers=args.containers,
        memory=parse_size(args.memory) if args.memory is not None else None,
        cpus=parse_cpus(args.cpus) if args.cpus is not None else None,
        pids=args.pids,
        ports=args.ports,
    )
    ctx.out(
        f"{args.name}: containers {q.max_containers}, memory {format_bytes(q.max_memory)}, "
        f"cpus {q.max_cpus:g}, pids {q.pids}, ports {q.ports}"
    )
    return 0


def _key_ls(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    print_keys(ctx, admin.keys(args.name), args.format)
    return 0


def _key_add(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    key = admin.add_key(args.name, text)
    ctx.out(f"added {key.fingerprint} ({key.algorithm}) to {args.name}")
    return 0


def _key_rm(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    key = admin.remove_key(args.name, args.fingerprint)
    ctx.out(f"removed {key.fingerprint} from {args.name}")
    return 0


_USER_ACTIONS: dict[str, Action] = {
    "ls": _user_ls,
    "add": _user_add,
    "rm": _user_rm,
    "disable": _user_disable,
    "enable": _user_enable,
    "set-role": _user_set_role,
    "set-quota": _user_set_quota,
}
_KEY_ACTIONS: dict[str, Action] = {"ls": _key_ls, "add": _key_add, "rm": _key_rm}


def _audit(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    since = parse_since(args.since) if args.since else None
    entries = admin.audit_log(args.user, since, args.action, args.outcome, args.limit)
    if args.format == "json":
        for entry in entries:
            ctx.out(json.dumps(audit_json(entry)))
        return 0
    rows = [
        (e.time.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target or "-", e.outcome, e.source or "-",
         e.fingerprint or "-")
        for e in entries
    ]
    ctx.out(table(("TIME", "USER", "ACTION", "TARGET", "OUTCOME", "SOURCE", "KEY"), rows))
    return 0


def audit_json(entry: AuditView) -> dict:
    """Returns one audit entry as a JSON object."""
    return {
        "Time": _iso(entry.time),
        "User": entry.actor,
        "Fingerprint": entry.fingerprint,
        "Source": entry.source,
        "Action": entry.action,
        "Target": entry.target,
        "Outcome": entry.outcome,
    }


def _host(admin: Admin, ctx: Context, args: argparse.Namespace, text: str) -> int:
    host = admin.host()
    if args.format == "json":
        ctx.out(json.dumps(host_json(host)))
        return 0
    rows = [
        ("engine", f"Docker {host.engine_version} (API {host.api_version})"),
        ("unprivileged", "true" if host.unprivileged else "false"),
        ("uptime", format_uptime(host.uptime)),
        ("load", " ".join(f"{v:.2f}" for v in host.load)),
        ("cpu", f"{host.cpu_percent:.1f}% (per core: {' '.join(f'{v:.0f}%' for v in host.cpu_per_core)})"),
        ("memory", f"{format_bytes(host.memory_used)} / {format_bytes(host.memory_total)}"),
        ("swap", f"{format_bytes(host.swap_used)} / {format_bytes(host.swap_total)}"),
        ("disk", f"{format_bytes(host.disk_used)} / {format_bytes(host.disk_total)} ({host.disk_path})"),
        ("containers", f"{host.containers_running} running, {host.containers_paused} paused, "
                       f"{host.containers_stopped} stopped, {host.containers_total} total"),
        ("images", str(host.images)),
    ]
    ctx.out(table(("HOST", "VALUE"), rows))
    return 0


def host_json(host: HostView) -> dict:
    """Returns the host overview as a JSON object (bytes, seconds, percent;
    `Unprivileged`: the engine remaps user namespaces)."""
    return {
        "EngineVersion": host.engine_version,
        "ApiVersion": host.api_version,
        "Unprivileged": host.unprivileged,
        "Uptime": round(host.uptime),
        "Load": list(host.load),
        "CpuPercent": host.cpu_percent,
        "CpuPerCore": list(host.cpu_per_core),
        "MemoryTotal": host.memory_total,
        "MemoryUsed": host.memory_used,
        "SwapTotal": host.swap_total,
        "SwapUsed": host.swap_used,
        "DiskPath": host.disk_path,
        "DiskTotal": host.disk_total,
        "DiskUsed": host.disk_used,
        "ContainersRunning": host.containers_running,
        "ContainersPaused": host.containers_paused,
        "ContainersStopped": host.containers_stopped,
        "Containers": host.containers_total,
        "Images": host.images,
    }


def _iso(when: dt.datetime | None) -> str | None:
    """Formats a stored UTC time as RFC 3339 (`2026-01-31T12:00:00Z`)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None
