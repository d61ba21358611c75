#!/usr/bin/env bash
# Provides the set-up steps shared by scripts/serve.sh and scripts/test.sh:
# a Python venv with sshpanel installed, and a reachable Docker engine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SSHPANEL_VENV:-$ROOT/.venv}"

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  # Installs Debian packages that are missing; runs apt-get update once.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ ! -f /tmp/.sshpanel-apt-updated ]; then
    apt-get update -qq && touch /tmp/.sshpanel-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup_venv() {
  # Creates the venv and installs sshpanel (with test extras when $1 = test).
  local extras="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv in $VENV"
    python3 -m venv "$VENV"
  fi
  local spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$spec"
}

DOCKERD_LOG=/var/log/sshpanel-dockerd.log
DAEMON_JSON=/etc/docker/daemon.json

docker_up() { docker info >/dev/null 2>&1; }

want_userns_remap() {
  # User-namespace remapping is on unless SSHPANEL_USERNS_REMAP=0 (README,
  # "Unprivileged containers": for an engine other software relies on).
  [ "${SSHPANEL_USERNS_REMAP:-1}" != 0 ]
}

engine_remaps() {
  # True when the answering engine remaps user namespaces: `docker info`
  # lists `name=userns` among its security options.
  docker info --format '{{json .SecurityOptions}}' 2>/dev/null | grep -q 'name=userns'
}

set_userns_remap() {
  # Sets "userns-remap": "default" in the daemon.json $1 (created when
  # missing; every other key and a remap user already set are kept).
  # Prints "changed" when the file was written.
  mkdir -p "$(dirname "$1")"
  python3 -c '
import json, os, sys
path = sys.argv[1]
try:
    with open(path) as handle:
        text = handle.read()
except FileNotFoundError:
    text = ""
config = json.loads(text) if text.strip() else {}
if not isinstance(config, dict):
    sys.exit(f"{path}: not a JSON object")
if not config.get("userns-remap"):
    config["userns-remap"] = "default"
    mode = os.stat(path).st_mode & 0o7777 if text else 0o644
    temporary = path + ".sshpanel-new"
    with open(temporary, "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.chmod(temporary, mode)
    os.replace(temporary, path)
    print("changed")
' "$1"
}

process_state() {
  # Prints the state letter of process $1 (R, S, Z, ...); nothing when gone
  # or when $1 is not a number (an empty pid file).
  case "$1" in "" | *[!0-9]*) return 0 ;; esac
  { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; } || true
}

running() {
  # True when process $1 exists and is not a zombie (PID 1 on these
  # machines may never reap a stopped dockerd, and kill -0 succeeds on one).
  local state
  state="$(process_state "$1")"
  [ -n "$state" ] && [ "$state" != Z ]
}

live_dockerd() {
  # Prints the pids of running dockerd processes (zombies do not count).
  local pid
  for pid in $(pgrep -x dockerd || true); do
    if running "$pid"; then echo "$pid"; fi
  done
  return 0
}

default_socket() {
  # True when the docker CLI talks to the local default socket, the one a
  # dockerd started here listens on.
  case "${DOCKER_HOST:-}" in
    "" | unix:///var/run/docker.sock | unix:///run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}

own_dockerd() {
  # Prints the pid of the running dockerd this script started (or the test
  # suite restarted): the one writing to $DOCKERD_LOG. Fails when none.
  local pid
  for pid in $(live_dockerd); do
    if [ "$(readlink "/proc/$pid/fd/1" 2>/dev/null)" = "$DOCKERD_LOG" ]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

stop_dockerd() {
  # Stops dockerd $1 with SIGTERM (its containers stop with it) and waits
  # until it has exited.
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 120); do
    if ! running "$1"; then return 0; fi
    sleep 0.5
  done
  log "dockerd $1 did not stop within 60 s"
  return 1
}

setup_docker() {
  # Makes sure a Docker engine answers on the default socket: installs
  # Debian's docker.io when no engine is there, then starts dockerd with
  # user-namespace remapping (root in a container is an unprivileged uid
  # on the host). A running engine this script started that does not remap
  # is restarted with it; any other engine is left as it is.
  if docker_up; then
    if engine_remaps || ! want_userns_remap; then return 0; fi
    local pid
    if ! default_socket || ! pid="$(own_dockerd)"; then
      log "the Docker engine does not remap user namespaces and this script did not start it: left as it is"
      log "(root in a container is root on the host; README, \"Unprivileged containers\")"
      return 0
    fi
    log "restarting dockerd (pid $pid) with user-namespace remapping"
    stop_dockerd "$pid"
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io iptables
  fi
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  if [ -f /var/run/docker.pid ] && ! running "$(cat /var/run/docker.pid)"; then
    rm -f /var/run/docker.pid  # stale pid file makes dockerd refuse to start
  fi
  if [ -S /run/containerd/containerd.sock ] && ! pgrep -x containerd >/dev/null; then
    rm -f /run/containerd/containerd.sock
  fi
  if [ -z "$(live_dockerd)" ]; then
    if want_userns_remap; then
      local changed
      changed="$(set_userns_remap "$DAEMON_JSON")"  # fails (set -e) on a broken file
      if [ "$changed" = changed ]; then log "set \"userns-remap\": \"default\" in $DAEMON_JSON"; fi
    fi
    log "starting dockerd"
    # Detached (subshell + setsid): dockerd must not stay a child of the shell
    # that later execs pytest, or a restarted dockerd lingers as a zombie.
    (setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 &)
  fi
  for _ in $(seq 1 60); do
    if docker_up; then
      if want_userns_remap && ! engine_remaps; then
        log "dockerd answers but does not remap user namespaces; see $DOCKERD_LOG and $DAEMON_JSON"
      fi
      return 0
    fi
    sleep 1
  done
  log "dockerd did not answer within 60 s; see $DOCKERD_LOG"
  tail -20 "$DOCKERD_LOG" >&2 || true
  return 1
}

make_test_images() {
  # Builds the test images with `docker import` of Debian's busybox-static:
  # no registry is reachable, so nothing is ever pulled.
  if docker image inspect sshpanel-test/busybox:latest >/dev/null 2>&1; then return 0; fi
  apt_install busybox-static
  local root
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  log "importing sshpanel-test/busybox:latest"
  tar -C "$root" -c . | docker import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - sshpanel-test/busybox:latest >/dev/null
  rm -rf "$root"
}

PG_USER="sshpanel-pg"

setup_postgres() {
  # Starts a throwaway PostgreSQL server for the tests: Debian's server
  # binaries, run as the unprivileged user $PG_USER (the server refuses root),
  # data in a temporary folder, listening on a free loopback port only, a
  # random password. Exports SSHPANEL_TEST_POSTGRES_URL (the superuser's URL)
  # and SSHPANEL_TEST_POSTGRES_{BIN,DATA,USER} (for tests that stop and start
  # it); stop it with stop_postgres.
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    apt_install postgresql
  fi
  local bin port password
  bin="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
  id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  PG_DIR="$(mktemp -d /tmp/sshpanel-pg.XXXXXX)"
  chown "$PG_USER" "$PG_DIR"
  chmod 700 "$PG_DIR"
  password="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  printf '%s\n' "$password" >"$PG_DIR/pwfile"
  chown "$PG_USER" "$PG_DIR/pwfile"
  port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  runuser -u "$PG_USER" -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pwfile" \
    --auth=scram-sha-256 -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { tail -20 "$PG_DIR/initdb.log" >&2; return 1; }
  rm -f "$PG_DIR/pwfile"
  # Test data only: fsync off; connections are the panels' and the tests'.
  cat >>"$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
  export SSHPANEL_TEST_POSTGRES_BIN="$bin" SSHPANEL_TEST_POSTGRES_DATA="$PG_DIR/data" SSHPANEL_TEST_POSTGRES_USER="$PG_USER"
  log "starting PostgreSQL on 127.0.0.1:$port (data in $PG_DIR)"
  runuser -u "$PG_USER" -- "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/data/server.log" start >/dev/null
  for _ in $(seq 1 60); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || { log "PostgreSQL did not answer"; tail -20 "$PG_DIR/data/server.log" >&2; return 1; }
  export SSHPANEL_TEST_POSTGRES_URL="postgresql://postgres:$password@127.0.0.1:$port/postgres"
}

stop_postgres() {
  # Stops the server setup_postgres started and removes its data.
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ] || return 0
  runuser -u "$PG_USER" -- "$SSHPANEL_TEST_POSTGRES_BIN/pg_ctl" -D "$PG_DIR/data" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
