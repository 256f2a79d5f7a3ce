#!/usr/bin/env bash
# `make e2e-cluster` (and the `cluster` stage of `make test`): jets3 on a real Kubernetes here.
#   1. scripts/images.sh            the images, from host-built static binaries (Docker, no registry)
#   2. e2e/cluster/cluster.sh up    the single-node cluster (kubelet, containerd, CNI, CoreDNS)
#   3. cluster.sh load              the images into the node
#   4. pytest e2e/cluster           the scenario suite (the same one `make e2e-kind` runs)
#   5. cluster.sh down              the host as it was (JETS3_CLUSTER_KEEP=1 keeps the cluster),
#                                   and a Docker engine this run started is stopped
# Needs root. Prints each step's time; the suite's figures go to the test log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
export JETS3_TOOLS_DIR=$TOOLS_DIR
CLUSTER=(bash "$ROOT/e2e/cluster/cluster.sh")

now_ms() { date +%s%3N; }
secs() { printf '%d.%01d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }
TIMES=()
step() { # step NAME CMD...
    local name=$1 t0 rc=0
    shift
    printf '\n==> e2e-cluster: %s\n' "$name"
    t0=$(now_ms)
    "$@" || rc=$?
    TIMES+=("$(printf '%-34s %9s%s' "$name" "$(secs $(($(now_ms) - t0)))" "$([ "$rc" -eq 0 ] || echo "  FAILED ($rc)")")")
    return "$rc"
}

finish() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$("${CLUSTER[@]}" kubeconfig)" ]; then
        KUBECONFIG=$("${CLUSTER[@]}" kubeconfig) "$TOOLS_DIR/bin/kubectl" get pods -A -o wide 2>/dev/null || true
    fi
    if [ "${JETS3_CLUSTER_KEEP:-0}" = 1 ]; then
        echo "e2e-cluster: keeping the cluster (KUBECONFIG=$("${CLUSTER[@]}" kubeconfig); stop it with make cluster-down)"
    else
        step "cluster down" "${CLUSTER[@]}" down || rc=$?
    fi
    if [ "$DOCKER_WAS_UP" = 0 ]; then
        bash scripts/docker.sh stop || true
    fi
    printf '\ne2e-cluster: step times\n'
    printf '  %s\n' "${TIMES[@]}"
    exit "$rc"
}

mapfile -t IMAGES < <(bash scripts/images.sh --list)
# A Docker engine this run starts (to build the images) is stopped again at the end.
DOCKER_WAS_UP=0
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && DOCKER_WAS_UP=1
trap finish EXIT
step "images" bash scripts/images.sh
step "cluster up" "${CLUSTER[@]}" up
step "load images" "${CLUSTER[@]}" load "${IMAGES[@]}"
KUBECONFIG=$("${CLUSTER[@]}" kubeconfig)
export KUBECONFIG JETS3_E2E_IMAGES="${IMAGES[*]}"
step "suite (pytest e2e/cluster)" "$TOOLS_DIR/venv/bin/python" -m pytest -q e2e/cluster
