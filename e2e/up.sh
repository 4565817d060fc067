#!/usr/bin/env bash
# e2e/up.sh - bring up a complete local Herald and leave it running:
#   a real control plane (kube-apiserver, etcd, kube-controller-manager),
#   nats-server with JetStream, the Herald CRDs and operator, and examples/.
# Calling it again reuses whatever already runs. Stop everything with e2e/down.sh.
#   HERALD_DEV_STATE  where state, logs and the kubeconfig live (default /tmp/herald-dev)
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export STATE=${HERALD_DEV_STATE:-/tmp/herald-dev}
say() { printf '==> %s\n' "$*" >&2; }

say "control plane in $STATE"
eval "$("$ROOT/e2e/harness/up.sh")"

say "building herald"
cargo build --locked -p herald >&2
HERALD=$ROOT/target/debug/herald

say "installing the CRDs"
"$HERALD" crds | kubectl apply -f - >&2
kubectl wait --for condition=established --timeout=60s -f crds/ >&2
kubectl get namespace herald-system >/dev/null 2>&1 || kubectl create namespace herald-system >&2

# The operator is recorded like the control plane: pid plus start time, so that a
# reused pid is never mistaken for it.
starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
op_record=$STATE/herald-operator.pid
if [[ -s $op_record ]] && read -r pid st <"$op_record" && [[ $(starttime "$pid" 2>/dev/null) == "$st" ]]; then
  say "operator already running (pid $pid)"
else
  metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$STATE/logs"
  setsid -f bash -c 'echo "$$" >"$0"; exec "$@"' "$STATE/herald-operator.pid.tmp" \
    "$HERALD" operator --nats-url "$HERALD_NATS_URL" --metrics-addr "127.0.0.1:$metrics_port" \
    --ingress-url "http://127.0.0.1:8080" --identity "dev-$(hostname)" \
    </dev/null >>"$STATE/logs/herald-operator.log" 2>&1
  for _ in $(seq 50); do [[ -s $STATE/herald-operator.pid.tmp ]] && break; sleep 0.1; done
  pid=$(<"$STATE/herald-operator.pid.tmp"); sleep 0.2
  echo "$pid $(starttime "$pid")" >"$op_record"; rm -f "$STATE/herald-operator.pid.tmp"
  echo "$metrics_port" >"$STATE/herald-operator.metrics-port"
  say "operator started (pid $pid, metrics http://127.0.0.1:$metrics_port/metrics, log $STATE/logs/herald-operator.log)"
fi

say "applying examples/ to namespace default"
kubectl apply -n default -f examples/ >&2
kubectl wait -n default --for condition=Ready --timeout=60s broker/default >&2
kubectl get -n default brokers,triggers >&2

cat <<EOM

Herald is running. To use it from this shell:
  export KUBECONFIG=$KUBECONFIG
  export HERALD_NATS_URL=$HERALD_NATS_URL
  kubectl get herald -A
Logs: $STATE/logs    Stop everything: e2e/down.sh
EOM
