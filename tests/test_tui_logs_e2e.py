"""End to end: the log view of a real container through the real OpenSSH
client in a tmux terminal; it follows new lines, and leaving it closes the
Docker log stream (the server's threads and sockets go back to what they
were)."""

from __future__ import annotations

from tests.conftest import SSH_BASE, TEST_IMAGE
from tests.test_logs import server_sockets, server_threads, wait_for
from tests.test_tui_e2e import Terminal, _wait

TICKER = "i=0; while :; do i=$((i+1)); echo tick $i; echo warn $i >&2; sleep 0.1; done"


def _latest_tick(screen: str) -> int:
    ticks = [int(line.split()[1]) for line in screen.splitlines() if line.startswith("tick ")]
    return max(ticks, default=0)


def test_log_view_follows_a_real_container_and_leaving_closes_the_stream(panel):
    alice = panel.users["alice"]
    assert panel.run(alice, "run", "--name", "ticker", TEST_IMAGE, "sh", "-c", TICKER).returncode == 0
    command = [*SSH_BASE[:-2], "-tt", "-i", str(alice.key), "-p", str(panel.port), "alice@127.0.0.1"]
    term = Terminal(f"sshpanel-{panel.namespace}-logs", command, width=100, height=30)
    try:
        term.wait_for("ticker")

        def open_and_leave() -> None:
            term.keys("l")
            term.wait_for("following")
            first = _latest_tick(term.wait_for("tick "))
            _wait(lambda: _latest_tick(term.screen()) > first + 3)  # new lines keep arriving
            assert "warn " in term.screen()
            term.keys("Escape")
            _wait(lambda: "Quit" in term.screen() and "following" not in term.screen())

        open_and_leave()
        open_and_leave()  # warmed up: the worker threads the screens use exist now
        wait_for(lambda: server_threads(panel) == server_threads(panel), what="a steady thread count")
        threads, sockets = server_threads(panel), server_sockets(panel)
        for _ in range(5):
            open_and_leave()
        wait_for(
            lambda: server_threads(panel) <= threads and server_sockets(panel) <= sockets,
            timeout=30,
            what=f"threads back to {threads} and sockets back to {sockets}",
        )

        # Pausing keeps the view still while lines keep coming.
        term.keys("l")
        term.wait_for("following")
        term.keys("f")
        paused = term.wait_for("paused")
        _wait(lambda: " new" in term.screen().splitlines()[1])
        assert _latest_tick(term.screen()) == _latest_tick(paused)
        term.keys("G")
        term.wait_for("following")
        term.keys("Escape")  # (a key within 100 ms of Escape would read as Alt+key)
        _wait(lambda: "following" not in term.screen())
        term.keys("q")
        _wait(lambda: not term.alive())
    finally:
        term.close()
        panel.run(alice, "rm", "-f", "ticker")
