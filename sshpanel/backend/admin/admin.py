"""Provides `Admin`, everything an admin can do beyond their own containers:
users, keys of any user, quotas, every user's containers, the audit log and
the host overview.

The gate sits at the entry point (docs/ARCHITECTURE.md "Conventions"): an
`Admin` cannot be built for a non-admin, and every public method first checks
again that the principal is still an enabled admin in the database, so an admin
demoted or disabled while their session is open loses the rights at once, and
any method added later is gated by default.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from sshpanel.access.names import network_name
from sshpanel.access.principal import ROLES, Principal, require_admin
from sshpanel.access.quota import quota_columns
from sshpanel.access.text import quoted
from sshpanel.backend.user.account import add_key, key_target, keys_of, remove_key
from sshpanel.backend.admin.accounts import create_user, keys_in

from sshpanel.backend.admin.host import HostView, host_overview
from sshpanel.backend.user.quotas import quota_view
from sshpanel.backend.records import AuditView, KeyView, QuotaView, UserView
from sshpanel.backend.views import ContainerView
from sshpanel.backend.user.workspace import Workspace
from sshpanel.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from sshpanel.store import admin as queries

Disconnect = Callable[[str, str], None]
"""`disconnect(user_name, reason)` closes every live session of a user; it is
called from worker threads, so it must be thread-safe."""


def open_admin(workspace: Workspace, action: str, target: str = "", disconnect: Disconnect | None = None) -> "Admin":
    """Entry gate of every admin command: returns the `Admin` service of the
    workspace's principal, or writes the refused attempt to the audit log.

    Args:
        workspace: The caller's workspace.
        action: What was attempted, for the audit log (`user.rm`, `audit`).
        target: On what (a user name), for the audit log.
        disconnect: See `Admin`.

    Raises:
        PermissionDenied: The principal is not an admin (after auditing it).
    """
    if not workspace.principal.is_admin:
        with workspace.audited(action, target):
            require_admin(workspace.principal)
    return Admin(workspace, disconnect)


class Admin:
    """The admin service, bound to one admin principal.

    Args:
        workspace: The admin's own workspace (principal, store, engine,
            settings; every change is audited through it).
        disconnect: Closes a user's live sessions (on disable and delete);
            None when there are no sessions to close (local tools).

    Raises:
        PermissionDenied: The principal is not an admin.

    Every method blocks (database, Docker): run it in a thread.
    """

    def __init__(self, workspace: Workspace, disconnect: Disconnect | None = None) -> None:
        require_admin(workspace.principal)
        self.workspace = workspace
        self.principal = workspace.principal
        self.store = workspace.store
        self.engine = workspace.engine
        self.settings = workspace.settings
        self._disconnect = disconnect

    # Users ---------------------------------------------------------------

    def users(self) -> list[UserView]:
        """Returns every user with keys, containers (running/total) and quota
        usage, by name.

        Raises:
            PermissionDenied: No longer an admin.
            EngineUnavailable: The engine does not answer (running counts).
        """
        self._require()
        usage = queries.usage_by_user()
        keys = queries.key_counts()
        running = self._running_by_user()
        return [self._user_view(user, usage, keys, running) for user in self.store.users()]

    def user(self, name: str) -> UserView:
        """Returns one user as `users` shows it.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
        """
        self._require()
        user = self._user(name)
        return self._user_view(user, queries.usage_by_user(), queries.key_counts(), self._running_by_user())

    def add_user(self, name: str, admin: bool = False, keys: str = "") -> UserView:
        """Creates a user with the server's default quotas.

        Args:
            name: User name (`[a-z_][a-z0-9_-]{0,31}`, the SSH login name).
            admin: Give the `admin` role.
            keys: OpenSSH public key lines (may be empty: the user then cannot
                log in until a key or a password is set).

        Returns:
            The new user (nothing running yet).

        Raises:
            PermissionDenied: No longer an admin.
            InvalidValue: Bad name or key text (RSA < 2048 bits, `ssh-dss`).
            Conflict: The name or a key is already registered.
        """
        with self.workspace.audited("user.add", name):
            self._require()
            lines = keys_in(keys)
            user = create_user(self.store, self.settings, name, lines, admin)
        return self._user_view(user, {}, {user.id: len(lines)}, {})

    def remove_user(self, name: str, force: bool = False) -> list[str]:
        """Deletes a user, their keys, records and network.

        Refused while the user owns containers, unless `force`: then the user
        is disabled and disconnected first (no new containers can appear),
        their containers are removed (killed if running), then the user.

        Returns:
            Short names of the containers removed.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
            Conflict: The user owns containers and `force` is False, or it
                is the caller themselves.
        """
        with self.workspace.audited("user.rm", name):
            self._require()
            user = self._not_self(name, "remove")
            owned = self.store.usage(user.id)[0]
            if owned and not force:
                raise Conflict(f"user {name} owns {owned} container(s): remove them first or use --force")
            removed = []
            if owned:
                with self.store.write():
                    queries.update_user(user.id, disabled=True)
                self._close_sessions(name, "your account was removed")
                owner = self.workspace_of(name)
                for row in self.store.containers_of(user.id):
                    removed.append(owner.remove(row.name, force=True))
            self._remove_network(name)
            with self.store.write():
                if self.store.usage(user.id)[0]:
                    raise Conflict(f"user {name} still has a container being created; try again")
                queries.delete_user(user.id)
            self._close_sessions(name, "your account was removed")
            return removed

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disables (or enables) a user. A disabled user cannot log in and
        their live sessions are closed; their containers keep running.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
            Conflict: It is the caller themselves.
        """
        with self.workspace.audited("user.disable" if disabled else "user.enable", name):
            self._require()
            user = self._not_self(name, "disable" if disabled else "enable")
            with self.store.write():
                queries.update_user(user.id, disabled=disabled)
            if disabled:
                self._close_sessions(name, "your account was disabled")

    def set_role(self, name: str, role: str) -> None:
        """Gives a user the `admin` or `user` role. A demoted admin loses admin
        rights at once; a promoted user gets them at their next login.

        Raises:
            PermissionDenied: No longer an admin.
            InvalidValue: Unknown role.
            NotFound: No such user.
            Conflict: It is the caller themselves (so one admin always remains).
        """
        with self.workspace.audited("user.set-role", f"{name} {role}"):
            self._require()
            if role not in ROLES:
                raise InvalidValue(f"invalid role {role[:16]!r}: use admin or user")
            user = self._not_self(name, "change the role of")
            with self.store.write():
                queries.update_user(user.id, role=role)

    def set_quota(
        self,
        name: str,
        containers: int | None = None,
        memory: int | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        ports: str | None = None,
    ) -> QuotaView:
        """Changes a user's quotas; None leaves a quota as it is.

        Lowering a quota below what the user holds is allowed: their
        containers keep running, but creating, starting and growing are
        refused until they are back within it.

        Args:
            name: The user.
            containers: Maximum number of containers (≥ 0).
            memory: Total memory of their containers, bytes (≥ 0).
            cpus: Total CPUs of their containers (≥ 0).
            pids: Process limit of each new container (≥ 1).
            ports: Host port range for published ports, `LOW-HIGH`, or
                `none` to forbid publishing.

        Returns:
            The user's quotas and usage after the change.

        Raises:
            PermissionDenied: No longer an admin.
            InvalidValue: A value out of range.
            NotFound: No such user.
        """
        asked = {"containers": containers, "memory": memory, "cpus": cpus, "pids": pids, "ports": ports}
        shown = " ".join(f"{key}={value}" for key, value in asked.items() if value is not None)
        with self.workspace.audited("user.set-quota", f"{name} {shown}".strip()):
            self._require()
            fields = quota_columns(containers, memory, cpus, pids, ports)
            user = self._user(name)
            with self.store.write():
                queries.update_user(user.id, **fields)
        return quota_view(self.store, self._user(name), self.settings)

    # Keys ----------------------------------------------------------------

    def keys(self, name: str) -> list[KeyView]:
        """Returns a user's public keys, oldest first.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
        """
        self._require()
        return keys_of(self.store, self._user(name).id)

    def add_key(self, name: str, line: str) -> KeyView:
        """Adds one OpenSSH public key line to a user (options and comment kept).

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
            InvalidValue: Not a supported key (RSA < 2048 bits, `ssh-dss`).
            Conflict: The key is already registered (a key has one owner).
        """
        with self.workspace.audited("user.key.add", f"{name} {key_target(line)}"):
            self._require()
            return add_key(self.store, self._user(name).id, line)

    def remove_key(self, name: str, fingerprint: str) -> KeyView:
        """Removes a key of a user. An admin may remove another user's last
        key (revoking a lost key), but not their own last one.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user or key.
            Conflict: The caller's own last key.
        """
        with self.workspace.audited("user.key.rm", f"{name} {fingerprint}"):
            self._require()
            user = self._user(name)
            return remove_key(self.store, user.id, fingerprint, keep_last=user.id == self.principal.user_id)

    # Containers, audit log, host ------------------------------------------

    def containers(self) -> list[ContainerView]:
        """Returns every container the panel manages, of every user, newest
        first; `ContainerView.owner` names the owner.

        Raises:
            PermissionDenied: No longer an admin.
            EngineUnavailable: The engine does not answer.
        """
        self._require()
        owners = {row.user_id for row in self.store.live_containers() if row.docker_id}
        views: list[ContainerView] = []
        for user in self.store.users():
            if user.id in owners:
                views.extend(self._workspace(user).containers(all=True))
        return sorted(views, key=lambda v: v.created, reverse=True)

    def workspace_of(self, name: str) -> Workspace:
        """Returns a Workspace over a user's containers for the admin to act
        on with the owner's actions (start, stop, update, remove...). Quotas
        are the owner's; the audit log names the admin as the actor.

        Get a fresh one per action: the admin check happens here.

        Raises:
            PermissionDenied: No longer an admin.
            NotFound: No such user.
        """
        self._require()
        return self._workspace(self._user(name))

    def audit_log(
        self,
        user: str | None = None,
        since: dt.datetime | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int = 200,
    ) -> list[AuditView]:
        """Returns audit entries of every user, newest first.

        Args:
            user: Only this actor.
            since: Only entries at or after this time (UTC).
            action: Only this action (`run`, `user.add`, ...).
            outcome: Only outcomes starting with this (`ok`, `failed`, `error`).
            limit: At most this many (1-10000).

        Raises:
            PermissionDenied: No longer an admin.
        """
        self._require()
        if since is not None and since.tzinfo is not None:
            since = since.astimezone(dt.timezone.utc).replace(tzinfo=None)
        rows = queries.audit_query(user, since, action, outcome, max(1, min(limit, 10_000)))
        return [AuditView(r.time, r.actor, r.fingerprint, r.source, r.action, r.target, r.outcome) for r in rows]

    def host(self) -> HostView:
        """Returns the host overview (CPU, memory, disk, load, engine).

        Raises:
            PermissionDenied: No longer an admin.
            EngineUnavailable: The engine does not answer.
        """
        self._require()
        return host_overview(self.engine)

    # Internals -----------------------------------------------------------

    def _require(self) -> None:
        """The gate at the top of every public method."""
        require_admin(self.principal)
        me = self.store.user_by_id(self.principal.user_id)
        if me is None or me.disabled or me.role != "admin":
            raise PermissionDenied("permission denied: you are no longer an admin")

    def _user(self, name: str):
        user = self.store.user_by_name(name)
        if user is None:
            raise NotFound(f"no such user: {quoted(name)}")
        return user

    def _not_self(self, name: str, verb: str):
        user = self._user(name)
        if user.id == self.principal.user_id:
            raise Conflict(f"you cannot {verb} yourself: ask another admin")
        return user

    def _workspace(self, user) -> Workspace:
        p = self.principal
        owner = Principal(user.id, user.name, user.role, p.fingerprint, p.source, actor=p.name)
        return Workspace(owner, self.store, self.engine, self.settings, self.workspace.events)

    def _user_view(self, user, usage: dict, keys: dict, running: dict) -> UserView:
        return UserView(
            name=user.name,
            role=user.role,
            disabled=user.disabled,
            keys=keys.get(user.id, 0),
            running=running.get(user.id, 0),
            quota=quota_view(self.store, user, self.settings, usage.get(user.id, (0, 0, 0.0))),
            has_password=bool(user.password_hash),
            created=user.created,
            last_login=user.last_login,
        )

    def _running_by_user(self) -> dict[int, int]:
        """Returns user id -> containers running now (one engine call)."""
        listed = self.engine.containers(filters={"label": self.settings.label_owner})
        running = {item["Id"] for item in listed if item.get("State") in ("running", "paused", "restarting")}
        counts: dict[int, int] = {}
        for row in self.store.live_containers():
            if row.docker_id in running:
                counts[row.user_id] = counts.get(row.user_id, 0) + 1
        return counts

    def _remove_network(self, name: str) -> None:
        """Removes the user's bridge network if it exists."""
        net = network_name(self.settings.namespace, name)
        for item in self.engine.networks(names=[net]):
            if item.get("Name") == net:
                self.engine.remove_network(item["Id"])

    def _close_sessions(self, name: str, reason: str) -> None:
        if self._disconnect is not None:
            self._disconnect(name, reason)
