#!/usr/bin/env bash
# One command: set up what the benchmarks need on this Debian machine (what
# scripts/test.sh sets up, plus Debian's OpenSSH server for figure 4, which
# the benchmark starts itself on a spare port), then run benchmarks/run.py
# with the given arguments (e.g. --quick --only ps,run).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
had_sshd=0
dpkg -s openssh-server >/dev/null 2>&1 && had_sshd=1
apt_install python3-venv openssh-client openssh-server busybox-static
if [ "$had_sshd" = 0 ] && command -v systemctl >/dev/null 2>&1; then
  # Installed only for its binary: Debian would also serve port 22 with its defaults.
  systemctl disable --now ssh >/dev/null 2>&1 || true
fi
setup_venv test
setup_docker
make_test_images
cd "$ROOT"
exec "$VENV/bin/python" benchmarks/run.py "$@"
