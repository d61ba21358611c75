"""Rendering tests of live stats, the graphs screen, the log view and the
history screen, with fake services (allowed for rendering only).

What the collector, the log follower and the history queries do against
the real engine and database is tested in tests/test_stats.py,
tests/test_logs.py and tests/test_history.py; the log view against a real
container through OpenSSH in tests/test_tui_monitor_e2e.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading

import pytest

from sshpanel.backend.user.history import DailyCount
from sshpanel.errors import EngineUnavailable
from sshpanel.tui import PanelApp
from sshpanel.tui.screens.container_stats import ContainerStatsScreen
from sshpanel.tui.screens.history import HistoryScreen
from sshpanel.tui.screens.logs import BATCH, MAX_LINES, LogScreen
from sshpanel.tui.widgets.container_graphs import ContainerGraphs
from sshpanel.tui.widgets.graphs import bar_rows, scale_top, spark
from sshpanel.tui.widgets.history_views import DailyChart, HistoryTable
from sshpanel.tui.widgets.log_view import MATCH_STYLE, LogView, drawn
from sshpanel.tui.widgets.stats_panel import ContainerMonitor, rate
from tests.test_tui_render import FakeWorkspace, async_test, notifications, screen_text, settle, table, view
from tests.tui_fakes import FakeHistory, FakeLogs, FakeShell, FakeStats, log_line, sample, services

MIB = 1024 * 1024


def fits(app: PanelApp, width: int) -> bool:
    return all(len(line) <= width for line in screen_text(app).splitlines())


@pytest.fixture
def workspace() -> FakeWorkspace:
    return FakeWorkspace()


def web_samples(count: int = 5) -> list:
    web = view("web")
    return [sample(web.id, "web", 0.02 * (i + 1), (10 + i) * MIB, seconds=2 * i) for i in range(count)]


# Dashboard: monitor and last record ------------------------------------------


@async_test
async def test_monitor_shows_the_selected_containers_figures_and_sparklines(workspace):
    stats = FakeStats()
    app = PanelApp(workspace, services=services(stats=stats))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        assert stats.subscribed == 1  # one subscription per session, no Docker stream of its own
        for one in web_samples():
            stats.push(one)
        monitor = app.screen.query_one(ContainerMonitor)
        await settle(pilot, lambda: monitor.rounds == 5)
        text = screen_text(app)
        assert "web · running" in text
        assert "10.0%" in text and "20.0% of limit" in text  # 0.1 CPU: of one CPU, of the 0.5 limit
        assert "14MiB / 256MiB" in text and "5.5%" in text
        assert "net ↓1.23kB/s ↑56B/s" in text and "pids 3" in text
        assert "▂▄▅▇█" in text and "▆▇▇██" in text  # rising sparklines, each up to its peak
        assert "⏎ graphs" in text and "o shell" in text and "l logs" in text
        assert "Last record" in text and "web provision ✓ exit 0" in text
        assert fits(app, 80)
        await pilot.press("down")
        await settle(pilot, lambda: "db · exited" in screen_text(app))
        assert "not running" in screen_text(app)
        await pilot.press("q")
    assert stats.unsubscribed == stats.subscribed == 1


@async_test
async def test_monitor_follows_the_cursor_in_the_same_frame_as_the_table(workspace):
    """Issue 8: the monitor changes in the call that moves the cursor, not
    when DataTable's RowHighlighted message arrives (a frame later)."""
    app = PanelApp(workspace, services=services(stats=FakeStats()))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        monitor = app.screen.query_one(ContainerMonitor)
        assert monitor.view is not None and monitor.view.name == "web"
        table(app).move_cursor(row=1)
        assert monitor.view is not None and monitor.view.name == "db"
        table(app).move_cursor(row=0)
        assert monitor.view.name == "web"
        await pilot.press("q")


@async_test
async def test_monitor_says_when_stats_are_unavailable(workspace):
    stats = FakeStats()
    app = PanelApp(workspace, services=services(stats=stats))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        stats.push(error=EngineUnavailable("cannot reach the Docker engine"))
        await settle(pilot, lambda: "stats unavailable: cannot reach the Docker engine" in screen_text(app))


@async_test
async def test_footer_fits_80_columns_for_an_admin(workspace):
    app = PanelApp(workspace, object(), services=services(shell=FakeShell()))  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        footer = screen_text(app).splitlines()[-1].rstrip()
        for label in ("Create", "Start", "Stop", "Restart", "Remove", "History", "Scripts", "Admin", "Quit"):
            assert label in footer
        assert len(footer) <= 80


# Graphs -----------------------------------------------------------------------


@async_test
async def test_enter_opens_graphs_prefilled_with_the_kept_samples(workspace):
    stats = FakeStats()
    shell = FakeShell()
    web = view("web")
    stats.kept[web.id] = web_samples(30)
    app = PanelApp(workspace, services=services(stats=stats, shell=shell))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ContainerStatsScreen))
        graphs = app.screen.query_one(ContainerGraphs)
        await settle(pilot, lambda: len(graphs.samples(web.id)) == 30)
        assert stats.subscribed == 2  # the screen watches while it is shown, through the same collector
        stats.push(sample(web.id, "web", 0.25, 50 * MIB, seconds=60))
        await settle(pilot, lambda: len(graphs.samples(web.id)) == 31)
        text = screen_text(app)
        assert "CPU 25.0% of one CPU · 50.0% of 0.5 CPU limit, 6.2% of host" in text
        assert "Memory 50MiB / 256MiB (19.5%)" in text and "scale 50MiB" in text
        assert "█" in text and "← 5 min" in text and "now →" in text
        assert "PIDs 3" in text and "↓ 1.23kB/s" in text
        assert fits(app, 80)
        await pilot.press("o")
        await settle(pilot, lambda: shell.opened == ["web"])
        await pilot.press("h")
        await settle(pilot, lambda: isinstance(app.screen, HistoryScreen))
        assert app.screen.container == "web"
        await pilot.press("escape", "escape")
        await settle(pilot, lambda: table(app).row_count == 2 and not isinstance(app.screen, ContainerStatsScreen))
    assert stats.unsubscribed == stats.subscribed


@async_test
async def test_graphs_fit_120x35(workspace):
    stats = FakeStats()
    web = view("web")
    stats.kept[web.id] = web_samples(150)
    app = PanelApp(workspace, services=services(stats=stats))
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ContainerStatsScreen)
                     and len(app.screen.query_one(ContainerGraphs).samples(web.id)) == 150)
        text = screen_text(app)
        assert fits(app, 120) and "scale 159MiB" in text and "scale 300%" in text
        assert sum(line.count("█") for line in text.splitlines()) > 100


def test_graph_drawing():
    assert spark([], 10, 4) == "    "
    assert spark([0, 5, 10, 20], 10, 4) == "▁▄██"  # zero still shows a sample, over the top is clipped
    assert spark([1, 2, 3, 4, 5, 6], 6, 3) == "▃▆█"  # more values than cells: the largest of each
    assert bar_rows([0, 4, 8], 8, 3, 2) == ["  █", " ██"]
    assert bar_rows([0.1], 100, 2, 2) == ["  ", " ▁"]  # small but not zero stays visible
    assert scale_top([0.01, 0.02], 5.0) == 5.0 and scale_top([7.0], 5.0) == 7.0
    assert rate(0) == "0B/s" and rate(1234) == "1.23kB/s" and rate(5_600_000) == "5.6MB/s"


# Logs ---------------------------------------------------------------------------


async def open_logs(pilot, app) -> LogScreen:
    await settle(pilot, lambda: table(app).row_count == 2)
    await pilot.press("l")
    await settle(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.view.line_count > 0)
    return app.screen


@async_test
async def test_log_view_follows_and_pauses(workspace):
    logs = FakeLogs()
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot, app)
        assert logs.opened == [("web", True, 500)]
        assert threading.main_thread().name not in logs.threads
        text = screen_text(app)
        assert "out 40" in text and "web · following · 40 lines" in text
        follower = logs.followers[0]
        follower.feed([log_line("fresh line", second=41)])
        await settle(pilot, lambda: "fresh line" in screen_text(app))
        await pilot.press("f")
        follower.feed([log_line(f"later {i}") for i in range(30)])
        await settle(pilot, lambda: "paused, 30 new" in screen.status_text)
        assert "later 29" not in screen_text(app)  # the view stays where it was
        await pilot.press("G")
        await settle(pilot, lambda: "later 29" in screen_text(app) and "following" in screen.status_text)
        await pilot.press("t")
        await settle(pilot, lambda: "2026-11-22T03:00:" in screen_text(app))
        assert fits(app, 80)
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, LogScreen))
        assert follower.closed  # leaving closes the Docker log stream


@async_test
async def test_pausing_right_after_a_batch_keeps_the_view_still(workspace):
    """The scroll to the newest line waits for the next refresh; pausing
    before it happens must not let it move the view afterwards (a race the
    OpenSSH end-to-end test met)."""
    logs = FakeLogs()
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot, app)
        await pilot.pause()
        before = screen.view.scroll_offset.y
        screen.view.add([log_line(f"late {i}") for i in range(5)], follow=True)
        screen.action_toggle_follow()  # in the same turn, before the refresh
        await pilot.pause()
        await pilot.pause()
        assert "paused" in screen.status_text
        assert screen.view.scroll_offset.y == before
        assert "late 4" not in screen_text(app)


@async_test
async def test_log_search_highlights_and_filter_keeps_matches(workspace):
    logs = FakeLogs()
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot, app)
        await pilot.press("slash", *"UT 1")
        await settle(pilot, lambda: "search 'UT 1': 11 matching" in screen.status_text)
        line = screen.view.format_line(log_line("out 12"))
        assert [(span.start, span.end, str(span.style)) for span in line.spans] == [(1, 5, MATCH_STYLE)]
        assert screen.view.shown_count == 40  # searching keeps every line
        await pilot.press("enter", "n")
        await settle(pilot, lambda: "paused" in screen.status_text)
        await pilot.press("escape")  # clears the search
        await settle(pilot, lambda: "search" not in screen.status_text)
        await pilot.press("ampersand", *"out 3")
        await settle(pilot, lambda: screen.view.shown_count == 11)  # out 3, out 30..39
        assert {line.text for line in screen.view.shown_lines} == {"out 3", *(f"out {i}" for i in range(30, 40))}
        assert "filter 'out 3': 11 matching" in screen.status_text
        await pilot.press("enter")
        logs.followers[0].feed([log_line("out 300"), log_line("nothing")])
        await settle(pilot, lambda: screen.view.shown_count == 12)
        assert screen.view.line_count == 42


@async_test
async def test_stderr_is_red_and_control_codes_never_reach_the_terminal(workspace):
    logs = FakeLogs([log_line("plain"), log_line("oops", "stderr"), log_line("\x1b[2J\x1b]0;pwned\x07x\ty")])
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_logs(pilot, app)
        view_ = screen.view
        assert str(view_.format_line(log_line("oops", "stderr")).spans[0].style) == "red"
        assert view_.format_line(log_line("plain")).spans == []
        assert "\x1b" not in screen_text(app) and drawn("\x1b[2J\x1b]0;pwned\x07x\ty") in screen_text(app)
    assert drawn("a\rb\x9bc\nd") == "a\\x0db\\x9bc\\x0ad"


@async_test
async def test_a_flood_of_log_lines_stays_bounded_and_responsive(workspace):
    logs = FakeLogs([])
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("l")
        await settle(pilot, lambda: isinstance(app.screen, LogScreen) and logs.followers)
        screen = app.screen
        logs.followers[0].feed([log_line(f"flood {i}") for i in range(3 * MAX_LINES)])
        await settle(pilot, lambda: "flood 29999" in screen_text(app), timeout=30)
        assert screen.view.line_count == MAX_LINES
        assert screen.view.virtual_size.height == MAX_LINES
        assert 3 * MAX_LINES // BATCH > 1  # it was taken in several turns


@async_test
async def test_leaving_while_the_log_opens_closes_the_stream(workspace):
    release = threading.Event()

    class SlowLogs(FakeLogs):
        def open(self, *args, **kwargs):
            release.wait(10)
            return super().open(*args, **kwargs)

    logs = SlowLogs()
    app = PanelApp(workspace, services=services(logs=logs))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("l")
        await settle(pilot, lambda: isinstance(app.screen, LogScreen))
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, LogScreen))
        release.set()
        await settle(pilot, lambda: logs.followers and logs.followers[0].closed)


def test_log_view_keeps_the_view_steady_while_old_lines_go():
    async def run() -> None:
        from textual.app import App

        class One(App[None]):
            def compose(self):
                yield LogView(100, id="v")

        app = One()
        async with app.run_test(size=(40, 10)) as pilot:
            view_ = app.query_one(LogView)
            view_.add([log_line(f"l{i}") for i in range(100)], follow=False)
            await pilot.pause()
            view_.scroll_to(y=50, animate=False, immediate=True)
            await pilot.pause()
            assert view_.scroll_offset.y == 50
            view_.add([log_line(f"m{i}") for i in range(10)], follow=False)
            await pilot.pause()
            assert view_.scroll_offset.y == 40 and view_.line_count == 100

    asyncio.run(run())


# History ----------------------------------------------------------------------


@async_test
async def test_history_screen_chart_timeline_and_detail(workspace):
    history = FakeHistory()
    app = PanelApp(workspace, services=services(history=history))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        await pilot.press("h")
        await settle(pilot, lambda: isinstance(app.screen, HistoryScreen)
                     and app.screen.query_one(HistoryTable).row_count == 3)
        assert ("daily", 30, None) in history.calls and ("events", None, 30) in history.calls
        text = screen_text(app)
        assert "30 deployments" in text and "2 failures" in text and "last 30 days (UTC)" in text
        assert dt.datetime.now(dt.timezone.utc).strftime("%m-%d") in text  # today labelled on the axis
        assert "provision" in text and "✗ exit 3" in text and "die" in text
        assert "step 1" in text  # the selected run's output lines in the detail
        assert "█" in text and fits(app, 80)
        await pilot.press("down")
        await settle(pilot, lambda: app.screen.query_one(HistoryTable).selected.kind == "die")
        assert "die db ✗ exit 3" in screen_text(app) and "exit code 3" in screen_text(app).splitlines()[-2]
        assert threading.main_thread().name not in history.threads
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, HistoryScreen))


@async_test
async def test_history_screen_fits_120x35_and_says_when_empty(workspace):
    history = FakeHistory()
    history.entries = []
    app = PanelApp(workspace, services=services(history=history))
    async with app.run_test(size=(120, 35)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        assert "Last record: none yet" in screen_text(app)
        await pilot.press("h")
        await settle(pilot, lambda: "No events in the last 30 days." in screen_text(app))
        assert fits(app, 120)


def test_daily_chart_bars_are_side_by_side_per_day():
    async def run() -> None:
        from textual.app import App

        today = dt.date(2026, 11, 22)
        counts = [DailyCount(today - dt.timedelta(days=29 - i), 2 if i == 29 else 0, 1 if i == 28 else 0)
                  for i in range(30)]

        class One(App[None]):
            def compose(self):
                yield DailyChart(id="c")

        app = One()
        async with app.run_test(size=(80, 8)) as pilot:
            chart = app.query_one(DailyChart)
            chart.show(counts)
            await pilot.pause()
            lines = str(chart.render()).splitlines()
            assert lines[0].startswith("■ 2 deployments  ■ 1 failures")
            bars = lines[1:-2]
            column = 5 + 29 * 2  # today's deployments
            assert all(line[column] == "█" for line in bars)
            assert bars[-1][5 + 28 * 2 + 1] != " " and bars[0][5 + 28 * 2 + 1] == " "  # yesterday's failure, half high
            assert lines[-1].rstrip().endswith("11-22")
            assert not notifications(app)

    asyncio.run(run())


async def _visit_every_screen(app: PanelApp, stats: FakeStats) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: table(app).row_count == 2)
        stats.push(*web_samples(1))
        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ContainerStatsScreen))
        await pilot.press("l")
        await settle(pilot, lambda: isinstance(app.screen, LogScreen) and app.screen.view.line_count)
        await pilot.press("escape", "h")
        await settle(pilot, lambda: isinstance(app.screen, HistoryScreen))
        app.exit()


@async_test
async def test_app_with_every_screen_opened_is_freed_after_exit(workspace):
    import gc
    import weakref

    from sshpanel.ssh.driver import neutralise_stdout_redirect

    neutralise_stdout_redirect()
    stats, logs = FakeStats(), FakeLogs()
    app = PanelApp(workspace, services=services(stats=stats, logs=logs))
    await _visit_every_screen(app, stats)
    assert stats.unsubscribed == stats.subscribed == 2 and not stats.callbacks
    assert all(follower.closed for follower in logs.followers)
    ref = weakref.ref(app)
    del app
    await asyncio.sleep(0.1)
    gc.collect()
    assert ref() is None
