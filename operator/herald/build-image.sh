#!/usr/bin/env bash
# operator/herald/build-image.sh - build the Herald image offline with buildah, from the
# Dockerfile at the repository root (FROM scratch: the `herald` binary, the glibc
# libraries it links, nsswitch.conf, CA certificates, uid 65532).
#
# Usage:
#   operator/herald/build-image.sh                      # cargo build --release, tag ghcr.io/herald-dev/herald:<appVersion>
#   operator/herald/build-image.sh --binary target/debug/herald --tag ghcr.io/herald-dev/herald:e2e \
#       --out /tmp/herald.oci.tar --containerd-socket /run/containerd/containerd.sock
#
# Options:
#   --binary PATH      the herald binary to ship (default: build it with cargo --release)
#   --tag NAME         image name (default ghcr.io/herald-dev/herald:<chart appVersion>);
#                      fully qualified, so containerd/CRI find it under that name
#   --out FILE         where the OCI archive goes (default ./herald-image.oci.tar)
#   --containerd-socket SOCK   also import it into that containerd (namespace k8s.io)
# Needs buildah (Debian: apt-get install buildah); no registry is contacted.
# buildah's storage: $HERALD_BUILDAH_ROOT (default /var/tmp/herald-buildah).
# Prints the archive path and the image size (the layer, uncompressed) on stdout.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "build-image.sh: $*" >&2; exit 1; }
trap 'die "failed at line $LINENO: $BASH_COMMAND"' ERR

BINARY='' OUT=$PWD/herald-image.oci.tar SOCK=''
TAG=ghcr.io/herald-dev/herald:$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/herald/Chart.yaml")
while (($#)); do
  case $1 in
    --binary) BINARY=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --containerd-socket) SOCK=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set /{/^#/{s/^# \{0,1\}//;p}}' "$0"; exit 0 ;;
    *) die "unknown argument $1 (try --help)" ;;
  esac
done
command -v buildah >/dev/null || die "buildah is required (apt-get install buildah)"
[[ $OUT == /* ]] || OUT=$PWD/$OUT

if [[ -z $BINARY ]]; then
  echo "==> cargo build --release -p herald" >&2
  (cd "$ROOT" && cargo build --release --locked -p herald >&2)
  BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/release/herald
fi
[[ -x $BINARY ]] || die "no executable herald at $BINARY"

# The root filesystem: the build context of the Dockerfile.
CONTEXT=$(mktemp -d /tmp/herald-image.XXXXXX)
STORAGE=(--root "${HERALD_BUILDAH_ROOT:-/var/tmp/herald-buildah}/storage"
  --runroot "${HERALD_BUILDAH_ROOT:-/var/tmp/herald-buildah}/run" --storage-driver vfs)
cleanup() {
  rm -rf "$CONTEXT"
  buildah "${STORAGE[@]}" rmi -f "$TAG" >/dev/null 2>&1 || true
}
trap cleanup EXIT
install -D -m 0755 "$BINARY" "$CONTEXT/usr/local/bin/herald"
# Every library the dynamic binary links, at the path the loader looks for it.
ldd "$BINARY" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$CONTEXT$lib"
done
# glibc >= 2.34 has the files and dns NSS modules built in: nsswitch.conf is all
# getaddrinfo needs to resolve Service names through the pod's resolv.conf.
install -d -m 0755 "$CONTEXT/etc" "$CONTEXT/etc/ssl/certs"
printf 'hosts: files dns\n' >"$CONTEXT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$CONTEXT/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$CONTEXT/etc/group"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$CONTEXT/etc/ssl/certs/ca-certificates.crt"
install -d -m 1777 "$CONTEXT/tmp"
install -d -m 0755 -o 65532 -g 65532 "$CONTEXT/home/nonroot"

echo "==> buildah bud -t $TAG ($(du -sh "$CONTEXT" | cut -f1) root filesystem)" >&2
buildah "${STORAGE[@]}" bud --quiet --layers=false -f "$ROOT/Dockerfile" -t "$TAG" "$CONTEXT" >&2
rm -f "$OUT"
buildah "${STORAGE[@]}" push --quiet "$TAG" "oci-archive:$OUT:$TAG" >&2
SIZE=$(du -sb "$CONTEXT" | cut -f1)
if [[ -n $SOCK ]]; then
  echo "==> importing into containerd at $SOCK (namespace k8s.io)" >&2
  ctr --address "$SOCK" -n k8s.io images import "$OUT" >&2
fi
echo "image $TAG archive $OUT size $SIZE bytes ($((SIZE / 1024 / 1024)) MiB uncompressed)"
