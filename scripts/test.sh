#!/usr/bin/env bash
# One command: set up what is missing on this Debian machine, make the test
# images, and run the whole test suite. .ci/run calls exactly this.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install python3-venv openssh-client tmux busybox-static dropbear-bin putty-tools systemd
setup_venv test
setup_docker
make_test_images
cd "$ROOT"
# The suite may restart dockerd once (events survive an engine restart).
export SSHPANEL_TEST_DOCKERD_RESTART="${SSHPANEL_TEST_DOCKERD_RESTART:-1}"
exec "$VENV/bin/python" -m pytest "$@"
