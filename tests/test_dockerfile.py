"""The panel's one reading of a Dockerfile (`sshpanel.access.dockerfile`,
issue 21): each way of writing a forbidden instruction that Docker's parser
accepts is refused or seen for what it is. Pure: no engine here; the same
holes through the real server and engine are in tests/test_build_bypass.py.
"""

from __future__ import annotations

import itertools

import pytest

from sshpanel.access.dockerfile import parse, trigger_bases
from sshpanel.errors import InvalidValue

BOB = "ns/bob/img:1"
URL = "http://127.0.0.1:9/x"
TEXTS = {
    "from": f"FROM {BOB}\nRUN true\n",
    "copy-from": f"FROM base:1\nCOPY --from={BOB} /secret.txt /s\n",
    "onbuild": f"FROM base:1 AS s\nONBUILD COPY --from={BOB} /secret.txt /s\nFROM s\n",
    "add-url": f"FROM base:1\nADD {URL} /y\n",
    "onbuild-add": f"FROM base:1\nONBUILD ADD {URL} /y\n",
    "every-keyword": (f"ARG V=1\nFROM base:1 AS s\nENV B=2\nLABEL c=d\nEXPOSE 80\nUSER 1\nWORKDIR /w\nVOLUME /v\n"
                      "STOPSIGNAL TERM\nHEALTHCHECK CMD true\nSHELL [\"/bin/sh\", \"-c\"]\nCMD true\n"
                      "ENTRYPOINT [\"x\"]\nMAINTAINER m\nRUN true\nCOPY a b\nADD c d\n"
                      f"COPY --from={BOB} /secret.txt /s\n"),
}
JOINERS = ("{e}\n", "{e}  \n", "{e}\t\n", "{e}\n# a comment\n", "{e}\n\n", "{e}\n   \n", "{e}\n#\n\n", "{e}\r\n")
"""What may stand between the two halves of a split word: the escape
character and a newline, trailing blanks, comment and blank lines."""
HEADERS = (("", "\\"), ("\ufeff", "\\"), ("# escape=`\n", "`"), ("# escape=\\\n", "\\"), ("\ufeff# escape=`\n", "`"),
           ("# syntax=x\n# escape=`\n", "`"))
"""A byte-order mark and the escape directive, with the escape character
each makes the parser use."""


def _variants():
    """Every line of every text split at every position by every joiner,
    under every header, written with the right and the wrong escape."""
    for (kind, text), (header, escape), joiner in itertools.product(TEXTS.items(), HEADERS, JOINERS):
        lines = text.splitlines(keepends=True)
        for index, line in enumerate(lines):
            for cut in range(1, len(line.rstrip("\n"))):
                for used in {escape, "\\", "`"}:
                    split = line[:cut] + joiner.format(e=used) + line[cut:]
                    yield kind, header + "".join(lines[:index]) + split + "".join(lines[index + 1:])


VARIANTS = list(_variants())


def _outcome(text: str):
    try:
        return parse(text)
    except InvalidValue:
        return None


def test_the_generated_set_is_large():
    assert len(VARIANTS) > 40_000


@pytest.mark.parametrize("kind", ["from", "copy-from", "onbuild", "every-keyword"])
def test_every_split_of_an_image_name_is_refused_or_seen_regression(kind):
    """Bob's image is named however the line is split: either the file is
    refused, or the image check sees bob's image among the bases (and
    refuses it), or nothing in what the engine gets names it at all."""
    for variant_kind, text in VARIANTS:
        if variant_kind != kind:
            continue
        result = _outcome(text)
        if result is None or BOB in result.bases:
            continue
        assert "bob" not in result.render("1:alice"), (text, result)


@pytest.mark.parametrize("kind", ["add-url", "onbuild-add"])
def test_no_split_makes_add_fetch_a_url_regression(kind):
    """No way of writing `ADD http://...` reaches the engine."""
    for variant_kind, text in VARIANTS:
        if variant_kind != kind:
            continue
        result = _outcome(text)
        if result is not None:
            assert "127.0.0.1" not in result.render("1:alice"), text


def test_what_the_engine_builds_parses_back_to_what_was_checked():
    for _, text in VARIANTS[::37]:
        result = _outcome(text)
        if result is not None:
            again = parse(result.render())
            assert [(i.keyword, i.flags, i.args) for i in again.instructions] == \
                [(i.keyword, i.flags, i.args) for i in result.instructions]
            assert again.bases == result.bases


@pytest.mark.parametrize("text", [
    f"FROM \\\n\n{BOB}\n",                              # an empty continuation line
    f"\ufeffFROM {BOB}\n",                               # a byte-order mark
    f"FROM base:1\nCOPY --fr\\\nom={BOB} /a /b\n",       # a flag split in two
    f"FROM \\\n# a comment\n{BOB}\n",                    # a comment inside a continuation
    f"# escape=`\nFROM base:1\nCOPY --from={BOB} `\n /a /b\n",
    f"FROM base:1 AS s\nONBUILD COPY --from={BOB} /a /b\nFROM s\n",
    f"FROM base:1\nCOPY --from=\"{BOB}\" /a /b\n",             # flag quotes: the parser removes them
])
def test_the_reported_bypasses_name_bobs_image_regression(text):
    assert BOB in parse(text).bases


@pytest.mark.parametrize("text", [
    "FROM base:1\nADD http:\\\n//127.0.0.1:9/x /y\n",
    "FROM base:1\nADD h\"t\"tp://127.0.0.1/x /y\n",
    "FROM base:1\nADD [\"\\u0068ttp://127.0.0.1/x\", \"/y\"]\n",
    "FROM base:1\nARG U=http://127.0.0.1/x\nADD $U /y\n",
    "FROM base:1\nADD ${U:-http://127.0.0.1/x} /y\n",
    "FROM base:1\nADD h\\ttp://127.0.0.1/x /y\n",
    "FROM base:1\nADD git@127.0.0.1:repo /y\n",
    f"FROM base:1\nONBUILD ADD {URL} /y\n",
])
def test_add_of_a_url_is_refused_however_written_regression(text):
    with pytest.raises(InvalidValue):
        parse(text)


@pytest.mark.parametrize("text", [
    'FROM "ns/bob/img:1"\n', "FROM ns/b\\ob/img:1\n", "FROM ns/bob/im''g:1\n", "FROM $BASE\n",
    "FROM ${BASE:-ns/bob/img:1}\n", "FROM base:1\nCOPY --from=\"ns/b\\\"ob/img:1\" /a /b\n",
    "FROM base:1\nCOPY --from=$X /a /b\n",
])
def test_image_names_the_engine_would_expand_are_refused_regression(text):
    """The engine expands FROM and --from like a shell word: quotes,
    escapes and variables would make the checked name differ from the built."""
    with pytest.raises(InvalidValue):
        parse(text)


@pytest.mark.parametrize("text, message", [
    ("FROM base:1\nRUN <<EOF\ntrue\nEOF\n", "heredocs"),
    ("FROM base:1\nCOPY <<EOF /x\nhi\nEOF\n", "heredocs"),
    ("FROM base:1\nRUN --mount=type=bind,from=ns/bob/img:1,target=/m cat /m/secret.txt\n", "not supported"),
    ("FROM base:1\nRUN --network=host true\n", "not supported"),
    ("FROM base:1\nRUN --security=insecure true\n", "not supported"),
    ("FROM base:1\nADD --checksum=sha256:0 x /y\n", "not supported"),
    ("FROM base:1\nCOPY --FROM=ns/bob/img:1 /a /b\n", "not supported"),
    ("FROM base:1\nCOPY --from ns/bob/img:1 /a /b\n", "not supported"),
    ("FROM base:1\nONBUILD ONBUILD RUN true\n", "ONBUILD trigger"),
    ("FROM base:1\nONBUILD FROM ns/bob/img:1\n", "ONBUILD trigger"),
    ("FROM base:1\nFROBNICATE x\n", "unknown instruction"),
    ("RUN true\nFROM base:1\n", "must start with FROM"),
    ("# only a comment\n", "no instructions"),
    ("FROM base:1 AS Bad$Name\n", "stage name"),
])
def test_what_the_engine_cannot_build_the_same_way_is_refused(text, message):
    with pytest.raises(InvalidValue, match=message):
        parse(text)


def test_stages_and_stage_numbers_are_not_images():
    text = "ARG V=1\nFROM base:1 AS Builder\nRUN true\nFROM scratch\nCOPY --from=builder /a /b\nCOPY --from=0 /a /c\n"
    assert parse(text).bases == ("base:1",)


def test_the_escape_directive_is_kept_so_words_mean_the_same():
    text = "# escape=`\nFROM base:1\nRUN echo C:\\dir `\n  more\n"
    result = parse(text)
    assert result.escape == "`"
    assert result.render().startswith("# escape=`\n")
    assert "RUN echo C:\\dir   more" in result.render()


def test_every_stage_starts_with_the_owner_step():
    """The build cache is shared by the engine's users: after every FROM
    the owner's own step, so a user's chain never reaches another's cache."""
    text = "FROM base:1 AS a\nRUN make\nFROM base:1\nCOPY --from=a /x /y\n"
    alice, bob = parse(text).render("1:alice").splitlines(), parse(text).render("2:bob").splitlines()
    assert alice[1] == "FROM base:1 AS a" and alice[2].startswith("ARG SSHPANEL_CACHE_OWNER_")
    assert alice[2] != bob[2] and alice[4] == "FROM base:1" and alice[5] == alice[2]
    assert parse(text).render("1:alice") == parse(text).render("1:alice")


def test_base_image_triggers_are_checked_like_instructions_regression():
    assert trigger_bases([f"COPY --from={BOB} /a /b", "RUN true", "COPY --from=s /a /b"], {"s"}) == [BOB]
    for trigger in (f"ADD {URL} /y", "ONBUILD RUN true", "RUN --mount=type=bind,from=x,target=/m true",
                    "COPY --from=$X /a /b", "RUN <<EOF\ntrue\nEOF"):
        with pytest.raises(InvalidValue):
            trigger_bases([trigger])
