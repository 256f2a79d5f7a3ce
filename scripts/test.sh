#!/usr/bin/env bash
# Everything `make test` (and CI) checks, in order, stopping at the first failure:
#   tools         scripts/tools.sh (nats-server, AWS CLI, boto3, pytest, rclone, s3cmd, shellcheck,
#                 hadolint, helm, kubeconform, Kubernetes JSON schemas, kube-apiserver and etcd)
#   fmt           cargo fmt --all -- --check
#   cycles        scripts/check-cycles.py: fails on an import cycle of more than two files between
#                 the crate:: paths of a crate's src/ (gateway, operator, crds, nats, testkit)
#   shell-lint    shellcheck over every shell script in the repo (git ls-files: *.sh, sh shebangs)
#   hadolint      hadolint Dockerfile e2e/images/*.Dockerfile
#   docs          scripts/check-docs.py: every flag, env var, config key, CRD field and chart
#                 value is in docs/ (or the chart README), and the docs' links resolve
#   clippy        cargo clippy --workspace --all-targets --all-features -- -D warnings
#   cargo-test    cargo test --workspace --all-features (gateway and operator tests find
#                 nats-server, kube-apiserver and etcd at $JETS3_TOOLS_DIR/bin)
#   release       cargo build --release -p jets3-gateway
#   chart         pytest e2e/chart: helm lint --strict, helm template (default and every option)
#                 under kubeconform -strict, values table vs values.yaml, chart CRDs vs crds/yaml,
#                 rendered objects, the chart's push keys against a real gateway
#   clients       pytest e2e/clients: AWS CLI, boto3, rclone and s3cmd against a real gateway
#   fuzz          scripts/fuzz.sh: each cargo-fuzz target in fuzz/ for FUZZ_SECONDS (10) on its
#                 committed corpus, built unoptimized without a sanitizer (nightly and
#                 cargo-fuzz installed when missing)
#   cluster       e2e/cluster/e2e.sh (make e2e-cluster): the images from host-built static
#                 binaries, a single-node Kubernetes here (kubelet, containerd, CNI, CoreDNS),
#                 the cluster scenario suite (helm install/test/upgrade/uninstall, an in-cluster
#                 client, NATS down, a gateway replaced, operator failover, key rotation), the
#                 cluster stopped and the host put back. Needs root.
# Prints each stage's elapsed time, and a summary at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

JETS3_TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
mkdir -p "$JETS3_TOOLS_DIR"
JETS3_TOOLS_DIR=$(cd "$JETS3_TOOLS_DIR" && pwd)
export JETS3_TOOLS_DIR
export PATH="$JETS3_TOOLS_DIR/bin:$PATH"

now_ms() { date +%s%3N; }
secs() { printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100)); }

T_ALL=$(now_ms)
SUMMARY=()

summary() {
    local line
    printf '\ntest.sh: stage times\n'
    for line in "${SUMMARY[@]}"; do
        printf '  %s\n' "$line"
    done
    printf '  %-12s %10s\n' total "$(secs $(($(now_ms) - T_ALL)))"
}

# stage NAME COMMAND...: runs COMMAND, times it, stops everything if it fails.
stage() {
    local name=$1 t0 rc dt
    shift
    printf '\n==> test.sh [%s] %s\n' "$name" "$*"
    t0=$(now_ms)
    rc=0
    "$@" || rc=$?
    dt=$(($(now_ms) - t0))
    if [ "$rc" -ne 0 ]; then
        SUMMARY+=("$(printf '%-12s %10s  FAILED (exit %d)' "$name" "$(secs "$dt")" "$rc")")
        summary
        printf '\ntest.sh: FAILED at stage [%s] (exit %d): %s\n' "$name" "$rc" "$*" >&2
        exit "$rc"
    fi
    SUMMARY+=("$(printf '%-12s %10s  ok' "$name" "$(secs "$dt")")")
    printf '<== test.sh [%s] ok in %s\n' "$name" "$(secs "$dt")"
}

pytest_suite() { # pytest_suite DIR
    local rc=0
    "$JETS3_TOOLS_DIR/venv/bin/python" -m pytest -q "$1" || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "test.sh: pytest collected no tests in $1; that counts as a failure" >&2
    fi
    return "$rc"
}

shell_scripts() { # every tracked shell script: *.sh, and files with a sh/bash shebang
    local f
    git ls-files -z | while IFS= read -r -d '' f; do
        [ -f "$f" ] || continue
        case "${f##*/}" in
        *.sh) printf '%s\0' "$f" ;;
        *.* | Makefile | Dockerfile) ;;
        *) if head -n1 "$f" | grep -Eq '^#!.*\b(ba)?sh\b'; then printf '%s\0' "$f"; fi ;;
        esac
    done
}

shellcheck_all() {
    local files=()
    mapfile -d '' files < <(shell_scripts)
    [ "${#files[@]}" -gt 0 ] || { echo "test.sh: found no shell scripts" >&2; return 1; }
    echo "shellcheck: ${#files[@]} scripts"
    shellcheck "${files[@]}"
}

stage tools bash scripts/tools.sh
stage fmt cargo fmt --all -- --check
stage cycles python3 scripts/check-cycles.py
stage shell-lint shellcheck_all
stage hadolint hadolint Dockerfile e2e/images/*.Dockerfile
stage docs python3 scripts/check-docs.py
stage clippy cargo clippy --workspace --all-targets --all-features -- -D warnings
stage cargo-test cargo test --workspace --all-features
stage release cargo build --release -p jets3-gateway
stage chart pytest_suite e2e/chart
stage clients pytest_suite e2e/clients
stage fuzz env FUZZ_SECONDS="${FUZZ_SECONDS:-10}" FUZZ_BUILD="${FUZZ_BUILD:---dev -s none}" bash scripts/fuzz.sh
stage cluster bash e2e/cluster/e2e.sh

summary
printf '\ntest.sh: all stages passed\n'
