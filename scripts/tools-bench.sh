#!/usr/bin/env bash
# Installs the pinned third-party tools for the side-by-side benchmark (scripts/bench.sh);
# `make tools` and `make bench*` run it, `make test` does not (no test needs them):
#
#   scripts/tools-bench.sh          both of them
#   scripts/tools-bench.sh nats-s3  the Go nats-s3 gateway (the peer jets3 is compared with)
#   scripts/tools-bench.sh warp     MinIO's S3 benchmark tool warp (the load generator)
#
# Each tool is built with `go build` (GOTOOLCHAIN=local, GOFLAGS=-mod=mod) from a small wrapper
# module kept in bench/tools/<tool>/ (go.mod + go.sum: reproducible, no checksum-database look-up,
# no version-list query) into ${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}/bin, next to the tools of
# scripts/tools.sh. Idempotent: a binary built from the pinned module version is kept as it is.
# Exits non-zero, naming what failed, when a tool cannot be built.
set -euo pipefail

# ---- Pinned versions: the one place to change them ------------------------------------------
# The version is also the `require` line of the wrapper module in bench/tools/<tool>/go.mod;
# after changing one, run `scripts/tools-bench.sh <tool>` and keep the go.sum it updates.
NATS_S3_MODULE=github.com/wpnpeiris/nats-s3
NATS_S3_PKG=$NATS_S3_MODULE/cmd/nats-s3
NATS_S3_VERSION=v0.4.1 # the Go S3 gateway on NATS object store (v0.4.0 is not served by the proxy)
WARP_MODULE=github.com/minio/warp
WARP_PKG=$WARP_MODULE
# MinIO's S3 benchmark tool. The newest tag whose whole module graph the Go proxy serves here
# (v1.6.1 and v1.5.0 need madmin-go v4.6.7, which it refuses).
WARP_VERSION=v1.3.1
# warp waits a fixed 3 s between its preparation and its timed window (for people watching and
# for distributed runs). A quick benchmark runs warp about 40 times, so the build drops that wait:
# it builds from a copy of the module with that line changed, made from the Go module cache at
# build time under the tools dir (nothing fetched is committed). The timed window itself is untouched.
# The stamp names that copy's folder, which `go version -m` shows, so an unchanged build is replaced.
WARP_PAUSE_FILE=cli/benchmark.go
WARP_PAUSE_LINE='tStart := time.Now().Add(time.Second * 3)'
WARP_STAMP=jets3-nostartpause
# ------------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
BIN=$TOOLS_DIR/bin

say() { printf 'tools-bench: %s\n' "$*"; }
die() {
    printf 'tools-bench: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

WANT=()
case "${1:-all}" in
all) WANT=(nats-s3 warp) ;;
nats-s3) WANT=(nats-s3) ;;
warp) WANT=(warp) ;;
-h | --help | help)
    usage
    exit 0
    ;;
*)
    usage >&2
    die "unknown argument '$1' (expected: nats-s3 | warp | all)"
    ;;
esac

command -v go >/dev/null 2>&1 || die "go not found on PATH: the benchmark tools are built with Go"
mkdir -p "$BIN" || die "cannot create $BIN"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
BIN=$TOOLS_DIR/bin

# Two runs at once must not race on the same binary.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock-bench"
    flock 9
fi

# installed_version NAME MODULE [STAMP]: the version of MODULE that $BIN/NAME was built from, with
# "+STAMP" when it was built from a replacement folder named after STAMP ("" if there is none).
installed_version() {
    [ -x "$BIN/$1" ] || return 0
    go version -m "$BIN/$1" 2>/dev/null | awk -v m="$2" -v stamp="${3:-}" '
        $1 == "mod" && $2 == m { version = $3 }
        $1 == "=>" && stamp != "" && index($2, stamp) { stamped = 1 }
        END { if (version != "") print version (stamped ? "+" stamp : "") }'
}

# warp_modfile DIR: a copy of warp's module source with the start pause line changed in DIR/src,
# and DIR/go.mod + go.sum: the wrapper module with a replace directive pointing to that copy.
warp_modfile() {
    local dir=$1 src line
    src=$(cd "$ROOT/bench/tools/warp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod \
        go mod download -json "$WARP_MODULE@$WARP_VERSION" | awk -F'"' '$2 == "Dir" { print $4 }')
    [ -n "$src" ] && [ -f "$src/$WARP_PAUSE_FILE" ] ||
        die "could not find $WARP_PAUSE_FILE of $WARP_MODULE@$WARP_VERSION in the Go module cache"
    line=$(grep -nF "$WARP_PAUSE_LINE" "$src/$WARP_PAUSE_FILE" | cut -d: -f1)
    case "$line" in
    '' | *[!0-9]*) die "$WARP_MODULE@$WARP_VERSION/$WARP_PAUSE_FILE has no single line '$WARP_PAUSE_LINE': update WARP_PAUSE_LINE for this version" ;;
    esac
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -R "$src" "$dir/src"
    chmod -R u+w "$dir/src"
    sed "${line}s/.*/\ttStart := time.Now()/" "$src/$WARP_PAUSE_FILE" >"$dir/src/$WARP_PAUSE_FILE"
    cp "$ROOT/bench/tools/warp/go.mod" "$ROOT/bench/tools/warp/go.sum" "$dir/"
    printf 'replace %s => %s\n' "$WARP_MODULE" "$dir/src" >>"$dir/go.mod"
}

# go_build NAME MODULE PACKAGE VERSION [STAMP]: build PACKAGE from the wrapper module
# bench/tools/NAME; with STAMP, from warp's changed copy (warp_modfile) and stamped.
go_build() {
    local name=$1 module=$2 pkg=$3 version=$4 stamp=${5:-} have wrapper=$ROOT/bench/tools/$1
    local want=$version${5:++$5} modfile=()
    have=$(installed_version "$name" "$module" "$stamp")
    if [ "$have" = "$want" ]; then
        printf 'tools-bench:   %-8s %-8s %s (already built)\n' "$name" "$want" "$BIN/$name"
        return 0
    fi
    [ -f "$wrapper/go.mod" ] || die "wrapper module $wrapper/go.mod is missing"
    grep -qE "^require $module $version\$" "$wrapper/go.mod" ||
        die "$wrapper/go.mod does not require $module $version: make it agree with the pin in ${BASH_SOURCE[0]}"
    say "go build $pkg@$want${have:+ (replacing $have)}: a cold build takes a few minutes (warp: 2 CPU-minutes)"
    if [ -n "$stamp" ]; then
        warp_modfile "$TOOLS_DIR/build/$name-$stamp"
        modfile=(-modfile "$TOOLS_DIR/build/$name-$stamp/go.mod")
    fi
    local start end rc=0
    start=$(date +%s)
    # Build in the wrapper folder itself so that a go.sum update is kept (and shows in git).
    (cd "$wrapper" &&
        GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath "${modfile[@]}" \
            -ldflags "-X main.Version=${version#v}" -o "$BIN/$name.tmp" "$pkg") || rc=$?
    if [ "$rc" -ne 0 ]; then
        rm -f "$BIN/$name.tmp"
        die "building $pkg@$version failed (see go's messages above; '403 Forbidden ... not available' means the Go module proxy does not serve that module version here)"
    fi
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    end=$(date +%s)
    have=$(installed_version "$name" "$module" "$stamp")
    [ "$have" = "$want" ] || die "go build ran, but $BIN/$name reports module version '${have:-none}', expected $want"
    printf 'tools-bench:   %-8s %-8s %s (built in %ss)\n' "$name" "$want" "$BIN/$name" "$((end - start))"
}

say "tools dir $TOOLS_DIR ($(go version | awk '{print $3}'))"
for tool in "${WANT[@]}"; do
    case "$tool" in
    nats-s3) go_build nats-s3 "$NATS_S3_MODULE" "$NATS_S3_PKG" "$NATS_S3_VERSION" ;;
    warp) go_build warp "$WARP_MODULE" "$WARP_PKG" "$WARP_VERSION" "$WARP_STAMP" ;;
    esac
done
say "ready"
