"""Provides the commands every user has for their own account and limits:
`keys ls|add|rm`, `quota`, `update` and `passwd`."""

from __future__ import annotations

import argparse
import asyncio
import json

from sshpanel.access.units import format_bytes, parse_cpus, parse_size
from sshpanel.backend.user.account import Account
from sshpanel.backend.user.disk import DiskUsage, usage_of
from sshpanel.backend.records import KeyView, QuotaView
from sshpanel.errors import InvalidValue, PanelError, UsageError
from sshpanel.ssh.commands.base import Context, Handler, table

MAX_STDIN = 64 * 1024
"""Most a command reads from stdin (key lines, a password), bytes."""


def register(sub) -> dict[str, Handler]:
    """Adds the account commands to the parser; returns their handlers."""
    keys = sub.add_parser("keys", help="list, add or remove your SSH keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    ls = keys_sub.add_parser("ls", help="list your keys with their SHA256 fingerprints")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    add = keys_sub.add_parser("add", help="add a key: a public key line, or - to read it from stdin")
    add.add_argument("key", nargs="?", default="-", metavar="KEY|-", help="OpenSSH public key line, or - (default)")
    rm = keys_sub.add_parser("rm", help="remove a key (not your last one)")
    rm.add_argument("fingerprint", metavar="FINGERPRINT", help="SHA256:... as `keys ls` shows it")

    quota = sub.add_parser("quota", help="show your quotas and what your containers use")
    quota.add_argument("--format", choices=("table", "json"), default="table", help="output format")

    update = sub.add_parser("update", help="change limits of containers, live, within your quota")
    update.add_argument("-m", "--memory", metavar="SIZE", help="memory limit (e.g. 256m, 1g)")
    update.add_argument("--cpus", metavar="F", help="CPU limit (e.g. 0.5)")
    update.add_argument("--restart", metavar="POLICY", help="no, always, unless-stopped, on-failure[:N]")
    update.add_argument("containers", nargs="+", metavar="CONTAINER")

    passwd = sub.add_parser("passwd", help="set your login password, read from stdin (if the server allows passwords)")
    passwd.add_argument("-d", "--delete", action="store_true", help="remove your password")
    return {"keys": _keys, "quota": _quota, "update": _update, "passwd": _passwd}


async def read_stdin(ctx: Context, limit: int = MAX_STDIN) -> str:
    """Reads the session's stdin to its end (`ssh host keys add - < key.pub`).

    Raises:
        InvalidValue: More than `limit` characters.
    """
    chunks: list[str] = []
    size = 0
    while True:
        data = await ctx.process.stdin.read(4096)
        if not data:
            return "".join(chunks)
        size += len(data)
        if size > limit:
            raise InvalidValue(f"input too long: at most {limit // 1024} KiB")
        chunks.append(data)


def key_rows(keys: list[KeyView]) -> tuple[tuple[str, ...], list[tuple]]:
    """Returns headers and rows of a key table (`keys ls`, `user key ls`)."""
    rows = [
        (
            k.algorithm,
            k.fingerprint,
            k.comment or "-",
            k.created.strftime("%Y-%m-%d %H:%M"),
            k.last_used.strftime("%Y-%m-%d %H:%M") if k.last_used else "never",
        )
        for k in keys
    ]
    return ("TYPE", "FINGERPRINT", "COMMENT", "ADDED", "LAST USED"), rows


def key_json(key: KeyView) -> dict:
    """Returns one key as a JSON object."""
    return {
        "Type": key.algorithm,
        "Fingerprint": key.fingerprint,
        "Comment": key.comment,
        "Key": key.openssh,
        "CreatedAt": key.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "LastUsed": key.last_used.strftime("%Y-%m-%dT%H:%M:%SZ") if key.last_used else None,
    }


def print_keys(ctx: Context, keys: list[KeyView], fmt: str) -> None:
    """Prints keys as a table or one JSON object per line."""
    if fmt == "json":
        for key in keys:
            ctx.out(json.dumps(key_json(key)))
    else:
        ctx.out(table(*key_rows(keys)))


async def _keys(ctx: Context, args: argparse.Namespace) -> int:
    account = Account(ctx.workspace)
    if args.keys_command == "ls":
        keys = await asyncio.to_thread(account.keys)
        print_keys(ctx, keys, args.format)
    elif args.keys_command == "add":
        text = await read_stdin(ctx) if args.key == "-" else args.key
        key = await asyncio.to_thread(account.add_key, text)
        ctx.out(f"added {key.fingerprint} ({key.algorithm})")
    else:
        key = await asyncio.to_thread(account.remove_key, args.fingerprint)
        ctx.out(f"removed {key.fingerprint}")
    return 0


def quota_json(quota: QuotaView) -> dict:
    """Returns a quota view as a JSON object (bytes and CPUs as numbers)."""
    return {
        "Containers": quota.containers,
        "MaxContainers": quota.max_containers,
        "Memory": quota.memory,
        "MaxMemory": quota.max_memory,
        "Cpus": quota.cpus,
        "MaxCpus": quota.max_cpus,
        "Pids": quota.pids,
        "Ports": quota.ports,
    }


def disk_json(disk: DiskUsage) -> dict:
    """Returns a disk usage as JSON fields (bytes; `DiskMeasuredAt` in RFC
    3339 UTC, null before the first measurement)."""
    return {
        "Disk": disk.total,
        "MaxDisk": disk.quota,
        "DiskFiles": disk.home,
        "DiskVolumes": disk.volumes,
        "DiskImages": disk.images,
        "DiskContainers": disk.containers,
        "DiskMeasuredAt": disk.measured.strftime("%Y-%m-%dT%H:%M:%SZ") if disk.measured else None,
    }


async def _quota(ctx: Context, args: argparse.Namespace) -> int:
    quota = ctx.workspace.quota()
    disk = await asyncio.to_thread(usage_of, ctx.workspace)
    if args.format == "json":
        ctx.out(json.dumps({**quota_json(quota), **disk_json(disk)}))
        return 0
    measured = disk.measured.strftime("%H:%M UTC") if disk.measured else "not yet"
    rows = [
        ("containers", quota.containers, quota.max_containers),
        ("memory", format_bytes(quota.memory), format_bytes(quota.max_memory)),
        ("cpus", f"{quota.cpus:g}", f"{quota.max_cpus:g}"),
        ("pids", "-", f"{quota.pids} per container"),
        ("ports", "-", quota.ports),
        ("disk", format_bytes(disk.total), format_bytes(disk.quota)),
        ("  files", format_bytes(disk.home), "-"),
        ("  volumes", format_bytes(disk.volumes), f"measured {measured}"),
        ("  images", format_bytes(disk.images), f"measured {measured}"),
        ("  containers", format_bytes(disk.containers), f"measured {measured}"),
    ]
    ctx.out(table(("QUOTA", "USED", "LIMIT"), rows))
    return 0


def _update(ctx: Context, args: argparse.Namespace) -> int:
    if args.memory is None and args.cpus is None and args.restart is None:
        raise UsageError("update: you must provide one or more flags (-m, --cpus, --restart)\nSee 'sshpanel update --help'.")
    memory = parse_size(args.memory) if args.memory is not None else None
    cpus = parse_cpus(args.cpus) if args.cpus is not None else None
    status = 0
    for ref in args.containers:
        try:
            ctx.out(ctx.workspace.update(ref, memory=memory, cpus=cpus, restart=args.restart).name)
        except PanelError as exc:
            ctx.err(f"Error: {exc.message}")
            status = 1
    return status


async def _passwd(ctx: Context, args: argparse.Namespace) -> int:
    account = Account(ctx.workspace, ctx.passwords)
    if args.delete:
        await asyncio.to_thread(account.set_password, None)
        ctx.out("password removed")
        return 0
    lines = (await read_stdin(ctx)).splitlines()
    if not lines or not lines[0]:
        raise InvalidValue("give the new password on stdin, e.g. `ssh panel.host passwd < file` (one line)")
    await asyncio.to_thread(account.set_password, lines[0])
    enabled = "" if ctx.workspace.settings.password_auth else " (password logins are off on this server)"
    ctx.out(f"password set{enabled}")
    return 0
