"""Provides the tables of the admin area: `UserTable`, `AllContainersTable`,
`KeyTable` and `AuditTable`."""

from __future__ import annotations

import datetime as dt

from rich.text import Text

from sshpanel.access.units import format_age, format_bytes
from sshpanel.backend.records import AuditView, KeyView, UserView
from sshpanel.backend.views import ContainerView
from sshpanel.tui.widgets.container_table import STATE_STYLES
from sshpanel.tui.widgets.record_table import Column, RecordTable
from sshpanel.tui.widgets.log_view import drawn


def as_utc(when: dt.datetime) -> dt.datetime:
    """Returns a stored time (naive UTC) as an aware UTC time."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def outcome_style(outcome: str) -> str:
    """Rich style of an audit outcome: green `ok`, red otherwise."""
    return "green" if outcome == "ok" else "red"


class UserTable(RecordTable[UserView]):
    """Every user: role, status, keys, containers running/total, memory and
    CPUs used/quota, last login."""

    COLUMNS = (
        Column("NAME", "name", 8),
        Column("ROLE", "role"),
        Column("STATUS", "status"),
        Column("KEYS", "keys"),
        Column("CONTAINERS", "containers", 5),
        Column("MEMORY", "memory", 9),
        Column("CPUS", "cpus", 5),
        Column("LAST LOGIN", "login", 7),
    )
    SHRINK_ORDER = ("login", "containers", "memory", "name", "cpus")

    def record_key(self, record: UserView) -> str:
        """Users are keyed by name."""
        return record.name

    def cells(self, record: UserView) -> tuple[Text, ...]:
        """One user's row."""
        quota = record.quota
        now = dt.datetime.now(dt.timezone.utc)
        return (
            Text(drawn(record.name), style="bold"),
            Text(record.role, style="magenta" if record.role == "admin" else ""),
            Text("disabled", style="bold red") if record.disabled else Text("enabled", style="green"),
            Text(str(record.keys)),
            Text(f"{record.running}/{quota.containers} of {quota.max_containers}"),
            Text(f"{format_bytes(quota.memory)}/{format_bytes(quota.max_memory)}"),
            Text(f"{quota.cpus:g}/{quota.max_cpus:g}"),
            Text(format_age((now - as_utc(record.last_login)).total_seconds(), compact=True) if record.last_login
                 else "never"),
        )


class AllContainersTable(RecordTable[ContainerView]):
    """Every container the panel manages, with its owner."""

    COLUMNS = (
        Column("OWNER", "owner", 6),
        Column("NAME", "name", 8),
        Column("IMAGE", "image", 10),
        Column("STATE", "state"),
        Column("STATUS", "status", 10),
        Column("MEMORY", "memory"),
        Column("CPUS", "cpus"),
    )
    SHRINK_ORDER = ("image", "status", "name", "owner")

    def record_key(self, record: ContainerView) -> str:
        """Containers are keyed by full Docker ID."""
        return record.id

    def cells(self, record: ContainerView) -> tuple[Text, ...]:
        """One container's row."""
        return (
            Text(drawn(record.owner), style="magenta"),
            Text(drawn(record.name), style="bold"),
            Text(drawn(record.image)),
            Text(record.state, style=STATE_STYLES.get(record.state, "")),
            Text(drawn(record.status)),
            Text(format_bytes(record.memory)),
            Text(f"{record.cpus:g}"),
        )


class KeyTable(RecordTable[KeyView]):
    """A user's public keys with SHA256 fingerprints as `ssh-keygen -lf` prints them."""

    COLUMNS = (
        Column("TYPE", "type", 7),
        Column("FINGERPRINT", "fingerprint"),
        Column("COMMENT", "comment", 3),
    )
    SHRINK_ORDER = ("comment", "type")

    def record_key(self, record: KeyView) -> str:
        """Keys are keyed by fingerprint (unique across users)."""
        return record.fingerprint

    def cells(self, record: KeyView) -> tuple[Text, ...]:
        """One key's row."""
        return (Text(record.algorithm), Text(record.fingerprint, style="bold"), Text(drawn(record.comment)))


class AuditTable(RecordTable[AuditView]):
    """Audit entries, newest first; the screen shows the selected entry in full."""

    COLUMNS = (
        Column("TIME", "time"),
        Column("USER", "user", 6),
        Column("ACTION", "action", 8),
        Column("TARGET", "target", 8),
        Column("OUTCOME", "outcome", 6),
    )
    SHRINK_ORDER = ("target", "outcome", "action", "user")

    def record_key(self, record: AuditView) -> str:
        """Entries are keyed by time, actor, action and target (repeats are
        numbered by the base class)."""
        return f"{record.time.isoformat()} {record.actor} {record.action} {record.target}"

    def cells(self, record: AuditView) -> tuple[Text, ...]:
        """One entry's row."""
        return (
            Text(record.time.strftime("%m-%d %H:%M:%S"), style="dim"),
            Text(drawn(record.actor), style="bold"),
            Text(drawn(record.action)),
            Text(drawn(record.target or "-")),
            Text(drawn(record.outcome), style=outcome_style(record.outcome)),
        )
