#!/usr/bin/env bash
# Builds kube-apiserver and etcd (pinned) from the Go module proxy, for the local Kubernetes
# control plane that jets3's operator tests run against (no Docker, no kind, no kubelet);
# helm + kubeconform (`go install module@version`) for the chart checks; and the node parts of
# the single-node cluster of e2e/cluster (kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy, kubectl from the same k8s.io/kubernetes pin; CoreDNS).
#
#   scripts/tools-k8s.sh [build]       kube-apiserver and etcd (default)
#   scripts/tools-k8s.sh node          build + kubelet, kube-controller-manager, kube-scheduler,
#                                      kube-proxy, kubectl and coredns (what e2e/cluster needs)
#   scripts/tools-k8s.sh NAME          only one of them (kube-apiserver, etcd, helm, kubelet, ...)
#   scripts/tools-k8s.sh chart-tools   helm and kubeconform (what `make tools` installs)
#   scripts/tools-k8s.sh up DIR        start etcd + kube-apiserver on 127.0.0.1, state in DIR
#   scripts/tools-k8s.sh down DIR      stop what `up DIR` started
#   scripts/tools-k8s.sh smoke         build, `up` in a temp dir, check it over HTTPS, `down`
#   scripts/tools-k8s.sh update        regenerate e2e/k8s-tools/*/go.mod + go.sum from the pins
#
# Binaries go to ${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}/bin; Go's module and build caches to
# ${JETS3_GO_CACHE:-$JETS3_TOOLS_DIR/go}. Idempotent: a stamp file per binary records what was
# built; when it matches, nothing is rebuilt and Go is not even needed (a second or so).
# A cold build needs Go >= the go directive of the wrapper go.mod, and takes many minutes.
set -euo pipefail

# ---- Pinned versions: the one place to change them (then run `scripts/tools-k8s.sh update`) --
KUBERNETES_VERSION=v1.36.3 # k8s.io/kubernetes; staging modules k8s.io/* at v0.36.3
ETCD_VERSION=v3.6.16       # go.etcd.io/etcd/server/v3 (Kubernetes 1.36 is tested with etcd 3.6)
HELM_VERSION=v4.3.2        # helm.sh/helm/v4 (go install; its own go.mod/go.sum pin the rest)
KUBECONFORM_VERSION=v0.8.0 # github.com/yannh/kubeconform (go install)
COREDNS_VERSION=v1.14.7    # github.com/coredns/coredns (the cluster DNS of e2e/cluster)
# The commands of k8s.io/kubernetes built from e2e/k8s-tools/kubernetes (kube-apiserver first).
KUBERNETES_TOOLS=(kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl)
# Bump when the way a binary is built changes (flags, ldflags), so cached binaries get rebuilt.
BUILD_RECIPE=1
# ------------------------------------------------------------------------------------------------

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODROOT=$ROOT/e2e/k8s-tools
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
BIN=$TOOLS_DIR/bin

say() { printf 'tools-k8s: %s\n' "$*"; }
die() {
    printf 'tools-k8s: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
now() { date +%s; }
elapsed() { # elapsed START -> "3m07s"
    local s=$(($(now) - $1))
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# ---- Go environment: used only to build these third-party tools ------------------------------
setup_go_env() {
    local gocache=${JETS3_GO_CACHE:-$TOOLS_DIR/go}
    mkdir -p "$gocache" || die "cannot create $gocache"
    export GOMODCACHE=$gocache/mod GOCACHE=$gocache/build
    # local: never download another Go toolchain. -mod=mod: the wrapper has no vendor dir.
    # -modcacherw: the module cache can be removed with plain rm -rf.
    export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -modcacherw -buildvcs=false"
    # Pure-Go static binaries, like the official releases; no C compiler needed.
    export CGO_ENABLED=0
    # GOPROXY and GOSUMDB are left as the user has them. The committed go.sum lists every
    # module the builds need, so builds make no checksum-database look-ups; `update` does
    # (through the proxy: proxy.golang.org also serves sum.golang.org).
}

need_go() { # need_go MODULE-DIR: a local Go new enough for the module's go directive
    command -v go >/dev/null 2>&1 ||
        die "go not found on PATH. Go is needed (only) to build kube-apiserver and etcd: install Go >= $(go_directive "$1") (https://go.dev/dl), then rerun"
    local have want
    have=$(go env GOVERSION) || die "'go env GOVERSION' failed"
    have=${have#go}
    have=${have%% *}
    want=$(go_directive "$1")
    if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
        die "local Go is $have but $1/go.mod needs go >= $want (GOTOOLCHAIN=local: no toolchain download). Install a newer Go, or pin older versions in $0 and run '$0 update'"
    fi
}

go_directive() { awk '$1 == "go" { print $2; exit }' "$1/go.mod"; }

# ---- Building ----------------------------------------------------------------------------------
# tool NAME -> module dir (empty: `go install PKG@VERSION`, no wrapper module), main package,
# pinned module and version, ldflags, how to ask the version, and what it must say
tool_spec() {
    T_DIR='' T_VERSION_ARGS=--version
    case "$1" in
    kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubectl)
        # One wrapper module for every command of k8s.io/kubernetes: one dependency graph.
        T_DIR=$MODROOT/kubernetes
        T_MODULE=k8s.io/kubernetes
        T_VERSION=$KUBERNETES_VERSION
        T_PKG=k8s.io/kubernetes/cmd/$1
        # What the official release build stamps (hack/lib/version.sh), so /version is right.
        local mm=${KUBERNETES_VERSION#v}
        T_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
        T_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=${mm%%.*}"
        mm=${mm#*.}
        T_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=${mm%%.*}"
        T_LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
        T_EXPECT="Kubernetes $KUBERNETES_VERSION"
        if [ "$1" = kubectl ]; then
            T_VERSION_ARGS="version --client"
            T_EXPECT="Client Version: $KUBERNETES_VERSION"
        fi
        ;;
    coredns)
        T_DIR=$MODROOT/coredns
        T_MODULE=github.com/coredns/coredns
        T_VERSION=$COREDNS_VERSION
        # The wrapper's own main.go: upstream's coremain with only the plugins e2e/cluster uses.
        T_PKG=jets3.local/e2e/k8s-tools/coredns
        T_LDFLAGS="-s -w"
        T_VERSION_ARGS=-version
        T_EXPECT="CoreDNS-${COREDNS_VERSION#v}"
        ;;
    etcd)
        T_DIR=$MODROOT/etcd
        T_MODULE=go.etcd.io/etcd/server/v3
        T_VERSION=$ETCD_VERSION
        T_PKG=go.etcd.io/etcd/server/v3 # main.go at the module root (3.5 and 3.6)
        T_LDFLAGS="-s -w"
        T_EXPECT="etcd Version: ${ETCD_VERSION#v}"
        ;;
    helm)
        T_MODULE=helm.sh/helm/v4
        T_VERSION=$HELM_VERSION
        T_PKG=helm.sh/helm/v4/cmd/helm
        T_LDFLAGS="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
        T_VERSION_ARGS=version
        T_EXPECT="Version:\"$HELM_VERSION\""
        ;;
    kubeconform)
        T_MODULE=github.com/yannh/kubeconform
        T_VERSION=$KUBECONFORM_VERSION
        T_PKG=github.com/yannh/kubeconform/cmd/kubeconform
        T_LDFLAGS="-s -w -X main.version=$KUBECONFORM_VERSION"
        T_VERSION_ARGS=-v
        T_EXPECT=$KUBECONFORM_VERSION
        ;;
    *) die "unknown tool '$1'" ;;
    esac
}

stamp_key() { # what a binary was built from: pins, recipe, the exact go.mod/go.sum (and main.go)
    local sum=go-install
    if [ -n "$T_DIR" ]; then
        local files=("$T_DIR/go.mod" "$T_DIR/go.sum")
        mapfile -t -O 2 files < <(find "$T_DIR" -maxdepth 1 -name '*.go' | sort)
        sum=$(cat "${files[@]}" | sha256sum) || die "cannot read $T_DIR/go.mod, go.sum"
    fi
    printf '%s %s@%s recipe=%s mod=%s\n' "$1" "$T_MODULE" "$T_VERSION" "$BUILD_RECIPE" "${sum%% *}"
}

check_version() { # check_version NAME: the binary runs and reports the pinned version
    local out
    local args
    read -ra args <<<"$T_VERSION_ARGS"
    out=$("$BIN/$1" "${args[@]}" 2>&1) || die "$BIN/$1 $T_VERSION_ARGS failed: $out"
    case "$out" in
    *"$T_EXPECT"*) ;;
    *) die "$BIN/$1 $T_VERSION_ARGS says '${out%%$'\n'*}', expected '$T_EXPECT'" ;;
    esac
    printf 'tools-k8s:   %-15s %-28s %s\n' "$1" "${out%%$'\n'*}" "$BIN/$1"
}

ensure_tool() {
    local name=$1 start stamp key
    tool_spec "$name"
    stamp=$TOOLS_DIR/k8s-tools/$name.stamp
    if [ -z "$T_DIR" ]; then
        go_install_tool "$name" "$stamp"
        return
    fi
    { [ -f "$T_DIR/go.mod" ] && [ -f "$T_DIR/go.sum" ]; } ||
        die "$T_DIR/go.mod or go.sum is missing (they are committed; run '$0 update' to recreate)"
    key=$(stamp_key "$name")
    if [ -x "$BIN/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
        check_version "$name"
        return
    fi

    # The wrapper go.mod must pin what this script pins (someone may have edited one of them).
    awk -v m="$T_MODULE" -v v="$T_VERSION" '
        ($1 == m && $2 == v) || ($1 == "require" && $2 == m && $3 == v) { found = 1 }
        END { exit !found }' "$T_DIR/go.mod" ||
        die "$T_DIR/go.mod does not require $T_MODULE $T_VERSION (the pin in $0): run '$0 update'"
    setup_go_env
    need_go "$T_DIR"

    start=$(now)
    say "building $name from $T_MODULE@$T_VERSION with $(go env GOVERSION) (cold: many minutes on 2 cores; cached modules/objects in $GOCACHE)"
    local before after tmp=$BIN/.$name.tmp.$$
    before=$(cat "$T_DIR/go.mod" "$T_DIR/go.sum" | sha256sum)
    rm -f "$stamp"
    if ! (cd "$T_DIR" && nice -n 10 go build -trimpath -ldflags "$T_LDFLAGS" -o "$tmp" "$T_PKG"); then
        rm -f "$tmp"
        die "go build of $T_PKG failed after $(elapsed "$start") (see above; module: $T_DIR)"
    fi
    mv -f "$tmp" "$BIN/$name"
    after=$(cat "$T_DIR/go.mod" "$T_DIR/go.sum" | sha256sum)
    if [ "$before" != "$after" ]; then
        say "WARNING: the build changed $T_DIR/go.mod or go.sum: they were incomplete; review and commit them"
        key=$(stamp_key "$name")
    fi
    printf '%s\n' "$key" >"$stamp"
    say "built $name in $(elapsed "$start")"
    check_version "$name"
}

go_install_tool() { # go_install_tool NAME STAMP: `go install PKG@VERSION`, the module's own go.sum
    local name=$1 stamp=$2 key start gobin
    key=$(stamp_key "$name")
    if [ -x "$BIN/$name" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
        check_version "$name"
        return
    fi
    setup_go_env
    command -v go >/dev/null 2>&1 ||
        die "go not found on PATH. Go is needed (only) to build $name: install Go (https://go.dev/dl), then rerun"
    start=$(now)
    say "building $name: go install $T_PKG@$T_VERSION with $(go env GOVERSION) (cold: a few minutes)"
    gobin=$(mktemp -d "$BIN/.$name.XXXXXX")
    rm -f "$stamp"
    if ! (cd / && GOBIN=$gobin nice -n 10 go install -trimpath -ldflags "$T_LDFLAGS" "$T_PKG@$T_VERSION"); then
        rm -rf "$gobin"
        die "go install $T_PKG@$T_VERSION failed after $(elapsed "$start") (see above)"
    fi
    mv -f "$gobin/$name" "$BIN/$name"
    rm -rf "$gobin"
    printf '%s\n' "$key" >"$stamp"
    say "built $name in $(elapsed "$start")"
    check_version "$name"
}

# ---- update: regenerate a wrapper module from the pins ------------------------------------------
update_module() { # update_module NAME...: the wrapper module of NAME's tool_spec, with every NAME as a tool
    local name=$1 upstream_mod godir dir pkgs=() tool
    tool_spec "$name"
    for tool in "$@"; do
        tool_spec "$tool"
        pkgs+=("$T_PKG@$T_VERSION")
    done
    if [ "$name" = coredns ]; then
        pkgs=() # built from the wrapper's main.go, which needs only the module
    fi
    setup_go_env
    command -v go >/dev/null 2>&1 || die "go not found on PATH"
    mkdir -p "$T_DIR"
    dir=${T_DIR##*/}
    say "update: resolving $T_MODULE@$T_VERSION"
    upstream_mod=$(cd / && go mod download -json "$T_MODULE@$T_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p') || true
    [ -f "$upstream_mod" ] || die "could not download $T_MODULE@$T_VERSION from $(go env GOPROXY)"
    godir=$(awk '$1 == "go" { print $2; exit }' "$upstream_mod")
    {
        if [ $# -eq 1 ]; then
            printf '// Wrapper module: builds %s from the Go module proxy. Go is used here only to\n' "$1"
            # shellcheck disable=SC2016 # literal backquotes
            printf '// build this third-party tool (see scripts/tools-k8s.sh); regenerate with `scripts/tools-k8s.sh update`.\n'
        else
            printf '// Wrapper module: builds these tools from the Go module proxy: %s.\n' "$*"
            # shellcheck disable=SC2016 # literal backquotes
            printf '// Go is used here only to build third-party tools (see scripts/tools-k8s.sh); regenerate with `scripts/tools-k8s.sh update`.\n'
        fi
        printf 'module jets3.local/e2e/k8s-tools/%s\n\ngo %s\n' "$dir" "$godir"
        if [ "$T_MODULE" = k8s.io/kubernetes ]; then
            # k8s.io/kubernetes replaces each staging module with ./staging/src/k8s.io/NAME, and a
            # dependency's replaces are ignored: point each at its published v0.X.Y tag instead.
            local staging=v0.${KUBERNETES_VERSION#v1.}
            printf '\nrequire %s %s\n\n' "$T_MODULE" "$T_VERSION"
            printf '// k8s.io/kubernetes replaces every staging module with ./staging/src/...; point each at its published tag.\n'
            printf 'replace (\n'
            awk -v s="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { printf "\t%s => %s %s\n", $1, $1, s }' "$upstream_mod"
            printf ')\n'
        fi
    } >"$T_DIR/go.mod"
    rm -f "$T_DIR/go.sum"
    need_go "$T_DIR"
    if [ "${#pkgs[@]}" -gt 0 ]; then
        (cd "$T_DIR" && go get -tool "${pkgs[@]}" && go mod tidy) ||
            die "could not resolve ${pkgs[*]} in $T_DIR"
    else
        (cd "$T_DIR" && go get "$T_MODULE@$T_VERSION" && go mod tidy) ||
            die "could not resolve $T_MODULE@$T_VERSION in $T_DIR"
    fi
    say "update: wrote $T_DIR/go.mod and go.sum ($(wc -l <"$T_DIR/go.sum") go.sum lines); commit them"
}

# ---- A local control plane: etcd + kube-apiserver on 127.0.0.1 ----------------------------------
# This is the recipe the test harness reuses (see e2e/k8s-tools/README.md). k8s_up DIR:
#   DIR/pki/      ca.crt/key (test CA), apiserver.crt/key (serving cert for 127.0.0.1 and localhost),
#                 admin.crt/key (client cert, O=system:masters), sa.key/sa.pub (service-account
#                 token signing pair), tokens.csv (a bearer token for user jets3-admin in group
#                 system:masters: full access under RBAC)
#   DIR/etcd/     etcd's data; DIR/etcd.log, DIR/kube-apiserver.log; DIR/*.pid
#   DIR/kubeconfig  server + CA + token; DIR/env  K8S_SERVER, K8S_TOKEN, K8S_CA (sourceable)
# Ports are picked at random among free ones (K8S_ETCD_PORT, K8S_ETCD_PEER_PORT, K8S_API_PORT
# override). It returns once /readyz answers "ok" (about 5-15 s), or dies with the log tail.
# There is no kube-controller-manager: no garbage collection of ownerReferences, namespaces stay
# Terminating, no default ServiceAccount (so Pods are rejected); CRDs, Secrets, ConfigMaps,
# status subresources, watches, RBAC, and admission work.

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
    local p i
    for i in $(seq 1 50); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
        if port_free "$p"; then
            printf '%s\n' "$p"
            return
        fi
    done
    die "found no free port on 127.0.0.1"
}

make_pki() { # make_pki DIR/pki: a throwaway CA, serving cert, admin client cert, SA keys, token
    local pki=$1 ecparam=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"
    mkdir -p "$pki"
    (
        cd "$pki"
        umask 077
        openssl req -x509 "${ecparam[@]}" -keyout ca.key -out ca.crt -days 30 -subj /CN=jets3-test-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -new "${ecparam[@]}" -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
            'extendedKeyUsage=serverAuth' \
            'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc' >server.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out apiserver.crt
        openssl req -new "${ecparam[@]}" -keyout admin.key -out admin.csr -subj /O=system:masters/CN=jets3-admin
        printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
            'extendedKeyUsage=clientAuth' >client.ext
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile client.ext -out admin.crt
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
        openssl pkey -in sa.key -pubout -out sa.pub
        # token,user,uid,"group1,group2"
        printf '%s,jets3-admin,jets3-admin,"system:masters"\n' "$(openssl rand -hex 24)" >tokens.csv
        rm -f ./*.csr ./*.ext ca.srl
    ) >"$pki/openssl.log" 2>&1 || die "openssl failed: $(tail -5 "$pki/openssl.log")"
}

start_bg() { # start_bg DIR NAME ARGS...: run in the background, log to DIR/NAME.log, pid in DIR/NAME.pid
    local dir=$1 name=$2
    shift 2
    nohup "$@" >"$dir/$name.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$dir/$name.pid"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

k8s_up() {
    local dir=$1 etcd_port peer_port api_port token i
    { [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ]; } || die "etcd/kube-apiserver not built: run $0 first"
    command -v curl >/dev/null 2>&1 || die "curl not found"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if alive "$dir/etcd.pid" || alive "$dir/kube-apiserver.pid"; then
        die "a control plane is already running in $dir ($0 down $dir)"
    fi
    make_pki "$dir/pki"
    etcd_port=${K8S_ETCD_PORT:-$(pick_port)}
    peer_port=${K8S_ETCD_PEER_PORT:-$(pick_port)}
    api_port=${K8S_API_PORT:-$(pick_port)}

    # kube-apiserver below: --endpoint-reconciler-type=none because the "kubernetes" Endpoints
    # may not hold a loopback address (the reconciler would log an error every 10 s).
    # etcd: one member, plain HTTP on loopback only. --unsafe-no-fsync: test data, much faster.
    start_bg "$dir" etcd "$BIN/etcd" \
        --name=jets3 \
        --data-dir="$dir/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" \
        --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-cluster="jets3=http://127.0.0.1:$peer_port" \
        --listen-metrics-urls="" \
        --unsafe-no-fsync \
        --log-level=warn
    for i in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"' && break
        alive "$dir/etcd.pid" || die "etcd exited: $(tail -20 "$dir/etcd.log")"
        [ "$i" -lt 100 ] || die "etcd not healthy after 20 s: $(tail -20 "$dir/etcd.log")"
        sleep 0.2
    done

    start_bg "$dir" kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 \
        --secure-port="$api_port" \
        --tls-cert-file="$dir/pki/apiserver.crt" \
        --tls-private-key-file="$dir/pki/apiserver.key" \
        --client-ca-file="$dir/pki/ca.crt" \
        --token-auth-file="$dir/pki/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$dir/pki/sa.pub" \
        --service-account-signing-key-file="$dir/pki/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 \
        --endpoint-reconciler-type=none \
        --cert-dir="$dir/pki" \
        --v=1
    token=$(cut -d, -f1 "$dir/pki/tokens.csv")
    local server=https://127.0.0.1:$api_port
    for i in $(seq 1 300); do
        [ "$(curl -sS --cacert "$dir/pki/ca.crt" -H "Authorization: Bearer $token" "$server/readyz" 2>/dev/null)" = ok ] && break
        alive "$dir/kube-apiserver.pid" || die "kube-apiserver exited: $(tail -20 "$dir/kube-apiserver.log")"
        [ "$i" -lt 300 ] || die "kube-apiserver not ready after 60 s: $(tail -20 "$dir/kube-apiserver.log")"
        sleep 0.2
    done

    cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: jets3
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")
users:
- name: jets3-admin
  user:
    token: $token
contexts:
- name: jets3
  context: {cluster: jets3, user: jets3-admin}
current-context: jets3
EOF
    printf 'K8S_SERVER=%s\nK8S_TOKEN=%s\nK8S_CA=%s\nKUBECONFIG=%s\n' \
        "$server" "$token" "$dir/pki/ca.crt" "$dir/kubeconfig" >"$dir/env"
    say "control plane up: $server (etcd http://127.0.0.1:$etcd_port); KUBECONFIG=$dir/kubeconfig"
}

k8s_down() { # stop what k8s_up DIR started (only those pids), apiserver first
    local dir=$1 name pid i
    for name in kube-apiserver etcd; do
        [ -f "$dir/$name.pid" ] || continue
        pid=$(cat "$dir/$name.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        fi
        rm -f "$dir/$name.pid"
    done
}

smoke() {
    local dir start server token ca out code
    dir=$(mktemp -d "${TMPDIR:-/tmp}/jets3-k8s.XXXXXX")
    # shellcheck disable=SC2064 # expand now: dir is local
    trap "k8s_down '$dir'; rm -rf '$dir'" EXIT
    start=$(now)
    k8s_up "$dir"
    say "smoke: ready in $(elapsed "$start")"
    # shellcheck disable=SC1091
    . "$dir/env"
    server=$K8S_SERVER token=$K8S_TOKEN ca=$K8S_CA
    api() { curl -sS --cacert "$ca" -H "Authorization: Bearer $token" "$@"; }

    out=$(api "$server/readyz?verbose") || die "readyz: $out"
    [ "${out##*$'\n'}" = "readyz check passed" ] || die "readyz?verbose: $out"
    out=$(api "$server/version") || die "version: $out"
    case "$out" in *"\"gitVersion\": \"$KUBERNETES_VERSION\""*) ;; *) die "/version: $out" ;; esac
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$ca" "$server/api/v1/namespaces")
    [ "$code" = 401 ] || [ "$code" = 403 ] || die "anonymous list namespaces gave HTTP $code, expected 401/403"
    code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$dir/pki/admin.crt" \
        --key "$dir/pki/admin.key" "$server/api/v1/namespaces")
    [ "$code" = 200 ] || die "client-cert list namespaces gave HTTP $code"
    out=$(api -f -X POST -H 'Content-Type: application/json' "$server/api/v1/namespaces/default/configmaps" \
        -d '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"smoke"},"data":{"k":"v"}}') ||
        die "create configmap: $out"
    out=$(api -f "$server/api/v1/namespaces/default/configmaps/smoke") || die "get configmap: $out"
    case "$out" in *'"k": "v"'*) ;; *) die "configmap read back: $out" ;; esac
    out=$(api -f -X POST -H 'Content-Type: application/json' \
        "$server/apis/apiextensions.k8s.io/v1/customresourcedefinitions" -d '{
        "apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
        "metadata":{"name":"widgets.smoke.jets3.io"},
        "spec":{"group":"smoke.jets3.io","scope":"Namespaced",
          "names":{"plural":"widgets","singular":"widget","kind":"Widget"},
          "versions":[{"name":"v1","served":true,"storage":true,
            "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}') ||
        die "create CRD: $out"
    local i
    for i in $(seq 1 50); do
        out=$(api -s -o /dev/null -w '%{http_code}' "$server/apis/smoke.jets3.io/v1/namespaces/default/widgets")
        [ "$out" = 200 ] && break
        [ "$i" -lt 50 ] || die "CRD widgets not served after 10 s (HTTP $out)"
        sleep 0.2
    done
    say "smoke: ok (readyz, /version $KUBERNETES_VERSION, token + client-cert auth, RBAC denies anonymous, ConfigMap, CRD) in $(elapsed "$start")"
}

# ---- main ---------------------------------------------------------------------------------------
CMD=${1:-build}
case "$CMD" in
-h | --help | help)
    usage
    exit 0
    ;;
build | node | kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubectl | \
    coredns | etcd | helm | kubeconform | chart-tools | update | smoke) ;;
up | down) [ $# -ge 2 ] || die "usage: $0 $CMD DIR" ;;
*)
    usage >&2
    die "unknown argument '$CMD'"
    ;;
esac

mkdir -p "$BIN" "$TOOLS_DIR/k8s-tools" || die "cannot create $BIN"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
BIN=$TOOLS_DIR/bin

case "$CMD" in
up)
    k8s_up "$2"
    exit 0
    ;;
down)
    k8s_down "$2"
    exit 0
    ;;
esac

# Two builds at once (make test in two shells) must not race; separate from tools.sh's lock.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock-k8s"
    flock 9
fi

T0=$(now)
case "$CMD" in
build | smoke)
    say "tools dir $TOOLS_DIR"
    ensure_tool etcd
    ensure_tool kube-apiserver
    ;;
node)
    say "tools dir $TOOLS_DIR"
    ensure_tool etcd
    for t in "${KUBERNETES_TOOLS[@]}" coredns; do
        ensure_tool "$t"
    done
    ;;
kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubectl | coredns | etcd | helm | kubeconform)
    ensure_tool "$CMD"
    ;;
chart-tools)
    ensure_tool helm
    ensure_tool kubeconform
    ;;
update)
    update_module "${KUBERNETES_TOOLS[@]}"
    update_module etcd
    update_module coredns
    ;;
esac
say "done in $(elapsed "$T0")"
if [ "$CMD" = smoke ]; then
    exec 9>&- # release the build lock while the control plane runs
    smoke
fi
