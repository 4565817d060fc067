#!/usr/bin/env bash
# e2e/test.sh - run every Herald test, as CI does:
#   formatting, clippy (zero warnings), unit tests and the CRD drift check, then the
#   end-to-end suite and the Helm chart test against a fresh control plane (kube-apiserver, etcd,
#   kube-controller-manager, nats-server) on free loopback ports, stopped afterwards; then
#   Herald as pods on a real node (a second plane with NODE=1: kubelet, containerd, kube-proxy,
#   cluster DNS), with the image operator/herald/build-image.sh builds from the debug binary.
# On a new machine it installs what it needs first (Debian packages, the pinned
# nats-server, a one-time ~7 min Kubernetes build cached in /var/cache/herald-k8s).
#   HERALD_E2E_KEEP=1   leave the control plane running (prints where)
#   HERALD_E2E_THREADS  parallel e2e tests (default 4)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
T0=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
trap 'echo "e2e/test.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
cargo --version >&2

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit tests and CRD drift check"
cargo test --locked

step "control plane (real kube-apiserver, etcd, kube-controller-manager, nats-server)"
STATE=$(mktemp -d /tmp/herald-test.XXXXXX)
NODE_STATE=''
stop_plane() {   # STATE
  if [[ ${HERALD_E2E_KEEP:-0} == 1 ]]; then
    echo "control plane left running: source $1/env; stop: STATE=$1 PURGE=1 e2e/controlplane/down.sh" >&2
  else
    STATE=$1 PURGE=1 "$ROOT/e2e/controlplane/down.sh" >&2 || true
  fi
}
stop_control_plane() {
  [[ -z $STATE ]] || stop_plane "$STATE"
  [[ -z $NODE_STATE ]] || stop_plane "$NODE_STATE"
}
trap stop_control_plane EXIT
eval "$(STATE=$STATE "$ROOT/e2e/controlplane/up.sh")"

step "build herald"
cargo build --locked -p herald

step "install the CRDs with kubectl apply"
kubectl apply -f crds/ >&2
kubectl wait --for condition=established --timeout=60s -f crds/ >&2

step "end-to-end tests"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export HERALD_BIN=$TARGET/debug/herald
cargo test --locked -p herald-e2e -- --test-threads "${HERALD_E2E_THREADS:-4}"

step "Helm chart: lint, install, RBAC, upgrade, bad values, uninstall (real Helm via helm-sdkpy)"
# helm-sdkpy bundles Helm's Go library; its metadata asks for a newer Python than it needs.
python3 -c 'import helm_sdkpy' 2>/dev/null ||
  python3 -m pip install --quiet --ignore-requires-python 'helm-sdkpy==0.1.32' >&2
python3 e2e/chart/test_chart.py
stop_plane "$STATE" && STATE=''

step "real node: a second plane with kubelet, containerd, kube-proxy, cluster DNS (NODE=1)"
NODE_STATE=$(mktemp -d /tmp/herald-node.XXXXXX)
eval "$(STATE=$NODE_STATE NODE=1 "$ROOT/e2e/controlplane/up.sh")"
[[ -n ${HERALD_NODE:-} ]] || { echo "e2e/test.sh: the NODE=1 plane reported no node" >&2; exit 1; }

step "the herald image: operator/herald/build-image.sh (debug binary), imported into the node's containerd"
export HERALD_IMAGE=ghcr.io/herald-dev/herald:e2e
"$ROOT/operator/herald/build-image.sh" --binary "$HERALD_BIN" --tag "$HERALD_IMAGE" \
  --out "$NODE_STATE/herald-image.oci.tar" --containerd-socket "$HERALD_NODE_CONTAINERD" >&2

step "Herald as pods: helm install on the real node, delivery in-cluster, scale from zero"
python3 e2e/chart/test_real_node.py

step "all tests passed in $((SECONDS - T0)) s"
