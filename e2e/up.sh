#!/usr/bin/env bash
# e2e/up.sh - bring up a complete local Herald and leave it running:
#   a real control plane (kube-apiserver, etcd, kube-controller-manager) with a real
#   node (kubelet, containerd, kube-proxy, cluster DNS; e2e/controlplane/README.md),
#   nats-server with JetStream, the herald image (operator/herald/build-image.sh) in the
#   node's containerd, the Herald CRDs, and Herald itself installed by Helm from
#   charts/herald as pods (operator x2, ingress, dispatcher, sources; e2e/chart/install_on_node.py),
#   examples/, and a `herald display` pod behind a Trigger; then it sends an event with
#   `herald send` to the ingress's NodePort and shows it delivered through the Trigger.
# Calling it again reuses whatever already runs (and upgrades the Helm release). Stop
# everything with e2e/down.sh.
#   HERALD_DEV_STATE  where state, logs and the kubeconfig live (default /tmp/herald-dev)
#   HERALD_DEV_NODE=0 no node, for a machine that cannot run a kubelet: the components
#                     then run as local processes and consumer Deployments stay Pending.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export STATE=${HERALD_DEV_STATE:-/tmp/herald-dev}
say() { printf '==> %s\n' "$*" >&2; }

say "control plane in $STATE"
export NODE=${HERALD_DEV_NODE:-1}
eval "$("$ROOT/e2e/controlplane/up.sh")"

say "building herald"
cargo build --locked -p herald >&2
HERALD=${CARGO_TARGET_DIR:-$ROOT/target}/debug/herald
if [[ -n ${HERALD_NODE:-} ]]; then
  # Under the chart's default image name, so consumer Deployments' sidecars and
  # examples/consumer-trigger.yaml find it (nothing is pulled).
  say "the herald image into the node's containerd"
  HERALD_IMAGE=$("$ROOT/operator/herald/build-image.sh" --binary "$HERALD" --out "$STATE/herald-image.oci.tar" \
    --containerd-socket "$HERALD_NODE_CONTAINERD" | sed -n 's/^image \([^ ]*\) archive .*/\1/p')
  export HERALD_IMAGE
fi

say "installing the CRDs"
"$HERALD" crds | kubectl apply -f - >&2
kubectl wait --for condition=established --timeout=60s -f crds/ >&2

herald_as_pods() {
  say "Herald by Helm on node $HERALD_NODE (charts/herald, image $HERALD_IMAGE)"
  # helm-sdkpy bundles Helm's Go library; its metadata asks for a newer Python than it needs.
  python3 -c 'import helm_sdkpy' 2>/dev/null ||
    python3 -m pip install --quiet --ignore-requires-python 'helm-sdkpy==0.1.32' >&2
  local out
  out=$(python3 "$ROOT/e2e/chart/install_on_node.py" --namespace herald-system --release herald)
  INGRESS_URL=${out##*INGRESS_URL=}
  SUBSCRIBER='ref: {apiVersion: v1, kind: Service, name: display}'
  delivered() { kubectl logs -n default -l app=display --tail=-1 2>/dev/null | grep -q "id $1"; }
  show_delivery() { kubectl logs -n default -l app=display --tail=-1 | grep -A4 "id $1"; }
  WHERE="the display pod (kubectl logs -l app=display)"
}

herald_as_processes() {
  # Herald's processes are recorded like the control plane's: "pid starttime" in
  # $STATE/<name>.pid, so a reused pid is never mistaken for one of them.
  starttime() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
  running() {   # NAME -> true if recorded and still that process
    local pid st
    [[ -s $STATE/$1.pid ]] && read -r pid st <"$STATE/$1.pid" && [[ $(starttime "$pid" 2>/dev/null) == "$st" ]]
  }
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  start() {   # NAME ARGS... (runs "herald ARGS...")
    local name=$1; shift
    mkdir -p "$STATE/logs"
    setsid -f bash -c 'echo "$$" >"$0"; exec "$@"' "$STATE/$name.pid.tmp" "$HERALD" "$@" \
      </dev/null >>"$STATE/logs/$name.log" 2>&1
    for _ in $(seq 50); do [[ -s $STATE/$name.pid.tmp ]] && break; sleep 0.1; done
    local pid; pid=$(<"$STATE/$name.pid.tmp"); sleep 0.3
    echo "$pid $(starttime "$pid")" >"$STATE/$name.pid"; rm -f "$STATE/$name.pid.tmp"
    running "$name" || { tail -n 20 "$STATE/logs/$name.log" >&2; say "$name exited at once"; exit 1; }
    say "started $name (pid $pid, log $STATE/logs/$name.log)"
  }

  if running herald-ingress; then
    say "ingress already running"
  else
    echo "$(free_port)" >"$STATE/herald-ingress.port"
    start herald-ingress ingress --nats-url "$HERALD_NATS_URL" \
      --listen "127.0.0.1:$(<"$STATE/herald-ingress.port")" --metrics-addr "127.0.0.1:$(free_port)"
  fi
  INGRESS_URL=http://127.0.0.1:$(<"$STATE/herald-ingress.port")
  [[ -f $STATE/herald-sources.port ]] || echo "$(free_port)" >"$STATE/herald-sources.port"
  SOURCES_URL=http://127.0.0.1:$(<"$STATE/herald-sources.port")

  if running herald-operator; then
    say "operator already running"
  else
    kubectl get namespace herald-system >/dev/null 2>&1 || kubectl create namespace herald-system >&2
    start herald-operator operator --nats-url "$HERALD_NATS_URL" --ingress-url "$INGRESS_URL" \
      --sources-url "$SOURCES_URL" --lease-namespace herald-system --workload-nats-url "$HERALD_NATS_URL" \
      --metrics-addr "127.0.0.1:$(free_port)" --identity "dev-$(hostname)"
  fi

  if running herald-dispatcher; then
    say "dispatcher already running"
  else
    # The display subscriber and the ingress listen on 127.0.0.1, which the egress
    # policy refuses unless allowed (the apiserver's port there stays refused).
    start herald-dispatcher dispatcher --nats-url "$HERALD_NATS_URL" --metrics-addr "127.0.0.1:$(free_port)" \
      --egress-allow 127.0.0.1/32
  fi
  if running herald-sources; then
    say "sources adapter already running"
  else
    start herald-sources sources --nats-url "$HERALD_NATS_URL" \
      --listen "127.0.0.1:$(<"$STATE/herald-sources.port")" --metrics-addr "127.0.0.1:$(free_port)" \
      --egress-allow 127.0.0.1/32
  fi
  if running herald-display; then
    say "display subscriber already running"
  else
    echo "$(free_port)" >"$STATE/herald-display.port"
    start herald-display display --listen "127.0.0.1:$(<"$STATE/herald-display.port")"
  fi
  SUBSCRIBER="uri: http://127.0.0.1:$(<"$STATE/herald-display.port")/"
  delivered() { grep -q "id $1" "$STATE/logs/herald-display.log"; }
  show_delivery() { grep -A4 "id $1" "$STATE/logs/herald-display.log"; }
  WHERE="the display process ($STATE/logs/herald-display.log)"
}

if [[ -n ${HERALD_NODE:-} ]]; then herald_as_pods; else herald_as_processes; fi

say "applying examples/ to namespace default"
# examples/secure-broker.yaml reads its static token from this Secret (kept if it exists).
kubectl get secret -n default secure-broker-token >/dev/null 2>&1 ||
  kubectl create secret generic -n default secure-broker-token \
    --from-literal=token="$(openssl rand -hex 32)" >&2
kubectl apply -n default -f examples/ >&2
kubectl wait -n default --for condition=Ready --timeout=60s broker/default >&2
# A Trigger that delivers to the display subscriber: a Service ref in the cluster, a
# loopback URL when the components run as local processes outside the cluster network.
kubectl apply -n default -f - >&2 <<EOT
apiVersion: eventing.herald.dev/v1alpha1
kind: Trigger
metadata:
  name: quickstart
spec:
  broker: default
  filter:
    attributes:
      type: com.example.order.created
  subscriber:
    $SUBSCRIBER
EOT
kubectl wait -n default --for condition=Ready --timeout=60s trigger/quickstart >&2

say "sending an event with herald send to $INGRESS_URL/default/default"
id=quickstart-$(date +%s%N)
"$HERALD" send --url "$INGRESS_URL/default/default" --type com.example.order.created --source quickstart \
  --id "$id" --data '{"order": 1, "item": "book"}' >&2
stored=$(curl -sf "$HERALD_NATS_MONITOR_URL/jsz?streams=true" | python3 -c '
import json, sys
for account in json.load(sys.stdin).get("account_details", []):
    for s in account.get("stream_detail", []):
        if s["name"] == "HERALD_default_default":
            print(s["state"]["messages"])')
say "the Broker's stream HERALD_default_default now holds ${stored:-?} event(s)"
for _ in $(seq 100); do delivered "$id" && break; sleep 0.2; done
if delivered "$id"; then
  say "delivered through Trigger quickstart to $WHERE, which printed:"
  show_delivery "$id" >&2
else
  say "the event was not delivered within 20 s; see kubectl get herald -A and the dispatcher's log"
  exit 1
fi
kubectl get -n default brokers,triggers >&2
[[ -z ${HERALD_NODE:-} ]] || kubectl get pods -A -o wide >&2

cat <<EOM

Herald is running. To use it from this shell:
  export KUBECONFIG=$KUBECONFIG
  export HERALD_NATS_URL=$HERALD_NATS_URL
  kubectl get herald -A
  $HERALD send --url $INGRESS_URL/default/default --type com.example.order.created --data '{"hello":"world"}'
  $HERALD tail default/default --from all
  kubectl logs -f -l app=display            # what the quickstart Trigger delivers (with a node)
  kubectl get pods -A -o wide               # Herald's pods and consumer Deployments on herald-node
Ingress: $INGRESS_URL/<namespace>/<broker>   Logs: $STATE/logs   Stop: e2e/down.sh
EOM
