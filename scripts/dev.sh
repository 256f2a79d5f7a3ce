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
NATS_PID=
GW_PID=
# shellcheck disable=SC2317,SC2329 # runs from the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # Keep cleaning up even if the terminal or a pipe reading our output is gone.
    trap '' PIPE
    set +e
    if [ -n "$GW_PID$NATS_PID" ]; then
        say "stopping"
    fi
    stop_pid "$GW_PID" jets3-gateway
    stop_pid "$NATS_PID" nats-server
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
NATS_PORT=$(free_port)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jets3-dev.XXXXXX")

# ---- 3. nats-server ---------------------------------------------------------------------------
say "starting nats-server on 127.0.0.1:$NATS_PORT (JetStream data in $WORK/jetstream)"
"$NATS_SERVER" -js -sd "$WORK/jetstream" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for ((i = 0; ; i++)); do
    if ! kill -0 "$NATS_PID" 2>/dev/null; then
        show_log nats-server "$WORK/nats.log"
        die "nats-server exited during start"
    fi
    if grep -q 'Server is ready' "$WORK/nats.log" 2>/dev/null &&
        (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
        break
    fi
    if [ "$i" -ge 200 ]; then
        show_log nats-server "$WORK/nats.log"
        die "nats-server did not accept connections within 20 s"
    fi
    sleep 0.1
done
say "nats-server ready (pid $NATS_PID)"

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
    servers: ["nats://127.0.0.1:$NATS_PORT"]
  shutdownGraceSeconds: 5
region: $REGION
buckets:
  - name: "$BUCKET"
    create: true
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
  NATS          nats://127.0.0.1:$NATS_PORT (JetStream data in $WORK/jetstream)
  logs          $WORK/gateway.log  $WORK/nats.log
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
wait -n "$GW_PID" "$NATS_PID" || rc=$?
if ! kill -0 "$GW_PID" 2>/dev/null; then
    GW_PID=
    show_log jets3-gateway "$WORK/gateway.log"
    die "jets3-gateway exited (status $rc)"
fi
NATS_PID=
show_log nats-server "$WORK/nats.log"
die "nats-server exited (status $rc)"
