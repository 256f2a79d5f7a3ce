#!/usr/bin/env bash
# A Docker engine for building jets3's images (scripts/images.sh), nothing else.
#
#   scripts/docker.sh start   use the running engine; else install Debian's docker.io (root
#                             or password-less sudo) and start dockerd in the background
#   scripts/docker.sh stop    stop the dockerd that `start` started (never anyone else's)
#
# The dockerd started here only builds images FROM scratch (no RUN steps, no containers), so it
# runs without networking of its own: --bridge=none --iptables=false --ip-forward=false leave the
# host's bridges, iptables rules and sysctls as they were. Its log and pid file live in
# ${JETS3_TOOLS_DIR:-~/.cache/jets3}/docker/; images stay in Docker's own data root.
set -euo pipefail

TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
STATE=$TOOLS_DIR/docker
PIDFILE=$STATE/dockerd.pid

say() { printf 'docker: %s\n' "$*"; }
die() {
    printf 'docker: ERROR: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# running PID: the process exists and is not a zombie (a reaper may take a while to collect it).
running() { [ -r "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
ours() { [ -f "$PIDFILE" ] && running "$(cat "$PIDFILE")"; }

start() {
    command -v docker >/dev/null 2>&1 || need_package
    if engine_up; then
        say "engine $(docker version --format '{{.Server.Version}}') is running$(ours && printf ' (started by scripts/docker.sh, pid %s)' "$(cat "$PIDFILE")")"
        return
    fi
    command -v dockerd >/dev/null 2>&1 || need_package
    mkdir -p "$STATE"
    say "starting dockerd (log: $STATE/dockerd.log)"
    # setsid: the engine outlives this script; it is stopped by `scripts/docker.sh stop`.
    as_root setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
        --pidfile "$STATE/dockerd.run.pid" >"$STATE/dockerd.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 150); do
        if engine_up; then
            cp "$STATE/dockerd.run.pid" "$PIDFILE"
            say "engine $(docker version --format '{{.Server.Version}}') is up after $((i / 5)) s"
            return
        fi
        sleep 0.2
    done
    die "dockerd did not come up in 30 s: $(tail -20 "$STATE/dockerd.log")"
}

need_package() {
    command -v apt-get >/dev/null 2>&1 || die "no Docker engine and no apt-get: install Docker, then rerun"
    say "apt-get install -y docker.io"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null ||
        die "apt-get install docker.io failed"
}

stop() {
    if ! ours; then
        say "no dockerd started by this script is running"
        rm -f "$PIDFILE"
        return
    fi
    local pid i
    pid=$(cat "$PIDFILE")
    as_root kill -TERM "$pid"
    for i in $(seq 1 100); do
        running "$pid" || break
        sleep 0.2
    done
    ! running "$pid" || die "dockerd $pid did not stop in 20 s"
    rm -f "$PIDFILE"
    say "stopped dockerd $pid"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
