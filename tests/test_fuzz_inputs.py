"""Bad input fuzzing with hypothesis (issue 7): every parser of user text —
published ports, volumes, environment names, durations, port ranges, the
`since` of logs, the create form's fields — either returns a value or
raises `InvalidValue` (or `UsageError`), never anything else."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings, strategies as st

from sshpanel.access.quota import parse_port_range
from sshpanel.access.spec import UNNAMED, CreateRequest, check_env_key, parse_publish, parse_volume, spec_from_request
from sshpanel.access.units import parse_duration, parse_since
from sshpanel.errors import InvalidValue, UsageError

TEXT = st.text(max_size=80)
HOSTILE = st.sampled_from(["../", "/etc", "\x00", "\n", ":", "$(id)", "`id`", "~", "%s", "\u202e", "-" * 70, "ro"])
MIXED = st.lists(st.one_of(TEXT, HOSTILE), max_size=5).map("".join)


@given(MIXED)
def test_value_parsers_raise_only_invalid_value(text):
    for parse in (parse_publish, parse_volume, check_env_key, parse_duration, parse_port_range):
        try:
            parse(text)
        except InvalidValue:
            pass


@given(MIXED)
def test_parse_since_raises_only_invalid_value(text):
    try:
        parse_since(text, now=dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc))
    except (InvalidValue, UsageError):
        pass


@settings(max_examples=200)
@given(MIXED, MIXED, MIXED, MIXED, MIXED, MIXED, MIXED)
def test_create_form_raises_only_invalid_value(name, image, command, env, memory, cpus, restart):
    try:
        request = CreateRequest(image, name, command, env, memory, cpus, restart)
        spec = spec_from_request(request, name or UNNAMED, 64 << 20, 0.5)
    except InvalidValue:
        return
    assert spec.name == (name or UNNAMED).strip() and not spec.volumes


@given(MIXED)
def test_volumes_never_name_a_host_path(text):
    try:
        mount = parse_volume(text)
    except InvalidValue:
        return
    assert "/" not in mount.name and not mount.name.startswith((".", "~")) and mount.target.startswith("/")
