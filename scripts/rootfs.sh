#!/bin/sh
# rootfs.sh DIR BINARY [CA_BUNDLE]: the whole root filesystem of a jets3 image (FROM scratch):
#   DIR/usr/local/bin/BINARY             the static (musl) executable
#   DIR/etc/ssl/certs/ca-certificates.crt  CA bundle (default: this system's), for NATS over TLS
#                                        and OTLP (rustls-native-certs reads this path)
#   DIR/etc/passwd, DIR/etc/group        root and the user the images run as: nonroot, 65532
# The Dockerfile's build stage and scripts/images.sh (host-built binaries) both call it, so
# both paths produce the same files. POSIX sh: it also runs in the Alpine build image.
set -eu
[ $# -ge 2 ] || {
    echo "usage: $0 DIR BINARY [CA_BUNDLE]" >&2
    exit 2
}
dir=$1 bin=$2 ca=${3:-/etc/ssl/certs/ca-certificates.crt}
[ -x "$bin" ] || {
    echo "rootfs.sh: $bin is not an executable" >&2
    exit 1
}
[ -s "$ca" ] || {
    echo "rootfs.sh: no CA bundle at $ca (install ca-certificates)" >&2
    exit 1
}
rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs"
cp "$bin" "$dir/usr/local/bin/"
chmod 0755 "$dir/usr/local/bin/${bin##*/}"
cp "$ca" "$dir/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$dir/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$dir/etc/passwd"
printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$dir/etc/group"
chmod 0644 "$dir/etc/passwd" "$dir/etc/group"
