"""A log viewer's memory is bounded and given back (issue 26 item 4): the
follower and the view keep a byte budget as well as a line count, lines of
60 KB are cut with a marker, and the server's RSS after a flood of them was
viewed and closed is back within 10 % of what it was before."""

from __future__ import annotations

import asyncio
import re
import time

from sshpanel.backend.engine import Engine
from sshpanel.backend.user.logs import LogFollower, LogLine
from sshpanel.config import load_settings
from sshpanel.tui.screens.logs import LINE_BYTES, MAX_BYTES
from sshpanel.tui.widgets.log_view import LogView, cut_marker
from tests.conftest import SSH_BASE, TEST_IMAGE, wait_for
from tests.test_tui_e2e import Terminal, _wait

WIDE = 60_000
"""Characters of each flood line (the issue's 60 KB lines)."""
FLOOD = (f"L=$(head -c {WIDE} /dev/zero | tr '\\0' x); i=0; "
         "while [ $i -lt 600 ]; do echo \"wide $i $L\"; i=$((i+1)); done; echo burst-done >&2; "
         "while :; do echo \"wide $i $L\"; i=$((i+1)); sleep 0.02; done")
"""600 lines of 60 KB at once, then 50 a second (36 MB, then 3 MB/s)."""
MIB = 2**20


def rss(panel) -> int:
    """The server process's resident set, bytes."""
    with open(f"/proc/{panel.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_viewer_of_wide_lines_stays_bounded_and_gives_its_memory_back(panel, docker_client):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "wide", TEST_IMAGE, "sh", "-c", FLOOD).returncode == 0
    container = docker_client.containers.get(f"{panel.namespace}.alice.wide")
    wait_for(lambda: b"burst-done" in container.logs(stdout=False, stderr=True), what="the first 600 wide lines")
    command = [*SSH_BASE[:-2], "-tt", "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}-wide", command, width=100, height=30)
    try:
        term.wait_for("wide")
        time.sleep(2)
        before = rss(panel)
        term.keys("l")
        term.wait_for("following")
        term.wait_for("wide 6")
        peak = before
        for _ in range(50):  # 10 s of 50 wide lines a second
            peak = max(peak, rss(panel))
            time.sleep(0.2)
        screen = term.screen()
        term.keys("Escape")
        _wait(lambda: "following" not in term.screen())
        deadline = time.monotonic() + 30
        after = rss(panel)
        while after > before * 1.1 and time.monotonic() < deadline:
            time.sleep(0.5)
            after = rss(panel)
        term.keys("q")
        _wait(lambda: not term.alive())
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "wide")
    kept = int(re.search(r"following · (\d+) lines", screen).group(1))
    assert 0 < kept <= MAX_BYTES // LINE_BYTES + 1, screen  # the byte budget, not the 10,000 lines
    assert peak - before < 64 * MIB, f"peak {peak / MIB:.0f} MiB, before {before / MIB:.0f} MiB"
    assert after <= before * 1.1, f"after {after / MIB:.0f} MiB, before {before / MIB:.0f} MiB"


def _line(index: int, size: int, cut: int = 0) -> LogLine:
    return LogLine("stdout", f"{index} " + "y" * size, "", cut)


def test_the_view_keeps_a_byte_budget_and_marks_cut_lines():
    """The view drops its oldest lines past its byte budget (shown ones
    too), always keeps the newest, draws a cut line with its marker, and
    holds nothing once cleared."""

    async def run() -> None:
        from textual.app import App

        class One(App[None]):
            def compose(self):
                yield LogView(10_000, 100_000, id="v")

        app = One()
        async with app.run_test(size=(60, 10)) as pilot:
            view = app.query_one(LogView)
            view.add([_line(i, 10_000) for i in range(50)], follow=True)
            await pilot.pause()
            assert view.kept_bytes <= 100_000 and view.line_count == 9
            assert view.shown_lines[0].text.startswith("41 ")
            view.add([_line(99, 500_000)], follow=True)
            assert view.line_count == 1 and view.shown_count == 1
            cut = _line(7, 10, cut=5000)
            view.add([cut], follow=True)
            assert str(view.format_line(cut)).endswith(cut_marker(5000))
            assert cut_marker(5000) == " … 4.883KiB more"
            view.clear()
            assert view.line_count == view.shown_count == view.kept_bytes == 0

    asyncio.run(run())


def test_the_follower_cuts_wide_lines_and_keeps_its_byte_budget(panel, docker_client):
    """A real container's 60 KB lines: the follower keeps 4 KiB of each
    and counts the rest, and a buffer nobody takes from holds at most its
    byte budget, the newest lines."""
    alice = panel.users["alice"]
    script = f"L=$(head -c {WIDE} /dev/zero | tr '\\0' x); i=0; while [ $i -lt 200 ]; do echo \"$i $L\"; i=$((i+1)); done"
    assert panel.run(alice, "run", "--name", "wide2", TEST_IMAGE, "sh", "-c", script).returncode == 0
    try:
        container = docker_client.containers.get(f"{panel.namespace}.alice.wide2")
        wait_for(lambda: (container.reload(), container.status)[1] == "exited", what="the wide lines")
        follower = LogFollower(Engine(load_settings({}, environ={})), container.id, follow=False,
                               max_bytes=MIB // 2, cut_at=LINE_BYTES).start()
        assert follower.join(60)
        lines = follower.take(10_000)
    finally:
        panel.run(alice, "rm", "-f", "wide2")
    assert sum(line.cost for line in lines) <= MIB // 2 and follower.dropped == 200 - len(lines) > 0
    assert lines[-1].text.startswith("199 x")
    for line in lines:  # the timestamp and its space count in the 4 KiB kept
        assert len(line.text) <= LINE_BYTES and line.cut > WIDE - LINE_BYTES
        assert len(line.timestamp) + 1 + len(line.text) + line.cut >= len(line.text.split()[0]) + 1 + WIDE
