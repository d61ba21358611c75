#!/usr/bin/env bash
# One command: set up what is missing on this Debian machine and serve the
# panel with the embedded defaults (SQLite in ./data, host key in ./hostkeys).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install python3-venv
setup_venv
setup_docker
cd "$ROOT"
exec "$VENV/bin/sshpanel" serve "$@"
