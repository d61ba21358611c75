"""Pure policy functions: key parsing and fingerprints, sizes, names, specs."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, strategies as st

from sshpanel.access.keys import parse_public_key
from sshpanel.access.names import check_container_name, check_user_name, generate_name
from sshpanel.access.policy import create_arguments
from sshpanel.access.quota import Usage, check_quota
from sshpanel.access.spec import make_spec, parse_env, parse_restart
from sshpanel.access.units import format_age, parse_cpus, parse_size
from sshpanel.errors import InvalidValue, QuotaExceeded


@pytest.mark.parametrize("kind, bits", [("ed25519", None), ("ecdsa", "256"), ("ecdsa", "521"), ("rsa", "3072")])
def test_fingerprint_matches_ssh_keygen(tmp_path, kind, bits):
    key = tmp_path / "k"
    cmd = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@host with spaces", "-f", str(key)]
    if bits:
        cmd += ["-b", bits]
    subprocess.run(cmd, check=True)
    expected = subprocess.run(["ssh-keygen", "-lf", str(key) + ".pub"], capture_output=True, text=True).stdout.split()[1]
    line = (tmp_path / "k.pub").read_text()
    parsed = parse_public_key('from="10.0.0.1",no-pty ' + line)
    assert parsed.fingerprint == expected
    assert parsed.comment == "me@host with spaces"
    assert parsed.openssh.startswith('from="10.0.0.1",no-pty ')


def test_weak_and_malformed_keys_are_refused(tmp_path):
    key = tmp_path / "weak"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(InvalidValue, match="2048"):
        parse_public_key((tmp_path / "weak.pub").read_text())
    with pytest.raises(InvalidValue, match="DSA"):
        parse_public_key("ssh-dss AAAAB3NzaC1kc3MAAACBAP== x")
    for bad in ["", "hello", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x",
                "ssh-ed25519 AAAA\nssh-ed25519 AAAA"]:
        with pytest.raises(InvalidValue):
            parse_public_key(bad)


@given(st.text(max_size=300))
def test_key_parser_never_crashes(text):
    try:
        parse_public_key(text)
    except InvalidValue:
        pass


@pytest.mark.parametrize("text, value", [("64m", 64 * 2**20), ("1g", 2**30), ("512MiB", 512 * 2**20), ("1048576", 2**20), ("1.5g", int(1.5 * 2**30)), ("10k", 10240)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-5m", "0", "abc", "1x", "1e400", "nan"])
def test_parse_size_rejects(text):
    with pytest.raises(InvalidValue):
        parse_size(text)


@given(st.text(max_size=40))
def test_parsers_raise_only_invalid_value(text):
    for parse in (parse_size, parse_cpus, parse_env, parse_restart, check_container_name, check_user_name):
        try:
            parse(text)
        except InvalidValue:
            pass


def test_names():
    assert check_container_name("web-1.a_b") == "web-1.a_b"
    for bad in ["", "../x", "a" * 64, "-x", "a b", "a/b", "web\n", "ü"]:
        with pytest.raises(InvalidValue):
            check_container_name(bad)
    with pytest.raises(InvalidValue):
        check_user_name("Alice.b")
    assert generate_name("reg/ns/busybox:latest", {"busybox-abcd"}, "abcdef12") == "busybox-abcde"


def test_quota_messages_say_which_and_by_how_much():
    limit = Usage(3, 1024 * 2**20, 1.0)
    check_quota(limit, Usage(2, 512 * 2**20, 0.5), Usage(1, 512 * 2**20, 0.5))
    with pytest.raises(QuotaExceeded, match="container quota"):
        check_quota(limit, Usage(3, 0, 0), Usage(1, 1, 0.1))
    with pytest.raises(QuotaExceeded, match="memory quota exceeded by 1MiB"):
        check_quota(limit, Usage(0, 1024 * 2**20, 0), Usage(1, 2**20, 0.1))
    with pytest.raises(QuotaExceeded, match="CPU quota exceeded by 0.50"):
        check_quota(limit, Usage(0, 0, 1.0), Usage(1, 2**20, 0.5))


def test_create_arguments_are_an_allow_list():
    spec = make_spec("web", "busybox", 64 * 2**20, 0.5, ["sleep", "1"], ["A=b"], "on-failure:3")
    args = create_arguments(spec, "alice", "ns", "sha256:" + "a" * 64, 128)
    forbidden = {"privileged", "devices", "device_requests", "cap_add", "volumes", "mounts", "volumes_from",
                 "network_mode", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns", "sysctls",
                 "cgroup_parent", "runtime", "oom_kill_disable", "ulimits", "links", "ports"}
    assert not forbidden & set(args)
    assert args["security_opt"] == ["no-new-privileges:true"]
    assert args["mem_limit"] == args["memswap_limit"] == 64 * 2**20
    assert args["nano_cpus"] == 500_000_000
    assert args["pids_limit"] == 128
    assert args["labels"] == {"io.ns.owner": "alice", "io.ns.name": "web"}
    assert args["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert args["name"] == "ns.alice.web" and args["network"] == "ns.alice"


def test_format_age():
    assert format_age(0.2) == "Less than a second ago"
    assert format_age(90) == "About a minute ago"
    assert format_age(3 * 3600) == "3 hours ago"
