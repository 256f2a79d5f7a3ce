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

# installed_version NAME MODULE: the version of MODULE that $BIN/NAME was built from ("" if none).
installed_version() {
    [ -x "$BIN/$1" ] || return 0
    go version -m "$BIN/$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3 }'
}

# go_build NAME MODULE PACKAGE VERSION: build PACKAGE from the wrapper module bench/tools/NAME.
go_build() {
    local name=$1 module=$2 pkg=$3 version=$4 have wrapper=$ROOT/bench/tools/$1
    have=$(installed_version "$name" "$module")
    if [ "$have" = "$version" ]; then
        printf 'tools-bench:   %-8s %-8s %s (already built)\n' "$name" "$version" "$BIN/$name"
        return 0
    fi
    [ -f "$wrapper/go.mod" ] || die "wrapper module $wrapper/go.mod is missing"
    grep -qE "^require $module $version\$" "$wrapper/go.mod" ||
        die "$wrapper/go.mod does not require $module $version: make it agree with the pin in ${BASH_SOURCE[0]}"
    say "go build $pkg@$version${have:+ (replacing $have)}: a cold build takes a few minutes (warp: 2 CPU-minutes)"
    local start end rc=0
    start=$(date +%s)
    # Build in the wrapper folder itself so that a go.sum update is kept (and shows in git).
    (cd "$wrapper" &&
        GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath \
            -ldflags "-X main.Version=${version#v}" -o "$BIN/$name.tmp" "$pkg") || rc=$?
    if [ "$rc" -ne 0 ]; then
        rm -f "$BIN/$name.tmp"
        die "building $pkg@$version failed (see go's messages above; '403 Forbidden ... not available' means the Go module proxy does not serve that module version here)"
    fi
    mv -f "$BIN/$name.tmp" "$BIN/$name"
    end=$(date +%s)
    have=$(installed_version "$name" "$module")
    [ "$have" = "$version" ] || die "go build ran, but $BIN/$name reports module version '${have:-none}', expected $version"
    printf 'tools-bench:   %-8s %-8s %s (built in %ss)\n' "$name" "$version" "$BIN/$name" "$((end - start))"
}

say "tools dir $TOOLS_DIR ($(go version | awk '{print $3}'))"
for tool in "${WANT[@]}"; do
    case "$tool" in
    nats-s3) go_build nats-s3 "$NATS_S3_MODULE" "$NATS_S3_PKG" "$NATS_S3_VERSION" ;;
    warp) go_build warp "$WARP_MODULE" "$WARP_PKG" "$WARP_VERSION" ;;
    esac
done
say "ready"
