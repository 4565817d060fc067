#!/usr/bin/env bash
# e2e/bench/scale.sh - control-plane scale of Herald on the local control plane:
# BROKERS Brokers x TRIGGERS_PER_BROKER Triggers (exact-type filters) applied at once;
# prints how long until all are Ready, then, with no events flowing, the RSS and CPU
# (share of one core) of the operator, the dispatcher and nats-server.
#
#   eval "$(STATE=/tmp/herald-dev e2e/controlplane/up.sh)"
#   cargo build --release -p herald
#   e2e/bench/scale.sh                              # 1 Broker x 1,000 Triggers
#   BROKERS=100 TRIGGERS_PER_BROKER=10 e2e/bench/scale.sh
#
# It runs its own operator, ingress and dispatcher (release build), watching only its
# namespace, and removes the namespace afterwards. Figures: docs/benchmarks.md.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERALD=${HERALD_BIN:-$ROOT/target/release/herald}
BROKERS=${BROKERS:-1}
TRIGGERS_PER_BROKER=${TRIGGERS_PER_BROKER:-1000}
IDLE_SECS=${IDLE_SECS:-30}
: "${KUBECONFIG:?bring up the control plane first (e2e/controlplane/up.sh)}"
: "${HERALD_NATS_URL:?bring up the control plane first}"
NS=scale-$$
LOGS=$(mktemp -d)
say() { printf '[scale] %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  # The operator must see the namespace go: its finalizers delete the streams.
  kubectl delete namespace "$NS" --timeout=180s >/dev/null 2>&1 || say "namespace $NS not gone in 180 s"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if ! kubectl get crd triggers.eventing.herald.dev >/dev/null 2>&1; then
  "$HERALD" crds | kubectl apply -f - >/dev/null
  kubectl wait --for condition=established --timeout=60s -f "$ROOT/crds/" >/dev/null
fi
kubectl create namespace "$NS" >/dev/null
INGRESS_PORT=$(free_port)
"$HERALD" ingress --nats-url "$HERALD_NATS_URL" --watch-namespace "$NS" \
  --listen "127.0.0.1:$INGRESS_PORT" --metrics-addr "127.0.0.1:$(free_port)" >"$LOGS/ingress.log" 2>&1 &
pids+=($!)
"$HERALD" operator --nats-url "$HERALD_NATS_URL" --watch-namespace "$NS" --lease-namespace "$NS" \
  --identity scale --ingress-url "http://127.0.0.1:$INGRESS_PORT" \
  --metrics-addr "127.0.0.1:$(free_port)" >"$LOGS/operator.log" 2>&1 &
OPERATOR=$!; pids+=($!)
"$HERALD" dispatcher --nats-url "$HERALD_NATS_URL" --watch-namespace "$NS" --egress-allow 127.0.0.1/32 \
  --metrics-addr "127.0.0.1:$(free_port)" >"$LOGS/dispatcher.log" 2>&1 &
DISPATCHER=$!; pids+=($!)
NATS=$(pgrep -f "nats-server.*${HERALD_NATS_URL##*:}" | head -1)
sleep 2

manifests=$LOGS/objects.yaml
for b in $(seq 0 $((BROKERS - 1))); do
  printf 'apiVersion: eventing.herald.dev/v1alpha1\nkind: Broker\nmetadata: {name: b%d}\nspec: {}\n---\n' "$b"
  for t in $(seq 0 $((TRIGGERS_PER_BROKER - 1))); do
    printf 'apiVersion: eventing.herald.dev/v1alpha1\nkind: Trigger\nmetadata: {name: b%d-t%d}\nspec:\n  broker: b%d\n  filters: [{exact: {type: scale.t%d}}]\n  subscriber: {uri: "http://127.0.0.1:9/events"}\n---\n' "$b" "$t" "$b" "$t"
  done
done >"$manifests"
total=$((BROKERS * TRIGGERS_PER_BROKER))
say "$BROKERS Broker(s) x $TRIGGERS_PER_BROKER Trigger(s) = $total Triggers in $NS"
began=$(date +%s.%N)
kubectl apply -n "$NS" --server-side -f "$manifests" >/dev/null
applied=$(date +%s.%N)
ready() {
  kubectl get triggers -n "$NS" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}
while (( $(ready) < total )); do
  if (( $(echo "$(date +%s.%N) - $began > 300" | bc) )); then say "not all Ready after 300 s: $(ready)/$total"; exit 1; fi
  sleep 1
done
done_at=$(date +%s.%N)
printf 'applied in %.1f s; all %d Triggers Ready %.1f s after the apply began\n' \
  "$(echo "$applied - $began" | bc)" "$total" "$(echo "$done_at - $began" | bc)"

say "settling 20 s, then measuring ${IDLE_SECS} s of idle"
sleep 20
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
declare -A before
for p in "$OPERATOR" "$DISPATCHER" "$NATS"; do before[$p]=$(ticks "$p"); done
sleep "$IDLE_SECS"
total_cpu=0
for entry in "operator:$OPERATOR" "dispatcher:$DISPATCHER" "nats-server:$NATS"; do
  name=${entry%%:*} pid=${entry##*:}
  cpu=$(echo "scale=2; 100 * ($(ticks "$pid") - ${before[$pid]}) / ($hz * $IDLE_SECS)" | bc)
  total_cpu=$(echo "$total_cpu + $cpu" | bc)
  printf '%-11s RSS %4d MiB, idle CPU %5.1f %% of a core\n' "$name" "$(rss_mib "$pid")" "$cpu"
done
printf 'idle CPU, all three: %.1f %% of a core\n' "$total_cpu"

# What nats-server spends on the dispatcher's open pulls: the same idle, without it.
kill "$DISPATCHER"; wait "$DISPATCHER" 2>/dev/null || true
sleep 5
start=$(ticks "$NATS"); sleep "$IDLE_SECS"
printf 'nats-server with the dispatcher stopped: idle CPU %.1f %% of a core\n' \
  "$(echo "scale=2; 100 * ($(ticks "$NATS") - $start) / ($hz * $IDLE_SECS)" | bc)"
