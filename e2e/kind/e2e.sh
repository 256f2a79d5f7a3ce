#!/usr/bin/env bash
# `make e2e-kind`: the cluster scenario suite (e2e/cluster, the one `make e2e-cluster` runs on
# this machine's own single-node cluster) on a kind cluster. Needs Docker and kind; the images
# come from scripts/images.sh (Rust's musl target and musl-gcc, added when missing), kubectl from
# PATH or `scripts/tools-k8s.sh kubectl`, helm and pytest from `make tools`.
#   1. kind create cluster (kind-config.yaml)      4. pytest e2e/cluster with its kubeconfig
#   2. scripts/images.sh                           5. kind delete cluster
#   3. kind load docker-image (all four images)
#
#   make e2e-kind                 or   bash e2e/kind/e2e.sh
#   JETS3_KIND_KEEP=1 ...         keep the cluster afterwards (delete: kind delete cluster --name jets3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
export PATH="$TOOLS_DIR/bin:$PATH"

CLUSTER=jets3 # the name in kind-config.yaml

step() { printf '\n==> kind e2e: %s\n' "$*"; }
die() {
    printf 'kind e2e: ERROR: %s\n' "$*" >&2
    exit 1
}
for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || die "$tool not found (docker, kind: install them; kubectl: scripts/tools-k8s.sh kubectl; helm: make tools)"
done
[ -x "$TOOLS_DIR/venv/bin/python" ] || die "no $TOOLS_DIR/venv: run make tools"

work=$(mktemp -d)
teardown() {
    local rc=$?
    if [ "${JETS3_KIND_KEEP:-0}" = 1 ]; then
        echo "kind e2e: keeping cluster $CLUSTER (KUBECONFIG=$work/kubeconfig; kind delete cluster --name $CLUSTER)"
    else
        kind delete cluster --name "$CLUSTER" || true
        rm -rf "$work"
    fi
    exit "$rc"
}

step "create cluster $CLUSTER"
kind create cluster --config kind-config.yaml --kubeconfig "$work/kubeconfig" --wait 180s
trap teardown EXIT

step "build and load the images"
bash scripts/images.sh
mapfile -t IMAGES < <(bash scripts/images.sh --list)
kind load docker-image --name "$CLUSTER" "${IMAGES[@]}"

step "the cluster scenario suite"
KUBECONFIG=$work/kubeconfig JETS3_E2E_IMAGES="${IMAGES[*]}" "$TOOLS_DIR/venv/bin/python" -m pytest -q e2e/cluster
