"""Pure policy functions: key parsing and fingerprints, sizes, names, specs."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from hypothesis import given, strategies as st

from sshpanel.access.keys import parse_public_key
from sshpanel.access.names import check_container_name, check_user_name, generate_name
from sshpanel.access.policy import create_arguments
from sshpanel.access.quota import Usage, check_quota
from sshpanel.access.spec import make_spec, parse_env, parse_restart
from sshpanel.access.units import format_age, format_uptime, parse_cpus, parse_duration, parse_since, parse_size
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


@pytest.mark.parametrize(
    "seconds, docker, compact",
    [
        # go-units HumanDuration + " ago", as `docker ps` prints CREATED.
        (-5, "Less than a second ago", "just now"),
        (0.2, "Less than a second ago", "just now"),
        (1, "1 second ago", "1s ago"),
        (42, "42 seconds ago", "42s ago"),
        (60, "About a minute ago", "1m ago"),
        (119, "About a minute ago", "1m ago"),
        (120, "2 minutes ago", "2m ago"),
        (59 * 60 + 59, "59 minutes ago", "59m ago"),
        (3600, "About an hour ago", "1h ago"),
        (89 * 60, "About an hour ago", "1h ago"),
        (90 * 60, "2 hours ago", "2h ago"),
        (3 * 3600, "3 hours ago", "3h ago"),
        (47 * 3600, "47 hours ago", "47h ago"),
        (47.5 * 3600, "2 days ago", "2d ago"),
        (13 * 86400, "13 days ago", "13d ago"),
        (14 * 86400, "2 weeks ago", "2w ago"),
        (59 * 86400, "8 weeks ago", "8w ago"),
        (60 * 86400, "2 months ago", "2mo ago"),
        (400 * 86400, "13 months ago", "13mo ago"),
        (730 * 86400, "2 years ago", "2y ago"),
    ],
)
def test_format_age_words_as_docker(seconds, docker, compact):
    assert format_age(seconds) == docker
    assert format_age(seconds, compact=True) == compact


def test_format_uptime():
    assert format_uptime(42 * 60) == "0:42"
    assert format_uptime(86400 + 3600) == "1 day, 1:00"
    assert format_uptime(3 * 86400 + 4 * 3600 + 5 * 60) == "3 days, 4:05"


def test_durations_and_since():
    assert parse_duration("1h30m") == 5400 and parse_duration("2d") == 172800
    for bad in ("", "1x", "0s", "-1h", "h"):
        with pytest.raises(InvalidValue):
            parse_duration(bad)
    utc = dt.timezone.utc
    now = dt.datetime(2026, 1, 31, 12, 0, 0, tzinfo=utc)
    assert parse_since("1h", now) == dt.datetime(2026, 1, 31, 11, 0, 0, tzinfo=utc)
    assert parse_since("1h30m", now) == now - dt.timedelta(seconds=5400)
    assert parse_since("2026-01-30", now) == dt.datetime(2026, 1, 30, tzinfo=utc)
    assert parse_since("2026-01-30T12:00:00+02:00", now) == dt.datetime(2026, 1, 30, 10, 0, 0, tzinfo=utc)
    assert parse_since("2024-05-01T12:00:00.123456789Z", now) == dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=utc)
    assert parse_since("1699999999.5", now) == dt.datetime.fromtimestamp(1699999999.5, utc)
    for bad in ("yesterday", "soon", "nan", "1e308", ""):
        with pytest.raises(InvalidValue, match="invalid --since"):
            parse_since(bad, now)
