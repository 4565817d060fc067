#!/usr/bin/env bash
# e2e/controlplane/smoke.sh - quick check of a control plane started by up.sh.
#
# Usage:
#   e2e/controlplane/smoke.sh                 # the plane in $STATE / $HERALD_CP_STATE
#   STATE=/tmp/mine e2e/controlplane/smoke.sh
#
# Reads $STATE/env. Uses kubectl, curl and python3. Creates and deletes the
# namespace 'herald-smoke' and the CRD 'gadgets.smoke.herald.dev'. Prints
# 'N passed, N failed' and exits 1 if anything failed. Takes about 10 s.
set -uo pipefail   # no -e: a failed check must not stop the others
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CP_NAME=smoke.sh
# shellcheck source=lib.sh
source "$HERE/lib.sh"
case ${1:-} in -h | --help) cp_usage "$0"; exit 0 ;; esac
cp_resolve_dirs
[[ -r $STATE/env ]] || cp_die "no $STATE/env: run up.sh first"
# shellcheck source=/dev/null
source "$STATE/env"

NS=herald-smoke
k() { kubectl --request-timeout=10s "$@"; }
npods() { k -n "$NS" get pods -l "app=$1" -o name 2>/dev/null | grep -c .; }
passed=0 failed=0
check() {   # DESCRIPTION CMD...
  if "${@:2}" >/dev/null 2>&1; then echo "ok   - $1"; passed=$((passed + 1)); else echo "FAIL - $1"; failed=$((failed + 1)); fi
}
eventually() {   # DESCRIPTION SECONDS CMD...: retry CMD until it succeeds
  local t0=$SECONDS
  until "${@:3}" >/dev/null 2>&1; do
    ((SECONDS - t0 < $2)) || { echo "FAIL - $1 (not within $2 s)"; failed=$((failed + 1)); return 1; }
    sleep 0.3
  done
  echo "ok   - $1 ($((SECONDS - t0)) s)"; passed=$((passed + 1))
}

# ---- Kubernetes API
check "kubectl get ns" k get ns
check "apiserver /readyz" k get --raw /readyz
check "server is v1.20" sh -c 'kubectl version -o json 2>/dev/null | grep -q "\"gitVersion\": \"v1.20"'
k delete ns "$NS" --timeout=60s >/dev/null 2>&1
k create ns "$NS" >/dev/null

# ---- CRD with schema defaulting
k apply -f - >/dev/null <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.smoke.herald.dev}
spec:
  group: smoke.herald.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, default: 3}
EOF
eventually "CRD Established" 30 sh -c "kubectl get crd gadgets.smoke.herald.dev -o jsonpath='{.status.conditions[?(@.type==\"Established\")].status}' | grep -qx True"
eventually "custom resource created" 30 sh -c "printf 'apiVersion: smoke.herald.dev/v1\nkind: Gadget\nmetadata: {name: g1, namespace: $NS}\nspec: {}\n' | kubectl apply -f -"
check "schema default applied" sh -c "kubectl -n $NS get gadget g1 -o jsonpath='{.spec.size}' | grep -qx 3"

# ---- controllers: Deployment -> ReplicaSet -> Pods (Pending: no kubelet/scheduler)
k -n "$NS" create deployment web --image=registry.invalid/web:1 --replicas=2 >/dev/null
eventually "deployment -> 2 pods" 60 sh -c "[ \"\$(kubectl -n $NS get pods -l app=web -o name | grep -c .)\" -eq 2 ]"
check "pods stay Pending" sh -c "kubectl -n $NS get pods -l app=web -o jsonpath='{.items[*].status.phase}' | grep -qx 'Pending Pending'"
k -n "$NS" delete deployment web >/dev/null
eventually "garbage collector removes the ReplicaSet and pods" 60 sh -c "[ \"\$(kubectl -n $NS get rs,pods -l app=web -o name | grep -c .)\" -eq 0 ]"
k delete ns "$NS" --wait=false >/dev/null
eventually "namespace deleted" 90 sh -c "! kubectl get ns $NS"
k delete crd gadgets.smoke.herald.dev >/dev/null 2>&1

# ---- NATS JetStream
check "nats /healthz?js-enabled-only=true" sh -c "curl -sf '$HERALD_NATS_MONITOR_URL/healthz?js-enabled-only=true' | grep -q ok"
# Raw protocol, no client library: a stream over two subjects and a consumer
# with several filter_subjects (silently ignored before nats-server 2.10).
check "JetStream stream + multi-filter consumer" python3 - "$HERALD_NATS_URL" <<'EOF'
import json, socket, sys
host, port = sys.argv[1].rsplit("/", 1)[-1].split(":")
s = socket.create_connection((host, int(port)), timeout=5)
f = s.makefile("rb")
assert json.loads(f.readline()[5:]).get("jetstream"), "JetStream is off"
s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB _INBOX.smoke 1\r\n')
def request(subject, body):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    s.sendall(b"PUB %s _INBOX.smoke %d\r\n%s\r\n" % (subject.encode(), len(data), data))
    while True:
        line = f.readline()
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith((b"MSG ", b"HMSG ")):
            payload = f.read(int(line.split()[-1]) + 2)[:-2]
            return json.loads(payload) if payload.startswith(b"{") else {}
request("$JS.API.STREAM.DELETE.SMOKE", b"")
r = request("$JS.API.STREAM.CREATE.SMOKE", {"name": "SMOKE", "subjects": ["sa.>", "sb.>", "sc.>"]})
assert "error" not in r, r
for subject in ("sa.1", "sb.1", "sc.1"):
    assert request(subject, b"hi").get("stream") == "SMOKE"
r = request("$JS.API.CONSUMER.CREATE.SMOKE.D", {"stream_name": "SMOKE", "config": {
    "durable_name": "D", "ack_policy": "explicit", "filter_subjects": ["sa.>", "sb.>"]}})
assert r["config"].get("filter_subjects") == ["sa.>", "sb.>"] and r["num_pending"] == 2, r
request("$JS.API.STREAM.DELETE.SMOKE", b"")
EOF

echo "$passed passed, $failed failed"
((failed == 0))
