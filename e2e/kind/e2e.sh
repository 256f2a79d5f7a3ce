#!/usr/bin/env bash
# The kind end-to-end test (needs Docker, kind and kubectl; helm and the AWS CLI come from
# `make tools`). Creates the kind cluster of kind-config.yaml, builds and loads both images,
# installs the chart with the embedded NATS, applies e2e/examples (an S3Bucket and an
# S3Credential), waits for them to be Ready, copies a file through the AWS CLI with the keys
# from the Secret the operator wrote, compares checksums, and deletes the cluster.
#
#   make e2e-kind                 or   bash e2e/kind/e2e.sh
#   JETS3_KIND_KEEP=1 ...         keep the cluster afterwards (delete: kind delete cluster --name jets3)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
export PATH="$TOOLS_DIR/bin:$PATH"

CLUSTER=jets3        # the name in kind-config.yaml
NS=jets3             # the release's namespace
APP_NS=jets3-e2e     # where the example bucket and credential live
ENDPOINT=http://127.0.0.1:9000
TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/jets3/Chart.yaml)

step() { printf '\n==> kind e2e: %s\n' "$*"; }
die() {
    printf 'kind e2e: ERROR: %s\n' "$*" >&2
    exit 1
}
for tool in docker kind kubectl helm aws; do
    command -v "$tool" >/dev/null || die "$tool not found (docker, kind, kubectl: install them; helm, aws: make tools)"
done

teardown() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        kubectl get pods -A -o wide || true
        kubectl -n "$NS" logs -l app.kubernetes.io/instance=jets3 --all-containers --tail=50 --prefix || true
    fi
    if [ "${JETS3_KIND_KEEP:-0}" = 1 ]; then
        echo "kind e2e: keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
    else
        kind delete cluster --name "$CLUSTER" || true
    fi
    exit "$rc"
}

step "create cluster $CLUSTER"
kind create cluster --config kind-config.yaml --wait 180s
trap teardown EXIT

step "build and load images jets3-gateway:$TAG, jets3-operator:$TAG"
docker build --target gateway -t "jets3-gateway:$TAG" .
docker build --target operator -t "jets3-operator:$TAG" .
kind load docker-image --name "$CLUSTER" "jets3-gateway:$TAG" "jets3-operator:$TAG"

step "helm install (embedded NATS, S3 on NodePort 30900)"
# --wait: the gateways are Ready only once the operator has pushed them a config.
helm install jets3 charts/jets3 --namespace "$NS" --create-namespace --wait --timeout 5m \
    --set nats.embedded.enabled=true \
    --set gateway.service.type=NodePort --set gateway.service.nodePort=30900 \
    --set gateway.image.pullPolicy=Never --set operator.image.pullPolicy=Never

step "apply e2e/examples in namespace $APP_NS"
kubectl create namespace "$APP_NS"
kubectl -n "$APP_NS" apply -f e2e/examples/s3bucket.yaml -f e2e/examples/s3credential.yaml
kubectl -n "$APP_NS" wait --for=condition=Ready s3bucket/e2e s3credential/e2e-app --timeout=120s

step "AWS CLI with the keys from Secret e2e-app-s3"
secret() { kubectl -n "$APP_NS" get secret e2e-app-s3 -o "jsonpath={.data.$1}" | base64 -d; }
AWS_ACCESS_KEY_ID=$(secret AWS_ACCESS_KEY_ID)
AWS_SECRET_ACCESS_KEY=$(secret AWS_SECRET_ACCESS_KEY)
AWS_REGION=$(secret AWS_REGION)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
in_cluster=$(secret AWS_ENDPOINT_URL)
[ "$in_cluster" = "http://jets3-gateway.$NS.svc:9000" ] || die "AWS_ENDPOINT_URL is '$in_cluster'"

work=$(mktemp -d)
head -c $((12 * 1024 * 1024)) /dev/urandom >"$work/upload.bin" # multipart with the CLI's 8 MiB parts
aws --endpoint-url "$ENDPOINT" s3 cp "$work/upload.bin" s3://jets3-e2e/dir/upload.bin
aws --endpoint-url "$ENDPOINT" s3 ls s3://jets3-e2e/dir/ | grep -q ' upload.bin$' || die "upload.bin not listed"
aws --endpoint-url "$ENDPOINT" s3 cp s3://jets3-e2e/dir/upload.bin "$work/download.bin"
sum() { sha256sum "$1" | cut -d' ' -f1; }
[ "$(sum "$work/upload.bin")" = "$(sum "$work/download.bin")" ] || die "downloaded bytes differ"
rm -rf "$work"

step "ok: bucket and credential Ready, 12 MiB round trip through the gateway with the Secret's keys"
