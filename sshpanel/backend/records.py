"""Provides the plain records of accounts, keys, quotas and the audit log
that the backend returns to the TUI and to the exec commands."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyView:
    """One public key of a user.

    Attributes:
        algorithm: Key type (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`...).
        fingerprint: `SHA256:...` exactly as `ssh-keygen -lf` prints it.
        comment: The key line's comment, may be empty.
        openssh: The key line as registered (options and comment preserved).
        created: When it was added, UTC.
        last_used: Last login with it, UTC, or None.
    """

    algorithm: str
    fingerprint: str
    comment: str
    openssh: str
    created: dt.datetime
    last_used: dt.datetime | None


@dataclass(frozen=True)
class QuotaView:
    """A user's quotas and what their live containers hold against them.

    Usage counts every container record that is not removed, running or
    stopped (a stopped container keeps its limits reserved), plus creates in
    flight.

    Attributes:
        containers: Live containers.
        max_containers: Container quota.
        memory: Memory limits summed, bytes.
        max_memory: Memory quota, bytes.
        cpus: CPU limits summed, in CPUs.
        max_cpus: CPU quota, in CPUs.
        pids: Process limit every new container gets.
        port_range: Inclusive host port range for published ports, or None
            when the user may not publish ports.
    """

    containers: int
    max_containers: int
    memory: int
    max_memory: int
    cpus: float
    max_cpus: float
    pids: int
    port_range: tuple[int, int] | None

    @property
    def ports(self) -> str:
        """The port range as `LOW-HIGH`, or `none`."""
        return f"{self.port_range[0]}-{self.port_range[1]}" if self.port_range else "none"


@dataclass(frozen=True)
class UserView:
    """A user as the admin's user list shows it.

    Attributes:
        name: User name (the SSH login name).
        role: `admin` or `user`.
        disabled: True when logins are refused.
        keys: Number of public keys.
        running: Containers running now (from the engine).
        quota: Quotas and usage (`quota.containers` is the total).
        has_password: True when a password is set (`passwd`).
        created: Account creation time, UTC.
        last_login: Last successful login, UTC, or None.
    """

    name: str
    role: str
    disabled: bool
    keys: int
    running: int
    quota: QuotaView
    has_password: bool
    created: dt.datetime
    last_login: dt.datetime | None


@dataclass(frozen=True)
class AuditView:
    """One audit log entry.

    Attributes:
        time: When, UTC.
        actor: Who acted (user name; kept after the user is deleted).
        fingerprint: Key that authenticated the session (`password` for a
            password login, empty for local commands).
        source: Client address `host:port`.
        action: What (`run`, `stop`, `user.add`, `keys.rm`, ...).
        target: On what (container name, user name, fingerprint).
        outcome: `ok`, `failed: <reason>` or `error: <type>`.
    """

    time: dt.datetime
    actor: str
    fingerprint: str
    source: str
    action: str
    target: str
    outcome: str
