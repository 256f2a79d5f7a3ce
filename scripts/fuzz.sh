#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (router, sigv4, chunked, xml, range, post_policy,
# config), each for FUZZ_SECONDS (default 15) starting from its committed corpus in
# fuzz/corpus/<target>, and fails on the first crash, leak, timeout or failed property.
#
#   scripts/fuzz.sh [TARGET...]      all targets, or the ones named
#   FUZZ_SECONDS=600 scripts/fuzz.sh the long run (`make fuzz`)
#
# Needs a nightly toolchain (installed with rustup when missing) and cargo-fuzz
# $CARGO_FUZZ_VERSION, installed once into $JETS3_TOOLS_DIR/bin (~/.cache/jets3). The stable
# toolchain builds the workspace as before: nothing here is part of it.
# New inputs found during a run go to a scratch directory, not into the committed corpus;
# a crash is saved under fuzz/artifacts/<target>/ and printed with the command to replay it.
# The instrumented build goes to $FUZZ_TARGET_DIR (default $JETS3_TOOLS_DIR/fuzz-target),
# apart from the workspace's own target directory and kept between runs like the tools, so
# that only the first run compiles the dependencies.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
JETS3_TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$JETS3_TOOLS_DIR/fuzz-target}
export CARGO_INCREMENTAL=0
export PATH="$JETS3_TOOLS_DIR/bin:$PATH"
TARGETS=(router sigv4 chunked xml range post_policy config)
if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
fi

if ! rustup run "$FUZZ_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing the $FUZZ_TOOLCHAIN toolchain"
    rustup toolchain install "$FUZZ_TOOLCHAIN" --profile minimal
fi
if [ "$(cargo-fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION into $JETS3_TOOLS_DIR"
    cargo +stable install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$JETS3_TOOLS_DIR"
fi

# How targets are built (and run): by default optimized, with AddressSanitizer, debug
# assertions and overflow checks (so that arithmetic that wraps is a crash). The test.sh stage
# uses FUZZ_BUILD="--dev -s none": unoptimized without a sanitizer (debug assertions on), which
# builds in a fraction of the time, for runs of seconds.
read -r -a BUILD <<<"${FUZZ_BUILD:--a}"
cargo "+$FUZZ_TOOLCHAIN" fuzz build "${BUILD[@]}"

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
SUMMARY=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$t" "corpus/$t"
    args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [ -f "dict/$t.dict" ]; then
        args+=(-dict="dict/$t.dict")
    fi
    echo "==> fuzz.sh: $t for ${FUZZ_SECONDS}s on corpus/$t ($(find "corpus/$t" -type f | wc -l) inputs)"
    log="$SCRATCH/$t.log"
    rc=0
    cargo "+$FUZZ_TOOLCHAIN" fuzz run "${BUILD[@]}" "$t" "$SCRATCH/$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz.sh: $t FAILED (exit $rc); replay with: cd fuzz && cargo +$FUZZ_TOOLCHAIN fuzz run ${BUILD[*]} $t <artifact>" >&2
        exit "$rc"
    fi
    SUMMARY+=("$(printf '%-12s %6ss %12s execs %6s new inputs' "$t" "$FUZZ_SECONDS" "${execs:-?}" "$(find "$SCRATCH/$t" -type f | wc -l)")")
    echo "<== fuzz.sh: $t ok, ${execs:-?} executions"
done
printf '\nfuzz.sh: every target ran without a finding\n'
printf '  %s\n' "${SUMMARY[@]}"
