#!/usr/bin/env bash
# The listing benchmark (make bench-listing, see BENCHMARKS.md): buckets of many small objects,
# seeded straight through NATS, and what a gateway pays to list them: time from process start
# to the first ListObjectsV2 page, RSS after listing the whole bucket, page latencies; then, if
# the gateway writes listing snapshots, the same from a second gateway that starts warm.
#
# It installs nats-server (scripts/tools.sh nats), builds jets3-gateway and the driver
# gateway/examples/listing_bench.rs in release mode, starts ONE nats-server with JetStream in
# a temporary folder on 127.0.0.1 and, for each size: seeds a fresh bucket, measures every
# gateway binary on it in turn (each starts fresh, twice), drops the bucket. The table goes to
# bench/results/<date>-<commit>-listing.md (the driver's raw lines next to it) and to stdout.
#
# Environment:
#   JETS3_LISTING_SIZES      bucket sizes, in objects (default: "100000 1000000"; 10000000 works,
#                            with about 5 GB of disk per 10 million objects while it runs)
#   JETS3_LISTING_PAGES      pages per latency figure (default: 200; root delimiter pages: a tenth)
#   JETS3_LISTING_SNAPSHOT_WAIT  seconds to wait for a gateway's first snapshot (default: 600)
#   JETS3_LISTING_FIRST_PAGE_LIMIT  seconds a gateway may take to list at all (default: 900)
#   JETS3_GATEWAY_BIN        use this jets3-gateway binary instead of building one
#   JETS3_BENCH_BASELINE_BIN another jets3-gateway binary measured on the same buckets as
#                            "jets3-base" (before/after figures of a change in one run)
#   JETS3_BENCH_LOG          jets3-gateway log filter (default: warn)
#   JETS3_BENCH_OUT          results folder (default bench/results)
#   JETS3_TOOLS_DIR          where tools live (default ~/.cache/jets3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}

say() { printf 'bench-listing: %s\n' "$*" >&2; }
die() {
    printf 'bench-listing: ERROR: %s\n' "$*" >&2
    exit 1
}

case "${1:-}" in
-h | --help | help)
    sed -n '2,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
"") ;;
*) die "no arguments expected (settings are environment variables, see --help)" ;;
esac

SIZES=${JETS3_LISTING_SIZES:-100000 1000000}
PAGES=${JETS3_LISTING_PAGES:-200}
SNAPSHOT_WAIT=${JETS3_LISTING_SNAPSHOT_WAIT:-600}
FIRST_PAGE_LIMIT=${JETS3_LISTING_FIRST_PAGE_LIMIT:-900}
for n in $SIZES $PAGES $SNAPSHOT_WAIT $FIRST_PAGE_LIMIT; do
    case "$n" in '' | *[!0-9]*) die "JETS3_LISTING_SIZES, _PAGES, _SNAPSHOT_WAIT and _FIRST_PAGE_LIMIT must be whole numbers, not '$n'" ;; esac
done

# ---- 1. tools and builds ----------------------------------------------------------------------
"$ROOT/scripts/tools.sh" nats >&2
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
NATS_SERVER=$TOOLS_DIR/bin/nats-server

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
if [ -n "${JETS3_GATEWAY_BIN:-}" ]; then
    GATEWAY=$JETS3_GATEWAY_BIN
    say "using JETS3_GATEWAY_BIN=$GATEWAY; building only the driver"
    (cd "$ROOT" && cargo build --release -p jets3-gateway --example listing_bench >&2) ||
        die "the benchmark driver did not build"
else
    say "cargo build --release -p jets3-gateway --bin jets3-gateway --example listing_bench"
    (cd "$ROOT" && cargo build --release -p jets3-gateway --bin jets3-gateway --example listing_bench >&2) ||
        die "the gateway or the benchmark driver did not build"
    GATEWAY=$TARGET_DIR/release/jets3-gateway
fi
DRIVER=$TARGET_DIR/release/examples/listing_bench
[ -x "$DRIVER" ] || die "driver $DRIVER not found"

# The systems, in the order they run on each bucket: name and binary. The binaries are copied
# first, so that a build elsewhere in the shared target folder cannot swap one mid-run.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jets3-bench-listing.XXXXXX")
NATS_PID=""
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    if [ -n "$NATS_PID" ]; then
        kill -TERM "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SYSTEMS=(jets3)
declare -A BIN
BIN[jets3]=$WORK/bin/jets3-gateway
mkdir -p "$WORK/bin"
[ -x "$GATEWAY" ] || die "gateway binary $GATEWAY not found"
cp "$GATEWAY" "${BIN[jets3]}"
if [ -n "${JETS3_BENCH_BASELINE_BIN:-}" ]; then
    [ -x "$JETS3_BENCH_BASELINE_BIN" ] || die "baseline binary $JETS3_BENCH_BASELINE_BIN not found"
    SYSTEMS+=(jets3-base)
    BIN[jets3-base]=$WORK/bin/jets3-gateway-base
    cp "$JETS3_BENCH_BASELINE_BIN" "${BIN[jets3-base]}"
fi

# ---- 2. nats-server ---------------------------------------------------------------------------
PY=$(command -v python3 || true)
[ -n "$PY" ] || PY=$TOOLS_DIR/venv/bin/python
NATS_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NATS_URL=nats://127.0.0.1:$NATS_PORT
"$NATS_SERVER" -js -sd "$WORK/jetstream" -a 127.0.0.1 -p "$NATS_PORT" >"$WORK/nats.log" 2>&1 &
NATS_PID=$!
for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    kill -0 "$NATS_PID" 2>/dev/null || {
        tail -n 30 "$WORK/nats.log" >&2
        die "nats-server exited"
    }
    sleep 0.1
done
say "nats-server $NATS_URL, work dir $WORK; sizes: $SIZES; systems: ${SYSTEMS[*]}"

# ---- 3. the runs ------------------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo nogit)
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then COMMIT=$COMMIT-dirty; fi
OUT_DIR=${JETS3_BENCH_OUT:-$ROOT/bench/results}
mkdir -p "$OUT_DIR"
NAME=$(date -u +%Y-%m-%d)-$COMMIT-listing
RAW=$OUT_DIR/$NAME.raw.txt
TABLE=$OUT_DIR/$NAME.md
: >"$RAW"
STARTED=$(date +%s)
driver() { "$DRIVER" --nats "$NATS_URL" "$@"; }

for n in $SIZES; do
    # About 500 bytes of stream per object; keep 20 GB free besides.
    avail_kb=$(df -Pk "$WORK" | awk 'NR == 2 {print $4}')
    need_kb=$((n / 2 + 20 * 1024 * 1024))
    [ "$avail_kb" -ge "$need_kb" ] ||
        die "$((avail_kb / 1048576)) GB free in $WORK, $n objects need about $((need_kb / 1048576)) GB (20 GB kept free)"
    bucket=listing-$n
    say "$n objects: seeding bucket $bucket through NATS"
    driver --bucket "$bucket" seed --count "$n" | tee -a "$RAW" >&2 || die "seeding $bucket failed"
    for s in "${SYSTEMS[@]}"; do
        say "$n objects: $s"
        rc=0
        out=$(driver --bucket "$bucket" run --count "$n" --gateway-bin "${BIN[$s]}" --name "$s" \
            --work "$WORK/runs" --pages "$PAGES" --snapshot-wait "$SNAPSHOT_WAIT" \
            --first-page-limit "$FIRST_PAGE_LIMIT" --nats-pid "$NATS_PID" \
            --log "${JETS3_BENCH_LOG:-warn}" 2> >(tee "$WORK/driver.err" >&2)) || rc=$?
        printf '%s\n' "$out" >>"$RAW"
        if [ "$rc" -ne 0 ]; then
            reason=$(tail -n 1 "$WORK/driver.err" | tr '|' '/' | cut -c1-300)
            printf 'FAIL count=%s system=%s reason="%s"\n' "$n" "$s" "$reason" >>"$RAW"
            printf 'ROW | %s | %s | **failed**: %s |\n' "$n" "$s" "$reason" >>"$RAW"
            say "$n objects: $s FAILED: $reason"
            continue
        fi
        grep '^RESULT ' <<<"$out" | sed 's/^RESULT /  /' >&2
    done
    driver --bucket "$bucket" drop || say "could not drop bucket $bucket"
done

# ---- 4. the table -----------------------------------------------------------------------------
ELAPSED=$(($(date +%s) - STARTED))
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
NATS_V=$("$NATS_SERVER" --version 2>&1 | head -n1)
# shellcheck disable=SC2016 # backquotes are markdown
{
    printf '## jets3 listing benchmark, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf -- '- commit `%s`; sizes %s; %s pages per latency figure (root delimiter: %s); took %s s\n' \
        "$COMMIT" "$SIZES" "$PAGES" "$(((PAGES / 10) > 0 ? PAGES / 10 : 1))" "$ELAPSED"
    printf -- '- systems: `jets3` = %s' "$GATEWAY"
    [ -z "${JETS3_BENCH_BASELINE_BIN:-}" ] || printf -- '; `jets3-base` = %s' "$JETS3_BENCH_BASELINE_BIN"
    printf '\n'
    printf -- '- machine: %s, %s cores, %s, %s; load average at the end: %s\n' \
        "$CPU" "$(nproc)" "$MEM" "$(uname -sr)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf -- '- %s (JetStream, file storage in a temp dir); zero-byte objects `dNN/kNNNNNNNNN` seeded through NATS; client aws-sdk-s3 (ListObjectsV2, 1000 keys a page)\n' "$NATS_V"
    printf -- '- seeding: %s\n\n' "$(grep '^SEED ' "$RAW" | sed 's/^SEED //' | paste -sd';' | sed 's/;/; /g')"
    driver header
    grep '^ROW ' "$RAW" | sed 's/^ROW //'
} >"$TABLE"
cat "$TABLE"
say "table: $TABLE (raw lines: $RAW)"
