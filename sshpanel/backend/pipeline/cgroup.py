"""Provides `build_cgroup`, the cgroup that holds one user's build
containers under a pids limit (issue 21 "builds are held like
containers"): the engine's build API has no pids option, but it places
build containers under a given cgroup parent, and a parent's `pids.max`
bounds every process below it (kernel docs, cgroup-v1/pids.rst and
cgroup-v2.rst "PID")."""

from __future__ import annotations

import re
from pathlib import Path

from sshpanel.errors import PanelError

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,120}")


def build_cgroup(parent: str, name: str, pids: int, driver: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> str:
    """Creates (or reuses) the cgroup `parent/name` with `pids.max` set to
    `pids`, for the engine's `cgroupparent` build option.

    Both cgroup v1 (the `pids` hierarchy) and the unified v2 hierarchy are
    handled; the engine must use the `cgroupfs` driver, where a cgroup
    parent is a path (with the `systemd` driver it is a slice systemd
    manages, whose limits the panel cannot set by writing files). `parent`
    is made when missing; a panel that does not run as root needs it made
    and handed to it beforehand (`contrib/sshpanel.service` does so).

    Args:
        parent: The cgroup of every build cgroup, e.g. `sshpanel-build`.
        name: The user's cgroup in it, e.g. `alice`.
        pids: The process limit of all the user's build steps together.
        driver: The engine's `CgroupDriver` (`docker info`).
        cgroup_root: Mount point of the cgroup filesystem.

    Returns:
        The cgroup parent to pass to the engine (`/sshpanel-build/alice`).

    Raises:
        PanelError: The limit cannot be set (another cgroup driver, or the
            panel does not see a writable cgroup filesystem, e.g. when it
            runs in a container); the build must not start without it.
    """
    for part in (parent, name):
        if not _NAME.fullmatch(part) or part in (".", ".."):
            raise PanelError(f"invalid build cgroup name {part!r}")
    if driver != "cgroupfs":
        raise PanelError(f"builds need a pids limit, which the panel sets only with the engine's cgroupfs driver "
                         f"(this engine uses {driver or 'an unknown driver'}): set "
                         "\"exec-opts\": [\"native.cgroupdriver=cgroupfs\"] in /etc/docker/daemon.json")
    unified = (cgroup_root / "cgroup.controllers").exists() and not (cgroup_root / "pids").is_dir()
    top = cgroup_root / parent if unified else cgroup_root / "pids" / parent
    folder = top / name
    try:
        top.mkdir(exist_ok=True)
        if unified:  # a v2 child has pids.max only once its parent enables the controller
            for above in (cgroup_root, top):
                if "pids" not in (above / "cgroup.subtree_control").read_text().split():
                    (above / "cgroup.subtree_control").write_text("+pids")
        folder.mkdir(exist_ok=True)
        (folder / "pids.max").write_text(str(int(pids)))
    except OSError as exc:
        raise PanelError(f"builds need a pids limit and the panel cannot set it in {folder}: "
                         f"{exc.strerror or exc}") from None
    return f"/{parent}/{name}"
