"""ssh-audit (PyPI) finds no failure in the server's algorithms and sees
strict key exchange (Terrapin, CVE-2023-48795)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_ssh_audit_reports_no_failure(panel):
    tool = Path(sys.executable).with_name("ssh-audit")
    result = subprocess.run(
        [str(tool), "-n", "-j", "--skip-rate-test", "-p", str(panel.port), "127.0.0.1"],
        capture_output=True, text=True, timeout=120,
    )
    report = json.loads(result.stdout)
    failures = [
        (kind, alg["algorithm"], alg["notes"]["fail"])
        for kind in ("kex", "key", "enc", "mac")
        for alg in report.get(kind, [])
        if alg.get("notes", {}).get("fail")
    ]
    assert failures == []
    assert not report.get("cves")
    kex = [alg["algorithm"] for alg in report["kex"]]
    assert "kex-strict-s-v00@openssh.com" in kex
    assert [alg["algorithm"] for alg in report["key"]] == ["ssh-ed25519"]
