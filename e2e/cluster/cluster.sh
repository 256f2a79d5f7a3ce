#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, from source: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy, kubelet and kubectl (scripts/tools-k8s.sh
# builds them, pinned), a containerd of its own, CNI bridge networking, a locally built pause
# image and CoreDNS as the cluster DNS. No registry: images come from the local Docker engine.
#
#   e2e/cluster/cluster.sh up              start it (a running one is left as it is)
#   e2e/cluster/cluster.sh down            stop it and put the host back as it was
#   e2e/cluster/cluster.sh status          what runs; exit 1 if the node is not up
#   e2e/cluster/cluster.sh load IMAGE...   copy Docker images into the node (docker save | ctr import)
#   e2e/cluster/cluster.sh kubeconfig      print the path of the admin kubeconfig
#
# Needs root, Linux with iptables, and Debian's containerd, runc, containernetworking-plugins
# and conntrack (installed with apt-get when missing). The cluster:
#   node jets3-node, InternalIP 10.244.0.1 on bridge jets3br0; pods 10.244.0.0/24 (no default
#   route: nothing leaves the machine); Services 10.96.0.0/16 (kubernetes 10.96.0.1, DNS
#   10.96.0.10, cluster.local); the API server on https://10.244.0.1:6443; a default
#   StorageClass "jets3-local" with hostPath volumes (made at `up` under the run directory, and
#   emptied and given back once their claim is deleted).
# Authentication: client certificates for every component (the kubelet as system:node:jets3-node
# under the Node authorizer); the kubelet takes only client certificates signed by the cluster CA.
#
# What it changes on the host, and `down` undoes (recorded in $RUN/host-changes):
#   the bridge jets3br0 and its routes; one iptables FORWARD rule for the bridge; the iptables
#   chains of kube-proxy and the kubelet; net.ipv4.ip_forward (the CNI bridge sets it to 1);
#   the cgroup /jets3 in every cgroup hierarchy. containerd and the kubelet run in a private mount
#   namespace: their mounts (pod volumes, overlay root filesystems, network namespaces under
#   /run/netns, /var/lib/cni, /var/log/pods, /var/log/containers) vanish with it.
#
# Directories: ${JETS3_TOOLS_DIR:-~/.cache/jets3}/cluster holds what is kept between runs
# (containerd's image store, the pause and CoreDNS images); $RUN (JETS3_CLUSTER_RUN, default
# .../cluster/run) holds one run's state (certificates, etcd, logs, volumes) and goes at `down`.
# Warm start (tools built, images in the store): about 20 s.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
BIN=$TOOLS_DIR/bin
CACHE=$TOOLS_DIR/cluster
RUN=${JETS3_CLUSTER_RUN:-$CACHE/run}

NODE=jets3-node
BRIDGE=jets3br0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1
SVC_CIDR=10.96.0.0/16
API_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
API_PORT=6443
DOMAIN=cluster.local
CGROUP=jets3
PAUSE_VERSION=3.10.2 # build/pause/Makefile TAG of the pinned k8s.io/kubernetes
PAUSE_IMAGE=jets3.local/pause:$PAUSE_VERSION
FW_COMMENT="jets3 cluster: pod traffic on $BRIDGE"
# Host paths the node writes outside its own directories: each gets a bind mount of a
# directory of $RUN inside the node's mount namespace.
NS_PATHS=(/run/netns /var/lib/cni /var/log/pods /var/log/containers)

export PATH="$BIN:$PATH"

say() { printf 'cluster: %s\n' "$*"; }
die() {
    printf 'cluster: ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
now_ms() { date +%s%3N; }
secs() { printf '%d.%01d s' $(($1 / 1000)) $((($1 % 1000) / 100)); }

need_root() { [ "$(id -u)" -eq 0 ] || die "the node needs root (kubelet, containerd, iptables, bridges)"; }

# running PID: the process exists and is not a zombie (a reaper may take a while to collect it).
running() { [ -r "/proc/$1/stat" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
alive() { [ -f "$RUN/$1.pid" ] && running "$(cat "$RUN/$1.pid")"; }

start_bg() { # start_bg NAME CMD...: in the background, log to $RUN/NAME.log, pid in $RUN/NAME.pid
    local name=$1
    shift
    setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$RUN/$name.pid"
}

in_ns() { nsenter --mount="/proc/$(cat "$RUN/mountns.pid")/ns/mnt" -- "$@"; }
ns_enter() { printf '%s\n' nsenter "--mount=/proc/$(cat "$RUN/mountns.pid")/ns/mnt" --; }

stop_pid() { # stop_pid NAME: SIGTERM, up to 10 s, then SIGKILL
    local pid i
    [ -f "$RUN/$1.pid" ] || return 0
    pid=$(cat "$RUN/$1.pid")
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            running "$pid" || break
            sleep 0.1
        done
        running "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$RUN/$1.pid"
}

wait_for() { # wait_for WHAT SECONDS LOG CMD...: until CMD succeeds; dies with LOG's tail
    local what=$1 secs=$2 log=$3 i
    shift 3
    for i in $(seq 1 $((secs * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what not ready after $secs s${log:+: $(tail -25 "$log")}"
}

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

# ---- host changes, recorded so that `down` can undo them ------------------------------------
record() { printf '%s\n' "$*" >>"$RUN/host-changes"; }

undo_host_changes() {
    [ -f "$RUN/host-changes" ] || return 0
    local kind a b
    # Newest first.
    while read -r kind a b; do
        case "$kind" in
        bridge) ip link del "$a" 2>/dev/null || true ;;
        forward-rule) iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$FW_COMMENT" -j ACCEPT 2>/dev/null || true ;;
        sysctl) sysctl -qw "$a=$b" || true ;;
        dir) rmdir "$a" 2>/dev/null || true ;;
        cgroup) remove_cgroups ;;
        nft-tables) remove_new_nft_tables ;;
        esac
    done < <(tac "$RUN/host-changes")
    rm -f "$RUN/host-changes"
}

# iptables-nft creates the nftables tables (ip nat, ip6 mangle...) that kube-proxy and the
# kubelet first write to; those that were not there before and are empty again go.
nft_tables() { nft list tables 2>/dev/null | awk '$1 == "table" { print $2, $3 }'; }

remove_new_nft_tables() {
    command -v nft >/dev/null 2>&1 || return 0
    local family name
    while read -r family name; do
        grep -qx "$family $name" "$RUN/nft-tables.before" && continue
        # Empty: base chains with their policy, no rule.
        if ! nft list table "$family" "$name" | grep -vqE '^\s*(table .*\{|chain .*\{|type .* hook .*;|\}|)\s*$'; then
            nft delete table "$family" "$name" 2>/dev/null || true
        fi
    done < <(nft_tables)
}

cgroup_roots() { # every mounted cgroup v1 hierarchy (or the v2 root)
    awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts
}

remove_cgroups() { # kill what is left in /jets3 (our pods' processes), then remove the tree
    local root d pid
    for root in $(cgroup_roots); do
        [ -d "$root/$CGROUP" ] || continue
        while read -r d; do
            while read -r pid; do
                [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
            done <"$d/cgroup.procs"
        done < <(find "$root/$CGROUP" -type d)
    done
    sleep 0.2
    for root in $(cgroup_roots); do
        [ -d "$root/$CGROUP" ] || continue
        find "$root/$CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ ! -d "$root/$CGROUP" ] || say "WARNING: could not remove $root/$CGROUP"
    done
}

# iptables chains made by kube-proxy and the kubelet: KUBE-* (all tables, IPv4 and IPv6).
remove_kube_chains() {
    local cmd table chain
    "$BIN/kube-proxy" --cleanup >"$RUN/kube-proxy-cleanup.log" 2>&1 || true
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null 2>&1 || continue
        for table in filter nat mangle; do
            # Rules that jump to KUBE-* chains from the built-in chains, then the chains.
            "$cmd" -t "$table" -S 2>/dev/null | awk '/^-A [A-Z]+ .*-j KUBE-/ && $2 !~ /^KUBE-/' |
                while read -r line; do
                    # shellcheck disable=SC2086 # the rule's own words
                    eval "$cmd -t $table ${line/-A/-D}" 2>/dev/null || true
                done
            for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
                "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
            done
            for chain in $("$cmd" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
                "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

# ---- packages and tools ----------------------------------------------------------------------
ensure_packages() {
    local missing=()
    command -v containerd >/dev/null 2>&1 || missing+=(containerd)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
    command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    [ "${#missing[@]}" -eq 0 ] && return
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    say "apt-get install -y ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

ensure_tools() {
    local t
    for t in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl coredns; do
        [ -x "$BIN/$t" ] || {
            JETS3_TOOLS_DIR=$TOOLS_DIR bash "$ROOT/scripts/tools-k8s.sh" node
            return
        }
    done
    # Cached binaries: a quick check of the stamps (rebuilds only what a pin change needs).
    JETS3_TOOLS_DIR=$TOOLS_DIR bash "$ROOT/scripts/tools-k8s.sh" node >"$CACHE/tools.log" 2>&1 ||
        die "scripts/tools-k8s.sh node failed: $(tail -20 "$CACHE/tools.log")"
}

# ---- certificates ----------------------------------------------------------------------------
cert() { # cert NAME SUBJECT EXTENDED-KEY-USAGE [SANS]: NAME.crt/key signed by the cluster CA
    local name=$1 subj=$2 eku=$3 sans=${4:-}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "$subj"
    {
        echo 'basicConstraints=critical,CA:FALSE'
        echo 'keyUsage=critical,digitalSignature'
        echo "extendedKeyUsage=$eku"
        [ -z "$sans" ] || echo "subjectAltName=$sans"
    } >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile "$name.ext" -out "$name.crt"
    rm -f "$name.csr" "$name.ext"
}

make_pki() {
    mkdir -p "$RUN/pki"
    (
        cd "$RUN/pki"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
            -out ca.crt -days 30 -subj /CN=jets3-cluster-ca \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        cert apiserver /CN=kube-apiserver serverAuth \
            "IP:$NODE_IP,IP:$API_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$DOMAIN"
        cert apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client clientAuth
        cert kubelet "/CN=$NODE" serverAuth "IP:$NODE_IP,DNS:$NODE"
        cert node "/O=system:nodes/CN=system:node:$NODE" clientAuth
        cert admin /O=system:masters/CN=jets3-admin clientAuth
        cert controller-manager /CN=system:kube-controller-manager clientAuth
        cert scheduler /CN=system:kube-scheduler clientAuth
        cert kube-proxy /CN=system:kube-proxy clientAuth
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
        openssl pkey -in sa.key -pubout -out sa.pub
        rm -f ca.srl
    ) >"$RUN/openssl.log" 2>&1 || die "openssl failed: $(tail -5 "$RUN/openssl.log")"
    local who
    for who in admin node controller-manager scheduler kube-proxy; do
        kubeconfig "$who" >"$RUN/$who.kubeconfig"
    done
    chmod 600 "$RUN"/*.kubeconfig
    cp "$RUN/admin.kubeconfig" "$RUN/kubeconfig"
}

kubeconfig() { # kubeconfig WHO: a kubeconfig with WHO's client certificate
    cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: jets3
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$RUN/pki/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 <"$RUN/pki/$1.crt")
    client-key-data: $(base64 -w0 <"$RUN/pki/$1.key")
contexts:
- name: jets3
  context: {cluster: jets3, user: $1}
current-context: jets3
EOF
}

# ---- host network ----------------------------------------------------------------------------
setup_network() {
    ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists already (another cluster? '$0 down')"
    ! ip -4 addr show | grep -q "inet $NODE_IP/" || die "$NODE_IP is already in use on this machine"
    if command -v nft >/dev/null 2>&1; then
        nft_tables >"$RUN/nft-tables.before"
        record nft-tables
    fi
    record sysctl net.ipv4.ip_forward "$(sysctl -n net.ipv4.ip_forward)"
    record bridge "$BRIDGE"
    ip link add "$BRIDGE" type bridge
    ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    # The host reaches Service IPs through the bridge, from the node address (kube-proxy DNATs).
    ip route add "$SVC_CIDR" dev "$BRIDGE" src "$NODE_IP"
    # Pod-to-pod traffic crosses FORWARD (bridge netfilter); a Docker engine's DROP policy must
    # not stop it.
    record forward-rule
    iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment "$FW_COMMENT" -j ACCEPT
    # Pods reach Services through the node (DNAT, then forwarded back onto the bridge).
    sysctl -qw net.ipv4.ip_forward=1
    local root
    record cgroup
    for root in $(cgroup_roots); do
        mkdir -p "$root/$CGROUP"
        # A new cpuset cgroup starts empty; give it the parent's CPUs and memory nodes.
        if [ -f "$root/cpuset.cpus" ]; then
            cat "$root/cpuset.cpus" >"$root/$CGROUP/cpuset.cpus"
            cat "$root/cpuset.mems" >"$root/$CGROUP/cpuset.mems"
        fi
    done
}

# ---- control plane ---------------------------------------------------------------------------
start_control_plane() {
    local etcd_port peer_port
    etcd_port=$(pick_port)
    peer_port=$(pick_port)
    start_bg etcd "$BIN/etcd" --name=jets3 --data-dir="$RUN/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-cluster="jets3=http://127.0.0.1:$peer_port" --listen-metrics-urls="" \
        --unsafe-no-fsync --log-level=warn
    wait_for etcd 20 "$RUN/etcd.log" sh -c "curl -fsS http://127.0.0.1:$etcd_port/health | grep -q '\"health\":\"true\"'"

    local p=$RUN/pki
    start_bg kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" \
        --client-ca-file="$p/ca.crt" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --service-account-issuer="https://kubernetes.default.svc.$DOMAIN" \
        --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
        --service-cluster-ip-range="$SVC_CIDR" \
        --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$p/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$p/ca.crt" \
        --kubelet-preferred-address-types=InternalIP \
        --cert-dir="$p" --v=1
    wait_for kube-apiserver 60 "$RUN/kube-apiserver.log" \
        sh -c "[ \"\$(curl -sS --cacert $p/ca.crt --cert $p/admin.crt --key $p/admin.key https://$NODE_IP:$API_PORT/readyz)\" = ok ]"

    start_bg kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig="$RUN/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$RUN/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$RUN/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$(pick_port)" --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" \
        --cluster-signing-cert-file="$p/ca.crt" --cluster-signing-key-file="$p/ca.key" \
        --cluster-cidr="$POD_CIDR" --service-cluster-ip-range="$SVC_CIDR" --v=1
    start_bg kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig="$RUN/scheduler.kubeconfig" \
        --authentication-kubeconfig="$RUN/scheduler.kubeconfig" \
        --authorization-kubeconfig="$RUN/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$(pick_port)" --leader-elect=false --v=1

    cat >"$RUN/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$(pick_port)
metricsBindAddress: 127.0.0.1:$(pick_port)
# NodePorts only on the node address, never on the machine's own interfaces.
nodePortAddresses: ["$NODE_IP/32"]
# 0: leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOF
    start_bg kube-proxy "$BIN/kube-proxy" --config="$RUN/kube-proxy.yaml" --v=1
}

# ---- node: containerd + kubelet in a private mount namespace ---------------------------------
start_mount_namespace() {
    local path
    for path in "${NS_PATHS[@]}"; do
        if [ ! -d "$path" ]; then
            mkdir -p "$path"
            record dir "$path"
        fi
        mkdir -p "$RUN/ns${path}"
    done
    # The namespace lives as long as this holder (and the processes started in it).
    start_bg mountns unshare --mount --propagation private sleep infinity
    wait_for "mount namespace" 5 "" sh -c "[ \"\$(readlink /proc/$(cat "$RUN/mountns.pid")/ns/mnt)\" != \"\$(readlink /proc/self/ns/mnt)\" ]"
    for path in "${NS_PATHS[@]}"; do
        in_ns mount --bind "$RUN/ns${path}" "$path"
    done
}

start_containerd() {
    mkdir -p "$CACHE/containerd" "$RUN/containerd" "$RUN/cni/net.d"
    cat >"$RUN/cni/net.d/10-jets3.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "jets3",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$SVC_CIDR"}],
        "dataDir": "$RUN/cni/ipam"
      }
    }
  ]
}
EOF
    cat >"$RUN/containerd.toml" <<EOF
version = 2
root = "$CACHE/containerd"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$RUN/containerd/containerd.sock"
[ttrpc]
  address = "$RUN/containerd/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # Without it every sandbox fails ("can't get final child's PID from pipe: EOF"): runc
  # cannot lower oom_score_adj without CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
    max_conf_num = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "$CACHE/containerd-opt"
EOF
    local ns
    mapfile -t ns < <(ns_enter)
    start_bg containerd "${ns[@]}" containerd --config "$RUN/containerd.toml"
    wait_for containerd 30 "$RUN/containerd.log" ctr_ version
}

ctr_() { ctr --address "$RUN/containerd/containerd.sock" --namespace k8s.io "$@"; }

start_kubelet() {
    mkdir -p "$RUN/kubelet"
    printf 'search %s\noptions ndots:5\n' "$DOMAIN" >"$RUN/resolv.conf"
    cat >"$RUN/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(pick_port)
tlsCertFile: $RUN/pki/kubelet.crt
tlsPrivateKeyFile: $RUN/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $RUN/pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$RUN/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
# This machine has cgroup v1, which Kubernetes 1.36 refuses unless told otherwise.
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $DOMAIN
resolvConf: $RUN/resolv.conf
podLogsDir: /var/log/pods
# A test node on a shared disk: never evict pods or delete images for lack of space.
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
    local ns
    mapfile -t ns < <(ns_enter)
    start_bg kubelet "${ns[@]}" "$BIN/kubelet" --config="$RUN/kubelet.yaml" \
        --kubeconfig="$RUN/node.kubeconfig" --root-dir="$RUN/kubelet" \
        --hostname-override="$NODE" --node-ip="$NODE_IP" --v=1
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$RUN/kubeconfig" "$@"; }

# Whether the node is Ready, starting the kubelet again (up to 5 times) when it exited: it
# exits at once when containerd's CRI service is not initialized yet, which `ctr version`
# does not wait for. The exited one's log is kept as kubelet.exited.log.
KUBELET_STARTS=0
kubelet_node_ready() {
    if ! alive kubelet; then
        KUBELET_STARTS=$((KUBELET_STARTS + 1))
        [ "$KUBELET_STARTS" -le 5 ] || return 1
        cp "$RUN/kubelet.log" "$RUN/kubelet.exited.log" 2>/dev/null || true
        start_kubelet
    fi
    node_ready
}

node_ready() {
    [ "$(kubectl_ get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ---- images ----------------------------------------------------------------------------------
have_image() { ctr_ images ls -q 2>/dev/null | grep -qx "$1"; }

# The name containerd gives a Docker image reference (docker.io/library/ for bare names).
containerd_name() {
    case "$1" in
    */*) case "${1%%/*}" in *.* | *:* | localhost) printf '%s\n' "$1" ;; *) printf 'docker.io/%s\n' "$1" ;; esac ;;
    *) printf 'docker.io/library/%s\n' "$1" ;;
    esac
}

# load_images IMAGE...: docker save | ctr import, for each image the node does not have in the
# Docker engine's version (its image id, kept as a label on the node's copy).
load_images() {
    local img id name have
    for img in "$@"; do
        id=$(docker image inspect -f '{{.Id}}' "$img") || die "no Docker image $img (build it first)"
        name=$(containerd_name "$img")
        have=$(ctr_ images ls "name==$name" 2>/dev/null | awk 'NR > 1 { print $NF }' | tr ',' '\n' |
            sed -n 's/^jets3.docker-id=//p')
        [ "$have" != "$id" ] || continue
        docker save "$img" | ctr_ images import - >/dev/null || die "ctr images import of $img failed"
        ctr_ images label "$name" "jets3.docker-id=$id" >/dev/null
        say "loaded $img into the node"
    done
}

build_infra_images() {
    local work
    if have_image "$PAUSE_IMAGE" && have_image "jets3.local/coredns:$(coredns_version)"; then
        return
    fi
    bash "$ROOT/scripts/docker.sh" start
    work=$(mktemp -d "${TMPDIR:-/tmp}/jets3-infra.XXXXXX")
    local src
    src=$(kubernetes_module_dir)/build/pause/linux/pause.c
    [ -f "$src" ] || die "no $src (the k8s.io/kubernetes module: scripts/tools-k8s.sh node downloads it)"
    gcc -Os -Wall -Werror -static -s -DVERSION="v$PAUSE_VERSION" -o "$work/pause" "$src" ||
        die "gcc could not build pause (apt-get install gcc libc6-dev)"
    DOCKER_BUILDKIT=0 docker build -q -f "$ROOT/e2e/images/pause.Dockerfile" -t "$PAUSE_IMAGE" "$work" >/dev/null
    rm -f "$work/pause"
    cp "$BIN/coredns" "$work/coredns"
    DOCKER_BUILDKIT=0 docker build -q -f "$ROOT/e2e/images/coredns.Dockerfile" \
        -t "jets3.local/coredns:$(coredns_version)" "$work" >/dev/null
    rm -rf "$work"
    load_images "$PAUSE_IMAGE" "jets3.local/coredns:$(coredns_version)"
}

coredns_version() { "$BIN/coredns" -version | sed -n 's/^CoreDNS-//p'; }

kubernetes_module_dir() {
    local v
    v=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' "$ROOT/e2e/k8s-tools/kubernetes/go.mod")
    printf '%s/k8s.io/kubernetes@%s\n' "${JETS3_GO_CACHE:-$TOOLS_DIR/go}/mod" "$v"
}

# ---- addons: CoreDNS, the default StorageClass and its volumes -------------------------------
PVS=6

# The StorageClass has no provisioner: its volumes are made at `up`. This loop gives them back
# once their claim is deleted, emptied (what reclaimPolicy Delete does for a real provisioner).
reclaim_loop() {
    local pv n
    while sleep 2; do
        for pv in $(kubectl_ get pv -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{"\n"}{end}' 2>/dev/null); do
            n=${pv#jets3-local-}
            [ "$n" != "$pv" ] && [ -d "$RUN/pv/$n" ] || continue
            find "$RUN/pv/$n" -mindepth 1 -delete
            kubectl_ patch pv "$pv" --type json -p '[{"op": "remove", "path": "/spec/claimRef"}]' >/dev/null 2>&1 || true
        done
    done
}

apply_addons() {
    local i
    mkdir -p "$RUN/pv"
    {
        cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: jets3-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
EOF
        for i in $(seq 0 $((PVS - 1))); do
            mkdir -p "$RUN/pv/pv$i"
            chmod 1777 "$RUN/pv/pv$i"
            cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: jets3-local-pv$i}
spec:
  storageClassName: jets3-local
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $RUN/pv/pv$i, type: Directory}
EOF
        done
        coredns_manifest
    } >"$RUN/addons.yaml"
    kubectl_ apply -f "$RUN/addons.yaml" >"$RUN/addons.log" 2>&1 ||
        die "kubectl apply of the addons failed: $(tail -20 "$RUN/addons.log")"
    start_bg pv-reclaimer bash "${BASH_SOURCE[0]}" reclaim-loop
}

coredns_manifest() {
    cat <<EOF
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes $DOMAIN in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: coredns
          image: jets3.local/coredns:$(coredns_version)
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 1053, protocol: UDP}
            - {name: dns-tcp, containerPort: 1053, protocol: TCP}
          readinessProbe:
            httpGet: {path: /ready, port: 8181}
            periodSeconds: 2
          livenessProbe:
            httpGet: {path: /health, port: 8080}
            periodSeconds: 10
          resources:
            requests: {cpu: 20m, memory: 32Mi}
            limits: {memory: 128Mi}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes:
        - name: config
          configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
    - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
EOF
}

# ---- up / down / status ----------------------------------------------------------------------
is_up() {
    alive kube-apiserver && alive kubelet && alive containerd && node_ready
}

up() {
    need_root
    mkdir -p "$CACHE"
    if [ -d "$RUN" ] && is_up; then
        say "already up: KUBECONFIG=$RUN/kubeconfig"
        return
    fi
    if [ -e "$RUN" ]; then
        say "cleaning up a previous run in $RUN"
        down
    fi
    local t0 t
    t0=$(now_ms)
    ensure_packages
    ensure_tools
    mkdir -p "$RUN"
    t=$(now_ms)
    setup_network
    make_pki
    start_control_plane
    say "control plane up in $(secs $(($(now_ms) - t)))"
    start_mount_namespace
    start_containerd
    build_infra_images
    start_kubelet
    wait_for "node $NODE" 60 "$RUN/kubelet.log" kubelet_node_ready
    say "node $NODE Ready after $(secs $(($(now_ms) - t0)))"
    apply_addons
    wait_for CoreDNS 90 "" kubectl_ -n kube-system wait --for=condition=Available deploy/coredns --timeout=2s
    say "up in $(secs $(($(now_ms) - t0))): export KUBECONFIG=$RUN/kubeconfig"
}

down() {
    need_root
    [ -d "$RUN" ] || {
        say "nothing to stop ($RUN does not exist)"
        return
    }
    local t0 id pid f
    t0=$(now_ms)
    # Controllers first, so that nothing replaces what goes next.
    stop_pid pv-reclaimer
    stop_pid kube-scheduler
    stop_pid kube-controller-manager
    stop_pid kubelet
    if alive containerd; then
        # Every container and sandbox: killed, then deleted (their shims exit with them).
        for id in $(ctr_ tasks ls -q 2>/dev/null); do
            ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_ containers ls -q 2>/dev/null); do
            ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
            ctr_ containers delete "$id" >/dev/null 2>&1 || true
        done
    fi
    stop_pid containerd
    # Shims left by a containerd that died earlier.
    for f in "$RUN"/containerd/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill -KILL "$pid" 2>/dev/null || true
    done
    stop_pid mountns
    stop_pid kube-proxy
    stop_pid kube-apiserver
    stop_pid etcd
    remove_kube_chains
    undo_host_changes
    if grep -q " $RUN" /proc/self/mounts; then
        die "something is still mounted under $RUN: $(grep " $RUN" /proc/self/mounts | head -3)"
    fi
    rm -rf "$RUN"
    say "down in $(secs $(($(now_ms) - t0))); the host is as it was"
}

status() {
    local name rc=0
    for name in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy containerd kubelet; do
        if alive "$name"; then
            printf 'cluster:   %-24s running (pid %s)\n' "$name" "$(cat "$RUN/$name.pid")"
        else
            printf 'cluster:   %-24s not running\n' "$name"
            rc=1
        fi
    done
    if [ "$rc" -eq 0 ] && node_ready; then
        say "node $NODE Ready; KUBECONFIG=$RUN/kubeconfig"
    else
        say "the node is not up"
        rc=1
    fi
    return "$rc"
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
load)
    shift
    [ $# -gt 0 ] || die "usage: $0 load IMAGE..."
    alive containerd || die "the node is not up ('$0 up')"
    load_images "$@"
    ;;
kubeconfig) printf '%s\n' "$RUN/kubeconfig" ;;
reclaim-loop) reclaim_loop ;; # started by `up`
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
