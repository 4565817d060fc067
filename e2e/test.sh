#!/usr/bin/env bash
# e2e/test.sh - run every Herald test, as CI does:
#   formatting, clippy (zero warnings), unit tests and the CRD drift check, then, against
#   a fresh control plane (kube-apiserver, etcd, kube-controller-manager, nats-server on
#   free loopback ports) with a real node (NODE=1: kubelet, containerd, kube-proxy,
#   cluster DNS), stopped afterwards: the end-to-end suite (the pods Herald makes run on
#   the node, from the image operator/herald/build-image.sh builds from the debug
#   binary), the Helm chart test, and Herald installed as pods by its chart.
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

step "control plane (real kube-apiserver, etcd, kube-controller-manager, nats-server) and a real node"
STATE=$(mktemp -d /tmp/herald-test.XXXXXX)
stop_control_plane() {
  if [[ ${HERALD_E2E_KEEP:-0} == 1 ]]; then
    echo "control plane left running: source $STATE/env; stop: STATE=$STATE PURGE=1 e2e/controlplane/down.sh" >&2
  else
    STATE=$STATE PURGE=1 "$ROOT/e2e/controlplane/down.sh" >&2 || true
  fi
}
trap stop_control_plane EXIT
eval "$(STATE=$STATE NODE=1 "$ROOT/e2e/controlplane/up.sh")"
[[ -n ${HERALD_NODE:-} ]] || { echo "e2e/test.sh: the NODE=1 plane reported no node" >&2; exit 1; }

step "build herald"
cargo build --locked -p herald
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export HERALD_BIN=$TARGET/debug/herald

step "the herald image: operator/herald/build-image.sh (debug binary), imported into the node's containerd"
# The chart's appVersion tag: the one the operator's --sidecar-image and the examples name.
HERALD_IMAGE=ghcr.io/herald-dev/herald:$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/herald/Chart.yaml)
export HERALD_IMAGE
"$ROOT/operator/herald/build-image.sh" --binary "$HERALD_BIN" --tag "$HERALD_IMAGE" \
  --out "$STATE/herald-image.oci.tar" --containerd-socket "$HERALD_NODE_CONTAINERD" >&2

step "install the CRDs with kubectl apply"
kubectl apply -f crds/ >&2
kubectl wait --for condition=established --timeout=60s -f crds/ >&2

step "end-to-end tests (the pods Herald makes run on the node)"
cargo test --locked -p herald-e2e -- --test-threads "${HERALD_E2E_THREADS:-4}"

step "Helm chart: lint, install, RBAC, upgrade, bad values, uninstall (real Helm via helm-sdkpy)"
# helm-sdkpy bundles Helm's Go library; its metadata asks for a newer Python than it needs.
python3 -c 'import helm_sdkpy' 2>/dev/null ||
  python3 -m pip install --quiet --ignore-requires-python 'helm-sdkpy==0.1.32' >&2
python3 e2e/chart/test_chart.py

step "Herald as pods: helm install on the real node, delivery in-cluster, scale from zero"
python3 e2e/chart/test_real_node.py

step "all tests passed in $((SECONDS - T0)) s"
