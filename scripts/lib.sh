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

docker_up() { docker info >/dev/null 2>&1; }

setup_docker() {
  # Makes sure a Docker engine answers on the default socket: installs
  # Debian's docker.io when no engine is there, then starts dockerd.
  if docker_up; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    apt_install docker.io iptables
  fi
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid  # stale pid file makes dockerd refuse to start
  fi
  if [ -S /run/containerd/containerd.sock ] && ! pgrep -x containerd >/dev/null; then
    rm -f /run/containerd/containerd.sock
  fi
  if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd"
    # Detached (subshell + setsid): dockerd must not stay a child of the shell
    # that later execs pytest, or a restarted dockerd lingers as a zombie.
    (setsid nohup dockerd >/var/log/sshpanel-dockerd.log 2>&1 &)
  fi
  for _ in $(seq 1 60); do
    docker_up && return 0
    sleep 1
  done
  log "dockerd did not answer within 60 s; see /var/log/sshpanel-dockerd.log"
  tail -20 /var/log/sshpanel-dockerd.log >&2 || true
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
