#!/usr/bin/env bash
# Runs jets3 locally: nats-server with JetStream plus jets3-gateway with a demo bucket.
#
#   scripts/dev.sh            (or: make dev)
#
# Installs nats-server (scripts/tools.sh nats), builds the gateway in release mode, starts both
# on 127.0.0.1 with their data in a temporary folder, and prints the AWS_* settings to paste
# into another shell. Ctrl-C stops both and removes the temporary folder (and its data).
#
# Environment:
#   JETS3_DEV_NATS                  single (default): one nats-server; cluster: three clustered
#                                   nats-servers (routes, JetStream on each) and the bucket with
#                                   3 replicas, to try node failures (kill -9 one node's pid)
#   JETS3_DEV_PORT                  S3 port (default 9000); the admin port is this + 1
#   JETS3_DEV_BUCKET                the bucket created at start (default demo)
#   JETS3_DEV_ACCESS_KEY_ID         demo access key (default: a fresh random JETS3... key each run)
#   JETS3_DEV_SECRET_ACCESS_KEY     demo secret (default: fresh random 40 characters each run)
#   JETS3_GATEWAY_BIN               run this gateway binary instead of building one
#   JETS3_TOOLS_DIR                 where tools live (default ~/.cache/jets3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
S3_PORT=${JETS3_DEV_PORT:-9000}
BUCKET=${JETS3_DEV_BUCKET:-demo}
REGION=us-east-1
NATS_MODE=${JETS3_DEV_NATS:-single}

say() { printf 'dev: %s\n' "$*"; }
die() {
    printf 'dev: ERROR: %s\n' "$*" >&2
    exit 1
}

case "$S3_PORT" in
'' | *[!0-9]*) die "JETS3_DEV_PORT must be a port number, not '$S3_PORT'" ;;
esac
if [ "$S3_PORT" -lt 1 ] || [ "$S3_PORT" -gt 65534 ]; then
    die "JETS3_DEV_PORT must be 1..65534"
fi
ADMIN_PORT=$((S3_PORT + 1))
case "$NATS_MODE" in
single) NODES=1 ;;
cluster) NODES=3 ;;
*) die "JETS3_DEV_NATS must be single or cluster, not '$NATS_MODE'" ;;
esac

# ---- 1. tools and build -----------------------------------------------------------------------
"$ROOT/scripts/tools.sh" nats
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
NATS_SERVER=$TOOLS_DIR/bin/nats-server
PY=$TOOLS_DIR/venv/bin/python

if [ -n "${JETS3_GATEWAY_BIN:-}" ]; then
    GATEWAY=$JETS3_GATEWAY_BIN
    say "using JETS3_GATEWAY_BIN=$GATEWAY (not building)"
else
    say "cargo build --release -p jets3-gateway"
    (cd "$ROOT" && cargo build --release -p jets3-gateway) ||
        die "the gateway did not build (see cargo's messages above)"
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
    GATEWAY=$TARGET_DIR/release/jets3-gateway
fi
[ -x "$GATEWAY" ] || die "gateway binary $GATEWAY not found or not executable"

# ---- helpers ----------------------------------------------------------------------------------
# Port checks use the same SO_REUSEADDR bind a server does, so TIME_WAIT leftovers don't count.
port_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_alnum() { # random_alnum LENGTH ALPHABET
    "$PY" -c 'import secrets, sys; print("".join(secrets.choice(sys.argv[2]) for _ in range(int(sys.argv[1]))))' "$1" "$2"
}

http_status() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}
if ! command -v curl >/dev/null 2>&1; then
    http_status() {
        "$PY" - "$1" <<'EOF' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
EOF
    }
fi

show_log() { # show_log NAME FILE
    if [ -s "$2" ]; then
        printf -- '---- last lines of %s (%s) ----\n' "$1" "$2" >&2
        tail -n 40 "$2" >&2
        printf -- '----\n' >&2
    fi
}

# shellcheck disable=SC2317,SC2329 # stop_pid and cleanup run from the EXIT trap
stop_pid() { # stop_pid PID NAME: TERM, then KILL after 10 s
    local pid=$1 name=$2 i
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name did not stop within 10 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

WORK=
NATS_PIDS=()
GW_PID=
# shellcheck disable=SC2317,SC2329 # runs from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # Keep cleaning up even if the terminal or a pipe reading our output is gone.
    trap '' PIPE
    set +e
    if [ -n "$GW_PID${NATS_PIDS[*]}" ]; then
        say "stopping"
    fi
    stop_pid "$GW_PID" jets3-gateway
    local p
    for p in "${NATS_PIDS[@]}"; do
        stop_pid "$p" nats-server
    done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK"
        say "removed $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- 2. ports and the temporary folder --------------------------------------------------------
port_free "$S3_PORT" || die "port $S3_PORT is in use: stop what holds it or set JETS3_DEV_PORT"
port_free "$ADMIN_PORT" || die "port $ADMIN_PORT (admin = S3 port + 1) is in use: set JETS3_DEV_PORT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jets3-dev.XXXXXX")

# ---- 3. nats-server (one, or a cluster of three) ----------------------------------------------
NATS_PORTS=()
ROUTE_PORTS=()
for ((n = 0; n < NODES; n++)); do
    NATS_PORTS+=("$(free_port)")
    ROUTE_PORTS+=("$(free_port)")
done
ROUTES=
for p in "${ROUTE_PORTS[@]}"; do
    ROUTES="${ROUTES:+$ROUTES, }nats://127.0.0.1:$p"
done
for ((n = 0; n < NODES; n++)); do
    name=n$((n + 1))
    conf=$WORK/$name.conf
    {
        printf 'server_name: %s\nlisten: 127.0.0.1:%s\njetstream { store_dir: "%s" }\n' \
            "$name" "${NATS_PORTS[$n]}" "$WORK/jetstream/$name"
        if [ "$NODES" -gt 1 ]; then
            printf 'cluster { name: jets3-dev, listen: 127.0.0.1:%s, routes: [%s] }\n' \
                "${ROUTE_PORTS[$n]}" "$ROUTES"
        fi
    } >"$conf"
    say "starting nats-server $name on 127.0.0.1:${NATS_PORTS[$n]} (JetStream data in $WORK/jetstream/$name)"
    "$NATS_SERVER" -c "$conf" >"$WORK/nats-$name.log" 2>&1 &
    NATS_PIDS+=($!)
done
for ((n = 0; n < NODES; n++)); do
    name=n$((n + 1))
    for ((i = 0; ; i++)); do
        if ! kill -0 "${NATS_PIDS[$n]}" 2>/dev/null; then
            show_log "nats-server $name" "$WORK/nats-$name.log"
            die "nats-server $name exited during start"
        fi
        if grep -q 'Server is ready' "$WORK/nats-$name.log" 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/${NATS_PORTS[$n]}") 2>/dev/null; then
            break
        fi
        if [ "$i" -ge 300 ]; then
            show_log "nats-server $name" "$WORK/nats-$name.log"
            die "nats-server $name did not accept connections within 30 s"
        fi
        sleep 0.1
    done
    say "nats-server $name ready (pid ${NATS_PIDS[$n]})"
done
NATS_URLS=
for p in "${NATS_PORTS[@]}"; do
    NATS_URLS="${NATS_URLS:+$NATS_URLS, }\"nats://127.0.0.1:$p\""
done

# ---- 4. gateway config ------------------------------------------------------------------------
ACCESS_KEY_ID=${JETS3_DEV_ACCESS_KEY_ID:-JETS3$(random_alnum 15 ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789)}
SECRET_ACCESS_KEY=${JETS3_DEV_SECRET_ACCESS_KEY:-$(random_alnum 40 ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789)}
CONFIG=$WORK/gateway.yaml
(
    umask 077
    cat >"$CONFIG" <<EOF
# jets3-gateway config written by scripts/dev.sh
server:
  listen: ["127.0.0.1:$S3_PORT"]
  adminListen: "127.0.0.1:$ADMIN_PORT"
  nats:
    servers: [$NATS_URLS]
  shutdownGraceSeconds: 5
region: $REGION
buckets:
  - name: "$BUCKET"
    create: true
    replicas: $NODES
credentials:
  - accessKeyId: "$ACCESS_KEY_ID"
    secretAccessKey: "$SECRET_ACCESS_KEY"
    description: make dev demo credential
    grants:
      - bucket: "*"
        permission: admin
EOF
)

# ---- 5. gateway -------------------------------------------------------------------------------
say "starting $GATEWAY --config $CONFIG (S3 127.0.0.1:$S3_PORT, admin 127.0.0.1:$ADMIN_PORT)"
# The gateway reads JETS3_* variables as flags; drop those that would move it away from this config.
# JETS3_LOG and JETS3_LOG_FORMAT pass through. NO_COLOR: the log is a file.
env -u JETS3_CONFIG -u JETS3_LISTEN -u JETS3_ADMIN_LISTEN -u JETS3_REGION \
    -u JETS3_SHUTDOWN_GRACE_SECONDS -u JETS3_NATS_URL -u JETS3_NATS_USER -u JETS3_NATS_PASSWORD \
    -u JETS3_NATS_TOKEN -u JETS3_NATS_NKEY_SEED -u JETS3_NATS_CREDS -u JETS3_NATS_TLS_CA \
    -u JETS3_NATS_TLS_CERT -u JETS3_NATS_TLS_KEY -u JETS3_NATS_TLS_REQUIRED \
    NO_COLOR=1 "$GATEWAY" --config "$CONFIG" >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
for ((i = 0; ; i++)); do
    if ! kill -0 "$GW_PID" 2>/dev/null; then
        rc=0
        wait "$GW_PID" || rc=$?
        GW_PID=
        show_log jets3-gateway "$WORK/gateway.log"
        die "jets3-gateway exited with status $rc before it was ready"
    fi
    status=$(http_status "http://127.0.0.1:$ADMIN_PORT/readyz")
    [ "$status" = 200 ] && break
    if [ "$i" -ge 600 ]; then
        show_log jets3-gateway "$WORK/gateway.log"
        die "jets3-gateway not ready within 60 s (last /readyz status: ${status:-none})"
    fi
    sleep 0.1
done

# ---- 6. what to paste -------------------------------------------------------------------------
if command -v aws >/dev/null 2>&1; then
    AWS_NOTE=
elif [ -x "$TOOLS_DIR/bin/aws" ]; then
    AWS_NOTE="# no aws on PATH; the AWS CLI is at $TOOLS_DIR/bin/aws:
export PATH=\"$TOOLS_DIR/bin:\$PATH\""
else
    AWS_NOTE="# no AWS CLI here: \`make tools\` installs one at $TOOLS_DIR/bin/aws, then:
export PATH=\"$TOOLS_DIR/bin:\$PATH\""
fi

cat <<EOF

jets3 is running
  S3 endpoint   http://127.0.0.1:$S3_PORT   (bucket "$BUCKET", region $REGION)
  admin         http://127.0.0.1:$ADMIN_PORT/readyz
  NATS          $NATS_URLS (pids ${NATS_PIDS[*]}; JetStream data in $WORK/jetstream)
  logs          $WORK/gateway.log  $WORK/nats-n*.log
  The credential below is new each run; everything is deleted when this stops.

Paste into another shell:

export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET_ACCESS_KEY
export AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
${AWS_NOTE:+$AWS_NOTE
}
Then try:

aws s3 ls
aws s3 cp README.md s3://$BUCKET/
aws s3 ls s3://$BUCKET/
aws s3 cp s3://$BUCKET/README.md -

Press Ctrl-C here to stop.
EOF

# ---- 7. run until Ctrl-C, TERM, or one of the two exits ---------------------------------------
rc=0
wait -n "$GW_PID" "${NATS_PIDS[@]}" || rc=$?
if ! kill -0 "$GW_PID" 2>/dev/null; then
    GW_PID=
    show_log jets3-gateway "$WORK/gateway.log"
    die "jets3-gateway exited (status $rc)"
fi
# In a cluster, a node stopping is a fault to watch, not the end: wait for the gateway.
if [ "$NODES" -gt 1 ]; then
    say "a nats-server stopped (status $rc); the cluster goes on with the others"
    rc=0
    wait "$GW_PID" || rc=$?
    GW_PID=
    show_log jets3-gateway "$WORK/gateway.log"
    die "jets3-gateway exited (status $rc)"
fi
NATS_PIDS=()
show_log nats-server "$WORK/nats-n1.log"
die "nats-server exited (status $rc)"
