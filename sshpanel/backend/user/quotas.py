"""Provides quota enforcement beyond create: the quota view, the check at
start of a stopped container, published ports at create, and `update`
(Docker's update API, live) within quota.

Usage model: every container record that is not removed counts, running or
stopped (its memory and CPUs stay reserved), so starting needs no new room;
`start` is refused only when the user is over a quota, which happens when
an admin lowered it after the container was created.
"""

from __future__ import annotations

import json

from sshpanel.access.quota import Usage, check_ports, check_quota
from sshpanel.access.spec import ContainerSpec, parse_restart
from sshpanel.backend.engine import translate_errors
from sshpanel.backend.records import QuotaView
from sshpanel.backend.user.scope import UserScope
from sshpanel.config import Settings
from sshpanel.errors import InvalidValue, NotFound, PanelError, QuotaExceeded, UsageError
from sshpanel.store import Store
from sshpanel.store.reservations import UserTransaction

MIN_MEMORY = 6 * 1024 * 1024
"""Docker's minimum memory limit, bytes."""


def limits_of(user) -> Usage:
    """Returns a user record's count, memory and CPU quotas."""
    return Usage(user.quota_containers, user.quota_memory, user.quota_cpus)


def pids_of(user, settings: Settings) -> int:
    """Returns the process limit a new container of `user` gets: the user's
    pids quota, else the server's `default_pids` (CIS Docker 5.28)."""
    return user.quota_pids or settings.default_pids


def port_range_of(user) -> tuple[int, int] | None:
    """Returns the user's inclusive host port range, or None."""
    if user.quota_port_low is None or user.quota_port_high is None:
        return None
    return user.quota_port_low, user.quota_port_high


def quota_view(store: Store, user, settings: Settings, usage: tuple[int, int, float] | None = None) -> QuotaView:
    """Returns a user's quotas and usage.

    Args:
        store: The repository.
        user: The user record.
        settings: For the default pids limit.
        usage: (count, memory, CPUs) when already known, else read now.
    """
    count, memory, cpus = usage if usage is not None else store.usage(user.id)
    return QuotaView(
        containers=count,
        max_containers=user.quota_containers,
        memory=memory,
        max_memory=user.quota_memory,
        cpus=round(cpus, 3),
        max_cpus=user.quota_cpus,
        pids=pids_of(user, settings),
        port_range=port_range_of(user),
    )


def check_publish(tx: UserTransaction, spec: ContainerSpec) -> None:
    """Checks a spec's published ports against the user's range and the
    ports other live containers publish, in the transaction that reserves
    the container (the host ports stay locked until it ends).

    Raises:
        QuotaExceeded: No range, or a host port outside it.
        Conflict: A host port is already published.
    """
    if not spec.ports:
        return
    in_use = {
        key: (f"your container {name}" if owner == tx.user.id else "another user's container")
        for key, (owner, name) in tx.published_ports().items()
    }
    check_ports(spec.ports, port_range_of(tx.user), in_use)


def check_start(store: Store, user_id: int, row) -> None:
    """Refuses to start a container while its owner is over a quota.

    Args:
        store: The repository.
        user_id: The owner's user id.
        row: The container record.

    Raises:
        QuotaExceeded: Names the quota, e.g. after an admin lowered it.
    """
    user = store.user_by_id(user_id)
    count, memory, cpus = store.usage(user.id)
    others = Usage(count - 1, memory - row.memory, cpus - row.cpus)
    try:
        check_quota(limits_of(user), others, Usage(1, row.memory, row.cpus))
    except QuotaExceeded as exc:
        raise QuotaExceeded(f"cannot start {row.name}: {exc.message}") from None


def check_update(memory: int | None, cpus: float | None, restart: str | None) -> tuple[str, int] | None:
    """Validates what `update` was asked to change, before the container is
    looked up.

    Args:
        memory: New memory limit, bytes, or None.
        cpus: New CPU limit, in CPUs, or None.
        restart: New restart policy (`no`, `always`, `unless-stopped`,
            `on-failure[:N]`), or None.

    Returns:
        The parsed restart policy (name, retries), or None to keep it.

    Raises:
        UsageError: Nothing to change.
        InvalidValue: Memory under 6 MiB or a bad restart policy.
    """
    if memory is None and cpus is None and restart is None:
        raise UsageError("update: give at least one of -m/--memory, --cpus, --restart")
    if memory is not None and memory < MIN_MEMORY:
        raise InvalidValue("memory limit must be at least 6m (Docker's minimum)")
    return parse_restart(restart) if restart is not None else None


def update_limits(
    scope: UserScope, row, memory: int | None, cpus: float | None, policy: tuple[str, int] | None
) -> None:
    """Changes the memory limit, CPU limit and/or restart policy of one of the
    user's containers, live (`docker update`).

    The new limits are checked and recorded in one transaction, then Docker
    is called; if Docker refuses, the old limits are put back. Lowering a
    limit is always allowed, even when the user is over quota.

    Args:
        scope: The owner's session.
        row: The container record, resolved among the owner's.
        memory: New memory limit, bytes (swap stays equal to memory), or None.
        cpus: New CPU limit, in CPUs, or None.
        policy: New restart policy from `check_update`, or None.

    Raises:
        NotFound: The container was removed meanwhile.
        QuotaExceeded: Memory or CPU quota would be exceeded.
        EngineError: Docker refused (e.g. memory below what the container uses).
    """
    store = scope.store
    with store.user_transaction(scope.principal.user_id) as tx:
        current = store.container_by_docker_id(row.docker_id)
        if current is None or current.removed is not None:
            raise NotFound(f"no such container: {row.name}")
        spec = json.loads(current.spec)
        new_memory = memory if memory is not None else current.memory
        new_cpus = cpus if cpus is not None else current.cpus
        if policy is not None:
            spec["restart"], spec["restart_retries"] = policy
        spec["memory"], spec["cpus"] = new_memory, new_cpus
        _check_growth(tx, current, new_memory, new_cpus)
        tx.update_limits(current.id, new_memory, new_cpus, json.dumps(spec, sort_keys=True))
    try:
        _docker_update(scope, current, new_memory, new_cpus, spec["restart"], spec["restart_retries"])
    except BaseException as exc:
        with store.user_transaction(scope.principal.user_id) as tx:
            tx.update_limits(current.id, current.memory, current.cpus, current.spec)
        detail = exc.message if isinstance(exc, PanelError) else type(exc).__name__
        store.add_event(scope.principal.user_id, current.id, "update", ok=False, detail=detail)
        raise
    store.add_event(
        scope.principal.user_id, current.id, "update",
        detail=f"memory={new_memory} cpus={new_cpus} restart={spec['restart']}",
    )


def _check_growth(tx: UserTransaction, current, new_memory: int, new_cpus: float) -> None:
    """Checks the quota for the dimensions that grow, with the user locked."""
    limit = limits_of(tx.user)
    count, memory, cpus = tx.usage()
    others = Usage(count, memory - current.memory, cpus - current.cpus)
    # A dimension that does not grow never fails, even over quota.
    effective = Usage(
        limit.containers,
        limit.memory if new_memory > current.memory else max(limit.memory, others.memory + new_memory),
        limit.cpus if new_cpus > current.cpus + 1e-9 else max(limit.cpus, others.cpus + new_cpus),
    )
    check_quota(effective, others, Usage(0, new_memory, new_cpus))


def _docker_update(scope: UserScope, row, memory: int, cpus: float, policy: str, retries: int) -> None:
    """Calls `POST /containers/{id}/update`.

    The SDK's `update_container` cannot send `NanoCpus`, and Docker refuses
    `CpuQuota` on a container created with `NanoCpus` (the policy's
    `nano_cpus`), so the body is posted as the docker CLI sends it.
    """
    # Unlike create, update reads an empty name as "unchanged": send `no`.
    restart: dict = {"Name": policy}
    if policy == "on-failure":
        restart["MaximumRetryCount"] = retries
    body = {"Memory": memory, "MemorySwap": memory, "NanoCpus": int(cpus * 1e9), "RestartPolicy": restart}
    with translate_errors(f"no such container: {row.name}"):
        scope.engine.update_container(row.docker_id, body)
