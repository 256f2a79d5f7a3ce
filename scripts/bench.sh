#!/usr/bin/env bash
# The side-by-side benchmark: jets3-gateway, the Go nats-s3 gateway and raw NATS, in one run,
# on one nats-server, the systems alternating within every round (see BENCHMARKS.md).
#
#   scripts/bench.sh quick    (make bench-quick) fewer rounds and shorter runs: about 6 minutes on the 2-core machine
#   scripts/bench.sh full     (make bench)       3 rounds of 10 s runs: under 30 minutes
#
# It installs nats-server (scripts/tools.sh nats), nats-s3 and warp (scripts/tools-bench.sh),
# builds jets3-gateway and the driver gateway/examples/bench_driver.rs in release mode, starts ONE
# nats-server with JetStream in a temporary folder on 127.0.0.1, both gateways against it, and
# runs every workload with a fresh NATS bucket per workload and system. warp drives the gateways
# for PUT, GET and mixed; the driver does the rest and all raw-NATS runs. The table goes to
# bench/results/<date>-<commit>[-quick].md (the driver's raw lines next to it) and to stdout.
#
# Environment:
#   JETS3_GATEWAY_BIN        use this jets3-gateway binary instead of building one
#   JETS3_BENCH_BASELINE_BIN another jets3-gateway binary run side by side as "jets3-base"
#                            (before/after figures of a change in one run)
#   JETS3_BENCH_ONLY         comma-separated workload names to run (default: all; see BENCHMARKS.md)
#   JETS3_BENCH_ROUNDS       rounds (default: 3)
#   JETS3_BENCH_SECONDS      seconds per timed run (default: quick 2, full 10)
#   JETS3_BENCH_S3_CLIENT    warp (default) | sdk: the driver's aws-sdk-s3 client for every workload
#   JETS3_BENCH_LOG          jets3-gateway log filter during the run (default: warn)
#   JETS3_BENCH_REQUIRE_PEER 1: fail when nats-s3 cannot be installed (default: the table says so)
#   JETS3_BENCH_OUT          results folder (default bench/results)
#   JETS3_TOOLS_DIR          where tools live (default ~/.cache/jets3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}

MODE=${1:-quick}
case "$MODE" in
quick)
    ROUNDS=${JETS3_BENCH_ROUNDS:-3}
    SECS=${JETS3_BENCH_SECONDS:-2}
    HEAVY_ROUNDS=$((ROUNDS < 2 ? ROUNDS : 2)) # 16 MiB and Range GET workloads
    BIG_ROUNDS=1                              # 1 GiB multipart and the 32 x 256 MiB RSS run
    RANGE_COUNT=5
    LIST_SECS=0.5
    ;;
full)
    ROUNDS=${JETS3_BENCH_ROUNDS:-3}
    SECS=${JETS3_BENCH_SECONDS:-10}
    HEAVY_ROUNDS=$ROUNDS
    BIG_ROUNDS=$ROUNDS
    RANGE_COUNT=20
    LIST_SECS=2
    ;;
-h | --help | help)
    sed -n '2,27s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
*) die "unknown mode '$MODE' (expected: quick | full)" ;;
esac
case "$ROUNDS$SECS" in *[!0-9.]*) die "JETS3_BENCH_ROUNDS and JETS3_BENCH_SECONDS must be numbers" ;; esac
S3_CLIENT=${JETS3_BENCH_S3_CLIENT:-warp}
case "$S3_CLIENT" in warp | sdk) ;; *) die "JETS3_BENCH_S3_CLIENT must be warp or sdk, not '$S3_CLIENT'" ;; esac

ALL_WORKLOADS=(put-4k-c1 put-4k-c16 put-4k-over-c16 put-256k-c1 get-4k-c1 get-4k-c16 put-16m-c16 get-16m-c16 mixed
    list-1k list-10k list-100k range-start range-end complete-1g rss-get-256m-c32)
ONLY=${JETS3_BENCH_ONLY:-}
wanted() {
    [ -z "$ONLY" ] && return 0
    case ",$ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}
if [ -n "$ONLY" ]; then
    for w in ${ONLY//,/ }; do
        case " ${ALL_WORKLOADS[*]} " in *" $w "*) ;; *) die "unknown workload '$w' in JETS3_BENCH_ONLY" ;; esac
    done
fi

# ---- 1. tools and builds ----------------------------------------------------------------------
"$ROOT/scripts/tools.sh" nats >&2
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
NATS_SERVER=$TOOLS_DIR/bin/nats-server
NATS_S3=$TOOLS_DIR/bin/nats-s3
WARP=$TOOLS_DIR/bin/warp
PEER_MISSING=""
if ! "$ROOT/scripts/tools-bench.sh" nats-s3 >&2; then
    [ "${JETS3_BENCH_REQUIRE_PEER:-0}" = 1 ] && die "nats-s3 could not be installed (JETS3_BENCH_REQUIRE_PEER=1)"
    PEER_MISSING="nats-s3 could not be installed on this machine (see scripts/tools-bench.sh): its rows are missing"
    say "WARNING: $PEER_MISSING"
fi
if [ "$S3_CLIENT" = warp ]; then
    "$ROOT/scripts/tools-bench.sh" warp >&2 ||
        die "warp could not be installed (see above); JETS3_BENCH_S3_CLIENT=sdk runs every workload with the driver's aws-sdk-s3 client instead"
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
if [ -n "${JETS3_GATEWAY_BIN:-}" ]; then
    GATEWAY=$JETS3_GATEWAY_BIN
    say "using JETS3_GATEWAY_BIN=$GATEWAY; building only the driver"
    (cd "$ROOT" && cargo build --release -p jets3-gateway --example bench_driver >&2) ||
        die "the benchmark driver did not build"
else
    say "cargo build --release -p jets3-gateway --bin jets3-gateway --example bench_driver"
    (cd "$ROOT" && cargo build --release -p jets3-gateway --bin jets3-gateway --example bench_driver >&2) ||
        die "the gateway or the benchmark driver did not build"
    GATEWAY=$TARGET_DIR/release/jets3-gateway
fi
DRIVER=$TARGET_DIR/release/examples/bench_driver
[ -x "$GATEWAY" ] || die "gateway binary $GATEWAY not found"
[ -x "$DRIVER" ] || die "driver $DRIVER not found"

PY=$(command -v python3 || true)
[ -n "$PY" ] || PY=$TOOLS_DIR/venv/bin/python
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- 2. processes -----------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jets3-bench.XXXXXX")
NATS_PORT=$(free_port)
NATS_URL=nats://127.0.0.1:$NATS_PORT
ACCESS=JETS3BENCH$(date +%s | tail -c 9)X
SECRET=bench-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
NATS_PID=""
# The gateways, with their S3 port and, while running, their pid.
GATEWAYS=(jets3)
[ -z "${JETS3_BENCH_BASELINE_BIN:-}" ] || GATEWAYS+=(jets3-base)
[ -n "$PEER_MISSING" ] || GATEWAYS+=(nats-s3)
declare -A PORT PID
for g in "${GATEWAYS[@]}"; do PORT[$g]=$(free_port) PID[$g]=""; done

stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
    local pid=$1 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local g
    for g in "${GATEWAYS[@]}"; do stop_pid "${PID[$g]}"; done
    stop_pid "$NATS_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_log() {
    [ -s "$1" ] || return 0
    printf -- '---- last lines of %s ----\n' "$1" >&2
    tail -n 30 "$1" >&2
}

wait_http() { # wait_http URL PID: until URL answers (any status but 000 / 503)
    local i code
    for ((i = 0; i < 150; i++)); do
        kill -0 "$2" 2>/dev/null || return 1
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true)
        case "$code" in 000 | 503 | "") sleep 0.1 ;; *) return 0 ;; esac
    done
    return 1
}

"$NATS_SERVER" -js -sd "$WORK/jetstream" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    kill -0 "$NATS_PID" 2>/dev/null || { show_log "$WORK/nats.log"; die "nats-server exited"; }
    sleep 0.1
done

declare -A ADMIN
for g in jets3 jets3-base; do
    [ -n "${PORT[$g]:-}" ] || continue
    ADMIN[$g]=$(free_port)
    cat >"$WORK/$g.yaml" <<EOF
server:
  listen: ["127.0.0.1:${PORT[$g]}"]
  adminListen: "127.0.0.1:${ADMIN[$g]}"
  nats:
    servers: ["$NATS_URL"]
credentials:
  - accessKeyId: $ACCESS
    secretAccessKey: $SECRET
    grants:
      - bucket: "*"
        permission: admin
EOF
done
printf '{"credentials": [{"accessKey": "%s", "secretKey": "%s"}]}\n' "$ACCESS" "$SECRET" >"$WORK/nats-s3.json"

# start_gateway NAME: starts it and waits until it answers (jets3: until /readyz says ready).
start_gateway() {
    local g=$1 ready
    case "$g" in
    jets3 | jets3-base)
        local bin=$GATEWAY
        [ "$g" = jets3 ] || bin=$JETS3_BENCH_BASELINE_BIN
        JETS3_LOG=${JETS3_BENCH_LOG:-warn} "$bin" --config "$WORK/$g.yaml" >>"$WORK/$g.log" 2>&1 &
        ready=http://127.0.0.1:${ADMIN[$g]}/readyz
        ;;
    nats-s3)
        # nats-s3 knows "warning", not "warn" (it would fall back to info, a line per request).
        "$NATS_S3" --listen "127.0.0.1:${PORT[$g]}" --natsServers "$NATS_URL" \
            --s3.credentials "$WORK/nats-s3.json" --log.level warning >>"$WORK/$g.log" 2>&1 &
        ready=http://127.0.0.1:${PORT[$g]}/
        ;;
    esac
    PID[$g]=$!
    wait_http "$ready" "${PID[$g]}" || { show_log "$WORK/$g.log"; die "$g did not start"; }
}
restart_gateways() {
    local g
    for g in "${GATEWAYS[@]}"; do
        stop_pid "${PID[$g]}"
        start_gateway "$g"
    done
}
for g in "${GATEWAYS[@]}"; do start_gateway "$g"; done
say "nats-server $NATS_URL; $(for g in "${GATEWAYS[@]}"; do printf '%s 127.0.0.1:%s, ' "$g" "${PORT[$g]}"; done)work dir $WORK${PEER_MISSING:+; nats-s3 missing}"

# ---- 3. workloads -----------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo nogit)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then COMMIT=$COMMIT-dirty; fi
OUT_DIR=${JETS3_BENCH_OUT:-$ROOT/bench/results}
mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y-%m-%d)
NAME=$STAMP-$COMMIT
[ "$MODE" = quick ] && NAME=$NAME-quick
RAW=$OUT_DIR/$NAME.raw.txt
TABLE=$OUT_DIR/$NAME.md
: >"$RAW"
STARTED=$(date +%s)

SYSTEMS=("${GATEWAYS[@]}" raw)
RUN_ID=$(date +%s | tail -c 6)

driver() { "$DRIVER" --nats "$NATS_URL" "$@"; }

# target_args SYSTEM: the driver flags that point it at SYSTEM.
target_args() {
    case "$1" in
    raw) printf '%s\n' --read direct ;;
    raw-get) printf '%s\n' --read objstore ;;
    *) printf '%s\n' --s3 "http://127.0.0.1:${PORT[$1]}" --access "$ACCESS" --secret "$SECRET" ;;
    esac
}

bucket_for() { printf 'b%s-%s-%s\n' "$RUN_ID" "$1" "$2" | tr -c 'a-z0-9\n' '-' | cut -c1-60; }

# measure WORKLOAD ROUND SYSTEM BUCKET WARP-ARGS DRIVER-ARGS...: one run, its RESULT line kept.
# A gateway runs warp (WARP-ARGS: warp's subcommand and workload flags) unless WARP-ARGS is empty
# or JETS3_BENCH_S3_CLIENT=sdk; everything else runs the driver with DRIVER-ARGS.
measure() {
    local workload=$1 round=$2 system=$3 bucket=$4 warp_args=$5 out rc=0
    shift 5
    local targs=() cpu=(--nats-pid "$NATS_PID")
    mapfile -t targs < <(target_args "$system")
    [ -z "${PID[$system]:-}" ] || cpu+=(--gateway-pid "${PID[$system]}")
    local run=("$@")
    if [ -n "$warp_args" ] && [ "$S3_CLIENT" = warp ] && [ "${targs[0]}" = --s3 ]; then
        # shellcheck disable=SC2206 # the warp flags are words without spaces
        run=(warp -- "$WARP" $warp_args --host "127.0.0.1:${PORT[$system]}" --bucket "$bucket"
            --access-key "$ACCESS" --secret-key "$SECRET" --duration "${SECS}s" --noclear
            --lookup path --disable-sha256-payload --no-color --json --benchdata "$WORK/warp-data")
    fi
    out=$(driver --bucket "$bucket" "${targs[@]}" "${cpu[@]}" --label "$workload|$round|$system" \
        "${run[@]}" 2>"$WORK/driver.err") || rc=$?
    if [ "$rc" -ne 0 ] || ! grep -q '^RESULT ' <<<"$out"; then
        local reason
        reason=$(tail -n 3 "$WORK/driver.err" | tr '\n"' ' _' | cut -c1-200)
        printf 'FAIL label=%s reason="%s"\n' "$workload|$round|$system" "exit $rc: $reason" >>"$RAW"
        say "  $workload round $round $system: FAILED ($reason)"
        return 0
    fi
    grep '^RESULT ' <<<"$out" >>"$RAW"
    say "  $workload round $round $system: $(grep '^RESULT ' <<<"$out" | grep -oE ' (ops_s|mb_s|p50_ms|p99_ms|errors|incorrect)=("[^"]*"|[^ ]*)' | tr '\n' ' ' | cut -c1-160)"
}

# section NAME: prints how long the previous section took.
SECTION="" SECTION_T0=$(date +%s)
section() {
    local now
    now=$(date +%s)
    [ -z "$SECTION" ] || say "($SECTION took $((now - SECTION_T0)) s)"
    SECTION=$1 SECTION_T0=$now
    [ -z "$1" ] || say "$1"
}

create_bucket() { driver --bucket "$1" create || die "could not create NATS bucket $1"; }
drop_bucket() { driver --bucket "$1" drop || say "could not drop bucket $1"; }

# timed WORKLOAD ROUNDS SYSTEMS WARP-ARGS DRIVER-ARGS...: fresh bucket per system, systems
# alternating within every round.
timed() {
    local workload=$1 rounds=$2 systems=$3 warp_args=$4 r s
    shift 4
    wanted "$workload" || return 0
    section "$workload ($*)"
    for s in $systems; do create_bucket "$(bucket_for "$workload" "$s")"; done
    for ((r = 1; r <= rounds; r++)); do
        for s in $systems; do
            measure "$workload" "$r" "$s" "$(bucket_for "$workload" "$s")" "$warp_args" "$@"
        done
    done
    for s in $systems; do drop_bucket "$(bucket_for "$workload" "$s")"; done
}

S_ALL="${SYSTEMS[*]}"
S_READ="$S_ALL raw-get"

# warp get and mixed first upload their objects (--objects), outside the measured window.
timed put-4k-c1 "$ROUNDS" "$S_ALL" "put --obj.size 4KiB --concurrent 1" \
    put --size 4096 --clients 1 --seconds "$SECS"
timed put-4k-c16 "$ROUNDS" "$S_ALL" "put --obj.size 4KiB --concurrent 16" \
    put --size 4096 --clients 16 --seconds "$SECS"
# warp has no overwrites: the driver's aws-sdk-s3 client replaces 8 keys per client.
timed put-4k-over-c16 "$ROUNDS" "$S_ALL" "" \
    overwrite --size 4096 --clients 16 --seconds "$SECS"
timed put-256k-c1 "$ROUNDS" "$S_ALL" "put --obj.size 256KiB --concurrent 1" \
    put --size 262144 --clients 1 --seconds "$SECS"
timed get-4k-c1 "$ROUNDS" "$S_READ" "get --obj.size 4KiB --objects 1 --concurrent 1" \
    get --size 4096 --clients 1 --seconds "$SECS"
timed get-4k-c16 "$ROUNDS" "$S_READ" "get --obj.size 4KiB --objects 16 --concurrent 16" \
    get --size 4096 --clients 16 --seconds "$SECS"
timed put-16m-c16 "$HEAVY_ROUNDS" "$S_ALL" "put --obj.size 16MiB --concurrent 16 --disable-multipart" \
    put --size 16777216 --clients 16 --seconds "$SECS"
timed get-16m-c16 "$HEAVY_ROUNDS" "$S_READ" "get --obj.size 16MiB --objects 16 --concurrent 16" \
    get --size 16777216 --clients 16 --seconds "$SECS"
timed mixed "$ROUNDS" "$S_ALL" "mixed --obj.size 1MiB --objects 64 --concurrent 16" \
    mixed --size 1048576 --clients 16 --seconds "$SECS"

# Listing: one bucket per size, seeded once through NATS (the same objects for every system,
# read-only), each system listing it in turn.
for n in 1k:1000 10k:10000 100k:100000; do
    workload=list-${n%%:*}
    count=${n##*:}
    wanted "$workload" || continue
    bucket=$(bucket_for "$workload" all)
    section "$workload: seeding $count objects"
    create_bucket "$bucket"
    driver --bucket "$bucket" seed --count "$count" --size 16 --clients 16 ||
        die "seeding $bucket failed"
    for ((r = 1; r <= ROUNDS; r++)); do
        for s in $S_ALL; do
            measure "$workload" "$r" "$s" "$bucket" "" list --count "$count" --page 1000 --seconds "$LIST_SECS"
        done
    done
    drop_bucket "$bucket"
done

# Range GETs: each system writes its own 1 GiB object through its own write path first.
if wanted range-start || wanted range-end; then
    section "range: writing a 1 GiB object per system"
    for s in $S_ALL; do
        b=$(bucket_for range "$s")
        create_bucket "$b"
        mapfile -t targs < <(target_args "$s")
        driver --bucket "$b" "${targs[@]}" range --size 1073741824 --count 0 >/dev/null 2>"$WORK/driver.err" ||
            say "  $s: writing the 1 GiB object failed: $(tail -n 2 "$WORK/driver.err" | tr '\n' ' ' | cut -c1-200)"
    done
    for ((r = 1; r <= HEAVY_ROUNDS; r++)); do
        for w in range-start range-end; do
            wanted "$w" || continue
            for s in $S_ALL; do
                measure "$w" "$r" "$s" "$(bucket_for range "$s")" "" range --size 1073741824 \
                    --offset "${w#range-}" --count "$RANGE_COUNT" --seconds "$SECS"
            done
        done
    done
    for s in $S_ALL; do drop_bucket "$(bucket_for range "$s")"; done
fi

# CompleteMultipartUpload of 1 GiB in 100 parts (gateways only).
if wanted complete-1g; then
    section "complete-1g"
    GW="${GATEWAYS[*]}"
    for s in $GW; do create_bucket "$(bucket_for complete "$s")"; done
    for ((r = 1; r <= BIG_ROUNDS; r++)); do
        for s in $GW; do
            measure complete-1g "$r" "$s" "$(bucket_for complete "$s")" "" multipart --size 1073741824 --parts 100
        done
    done
    for s in $GW; do drop_bucket "$(bucket_for complete "$s")"; done
fi

# Peak RSS: every gateway restarted, then 32 clients GET one 256 MiB object at once.
if wanted rss-get-256m-c32; then
    section "rss-get-256m-c32"
    GW="${GATEWAYS[*]}"
    for s in $GW; do
        b=$(bucket_for rss "$s")
        create_bucket "$b"
        # Seed through NATS so that no upload raises the gateway's peak before the restart.
        driver --bucket "$b" getmany --size 268435456 --clients 1 >/dev/null 2>&1 || true
    done
    for ((r = 1; r <= BIG_ROUNDS; r++)); do
        restart_gateways
        for s in $GW; do
            pid=${PID[$s]}
            avail_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
            if [ "$avail_kb" -lt $((12 * 1024 * 1024)) ]; then
                printf 'FAIL label=%s reason="%s"\n' "rss-get-256m-c32|$r|$s" "skipped: less than 12 GiB of memory available" >>"$RAW"
                continue
            fi
            measure rss-get-256m-c32 "$r" "$s" "$(bucket_for rss "$s")" "" getmany --size 268435456 --clients 32
            if kill -0 "$pid" 2>/dev/null; then
                hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
                printf 'RSS label=%s kb=%s\n' "rss-get-256m-c32|$r|$s" "$hwm" >>"$RAW"
                say "  peak RSS $s: $((hwm / 1024)) MiB"
            else
                printf 'FAIL label=%s reason="%s"\n' "rss-get-256m-c32|$r|$s" "the gateway process died" >>"$RAW"
                start_gateway "$s"
            fi
        done
    done
    for s in $GW; do drop_bucket "$(bucket_for rss "$s")"; done
fi

# ---- 4. the table -----------------------------------------------------------------------------
section ""
ELAPSED=$(($(date +%s) - STARTED))
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
NATS_V=$("$NATS_SERVER" --version 2>&1 | head -n1)
# module_version BINARY: the main module version a Go binary was built from.
module_version() { go version -m "$1" 2>/dev/null | awk '$1 == "mod" {print $3}'; }
PEER_V=missing
[ -n "$PEER_MISSING" ] || PEER_V=$(module_version "$NATS_S3")
if [ "$S3_CLIENT" = warp ]; then
    WARP_V=$(module_version "$WARP")
    # scripts/tools-bench.sh builds warp without its fixed 3 s pause before the timed window.
    go version -m "$WARP" 2>/dev/null | grep -q '^[[:space:]]*=>.*nostartpause' && WARP_V="$WARP_V (start pause removed)"
    CLIENTS="warp $WARP_V (UNSIGNED-PAYLOAD, no multipart) for the gateways' PUT, GET and mixed; gateway/examples/bench_driver.rs (aws-sdk-s3, UNSIGNED-PAYLOAD, no checksums, no retries) for their listing, Range, multipart and RSS runs"
else
    CLIENTS="gateway/examples/bench_driver.rs (aws-sdk-s3, UNSIGNED-PAYLOAD, no checksums, no retries) for both gateways"
fi
{
    printf '## jets3 benchmark, %s run, %s\n\n' "$MODE" "$(date -u '+%Y-%m-%d %H:%M UTC')"
    # shellcheck disable=SC2016 # backquotes are markdown
    printf -- '- commit `%s`; %s rounds of %s s runs (16 MiB and Range GET: %s rounds; multipart and RSS: %s); took %s s\n' \
        "$COMMIT" "$ROUNDS" "$SECS" "$HEAVY_ROUNDS" "$BIG_ROUNDS" "$ELAPSED"
    printf -- '- machine: %s, %s cores, %s, %s; no CPU pinning; load average before the table: %s\n' \
        "$CPU" "$(nproc)" "$MEM" "$(uname -sr)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf -- '- %s (JetStream, file storage in a temp dir); jets3-gateway release build; nats-s3 %s; clients: %s; async-nats for raw NATS\n' \
        "$NATS_V" "$PEER_V" "$CLIENTS"
    [ -z "$PEER_MISSING" ] || printf -- '- **%s**\n' "$PEER_MISSING"
    printf -- '- figures are medians over rounds; the ratio column divides jets3'"'"'s figure by the row'"'"'s in the same round\n'
} >"$WORK/header.md"
"$PY" "$ROOT/bench/summarize.py" "$RAW" "$WORK/header.md" >"$TABLE" || die "summarize.py failed (raw lines in $RAW)"
cat "$TABLE"
say "table: $TABLE (raw lines: $RAW)"
