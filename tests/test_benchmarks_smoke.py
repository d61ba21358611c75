"""Smoke test of the benchmark runner (issue 8): its quickest figure runs
end to end and prints its table row. Figures are never asserted (tests
never assert times)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="needs Debian's openssh-server")
def test_quick_ps_figure_runs(docker_client):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "ps"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| 4 `ps` vs sshd + `docker ps`" in done.stdout
    assert "FAILED" not in done.stdout
