#!/usr/bin/env bash
# One command: set up what is missing on this Debian machine, make the test
# images, start a throwaway PostgreSQL server, and run the whole test suite
# (the database tests on SQLite and on PostgreSQL). .ci/run calls exactly this.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
apt_install python3-venv openssh-client tmux busybox-static dropbear-bin putty-tools systemd
setup_venv test,postgres
setup_docker
make_test_images
cd "$ROOT"
# The suite may restart dockerd once (events survive an engine restart).
export SSHPANEL_TEST_DOCKERD_RESTART="${SSHPANEL_TEST_DOCKERD_RESTART:-1}"
trap stop_postgres EXIT
trap "exit 143" TERM
trap "exit 130" INT
setup_postgres
"$VENV/bin/python" -m pytest "$@"
