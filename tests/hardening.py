"""Shared checks of what `docker inspect` shows for a container the panel
created (docs/ARCHITECTURE.md invariant 2, CIS Docker Benchmark section 5),
used by the policy, docker-bench and TUI-form tests."""

from __future__ import annotations

import re

import docker

from sshpanel.access.policy import DROPPED_CAPABILITIES

CAPABILITY_BITS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
    "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "MKNOD": 27,
    "AUDIT_WRITE": 29, "SETFCAP": 31,
}
"""Docker's default capability set (moby `oci/caps/defaults.go`) with each
capability's bit number (linux/capability.h)."""

EXPECTED_CAPABILITIES = sorted(set(CAPABILITY_BITS) - set(DROPPED_CAPABILITIES))
"""What a process in a panel container may hold: Docker's defaults minus the
dropped set, nothing added."""

EXPECTED_CAP_MASK = sum(1 << CAPABILITY_BITS[name] for name in EXPECTED_CAPABILITIES)
"""`CapEff`/`CapBnd` of /proc/self/status inside a panel container."""

DOCKER_DEFAULT_CAP_MASK = sum(1 << bit for bit in CAPABILITY_BITS.values())
"""Docker's default capability set as a mask (a privileged process has all)."""

NAMESPACE_MODES = ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode")
"""HostConfig namespace fields the panel must leave at the engine's default."""


def engine_defaults(client: docker.DockerClient, image: str) -> dict:
    """Returns the HostConfig of a container created with no options at all:
    the engine's defaults, which the panel must not loosen."""
    container = client.containers.create(image, ["true"])
    try:
        return container.attrs["HostConfig"]
    finally:
        container.remove(force=True)


def capability_mask(status_text: str, field: str = "CapEff") -> int:
    """Returns a capability mask read from `/proc/self/status` text."""
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == field:
            return int(value.strip(), 16)
    raise AssertionError(f"{field} not in {status_text!r}")


def assert_hardened(
    attrs: dict,
    namespace: str,
    owner: str,
    defaults: dict,
    publish_address: str = "127.0.0.1",
    port_range: tuple[int, int] | None = None,
    image_volumes: tuple[str, ...] = (),
    network: str = "",
) -> None:
    """Asserts every policy guarantee on one container's inspect data.

    Args:
        attrs: `docker inspect` of the container.
        namespace: The panel's namespace.
        owner: The user who created it.
        defaults: `engine_defaults(...)`, for the namespace modes.
        publish_address: The only host address a published port may bind.
        port_range: The owner's host port range (None: nothing published).
        image_volumes: Paths the image declares with `VOLUME`: the engine
            mounts an anonymous local volume there (no driver options).
        network: The one network it must be on; "" for the owner's
            (`<namespace>.<owner>`; a Compose project's is its own).
    """
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert not host.get("CapAdd")
    assert set(DROPPED_CAPABILITIES) <= set(host.get("CapDrop") or [])
    assert not host.get("Devices")
    assert not host.get("DeviceRequests")
    assert not host.get("DeviceCgroupRules")
    assert not host.get("Binds")
    for mount in host.get("Mounts") or []:  # only the owner's named volumes (run -v VOLUME:/path)
        assert mount["Type"] == "volume" and mount["Source"].startswith(f"{namespace}.{owner}."), mount
        assert not mount.get("BindOptions") and not (mount.get("VolumeOptions") or {}).get("DriverConfig"), mount
    for mount in attrs.get("Mounts") or []:
        assert mount["Type"] == "volume" and mount["Driver"] == "local", mount
        anonymous = mount["Destination"] in image_volumes and re.fullmatch("[0-9a-f]{64}", mount["Name"])
        assert anonymous or mount["Name"].startswith(f"{namespace}.{owner}."), mount
    assert not host.get("VolumesFrom")
    assert not host.get("VolumeDriver")
    network = network or f"{namespace}.{owner}"
    assert host["NetworkMode"] == network
    assert set(attrs["NetworkSettings"]["Networks"]) == {network}
    for mode in NAMESPACE_MODES:
        assert host.get(mode) == defaults.get(mode), mode
        assert not str(host.get(mode) or "").startswith("container:"), mode
    assert host["PidMode"] != "host" and host["IpcMode"] != "host" and host["UTSMode"] != "host"
    assert host["UsernsMode"] != "host"
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert attrs.get("AppArmorProfile") != "unconfined"
    assert not host.get("Sysctls")
    assert host.get("CgroupParent") == ""
    assert host.get("Runtime") == defaults.get("Runtime") == "runc"
    assert not host.get("OomKillDisable")
    assert not host.get("Ulimits")
    assert not host.get("Links")
    assert not host.get("ExtraHosts")
    assert host.get("MaskedPaths") == defaults.get("MaskedPaths") and host.get("MaskedPaths")
    assert host.get("ReadonlyPaths") == defaults.get("ReadonlyPaths") and host.get("ReadonlyPaths")
    assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] > 0
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["ReadonlyRootfs"] is False  # not applied, by design (SECURITY.md, CIS 5.12)
    assert host["PublishAllPorts"] is False
    bindings = host.get("PortBindings") or {}
    if port_range is None:
        assert not bindings
    for binds in bindings.values():
        for bind in binds:
            assert bind["HostIp"] == publish_address
            assert port_range is not None and port_range[0] <= int(bind["HostPort"]) <= port_range[1]
    labels = attrs["Config"]["Labels"] or {}
    assert labels.get(f"io.{namespace}.owner") == owner
