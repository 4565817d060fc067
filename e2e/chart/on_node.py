"""What the real-node chart test (test_real_node.py) and the local Herald of e2e/up.sh
(install_on_node.py) share: kubectl, polling, and how the chart is installed on a plane
started with NODE=1, whose nats-server runs beside the control plane, not in a pod.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHART = str(Path(__file__).resolve().parents[2] / "charts" / "herald")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{Path(sys.argv[0]).name}: {name} is not set: run against a control plane started "
                 "with NODE=1 (e2e/controlplane/up.sh) and an image from operator/herald/build-image.sh")
    return value


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> str:
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True, input=stdin)
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def apply(ns: str, manifest: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=manifest)


def wait_for(what: str, timeout: float, check, interval: float = 0.5):
    """Polls check() until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    print(f"  ...   gave up waiting {timeout:.0f} s for {what}", flush=True)
    return None


def pods(ns: str, selector: str) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json"))["items"]


def ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def describe_pods(ns: str) -> str:
    return kubectl("get", "pods", "-n", ns, "-o", "wide", check=False) + "\n" + \
        kubectl("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False)[-3000:]


def expose_nats(ns: str, node_host_ip: str, nats_port: int) -> str:
    """A Service without selector in `ns` whose Endpoints name the node's way out to the
    plane's nats-server, so pods find it by DNS name; returns the URL pods use."""
    apply(ns, f"""
apiVersion: v1
kind: Service
metadata: {{name: nats}}
spec: {{ports: [{{name: client, port: 4222, targetPort: {nats_port}}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: nats}}
subsets: [{{addresses: [{{ip: {node_host_ip}}}], ports: [{{name: client, port: {nats_port}}}]}}]
""")
    return f"nats://nats.{ns}.svc.cluster.local:4222"


def chart_values(image: str, nats_url: str) -> dict:
    """The chart's values on a one-node plane: the local image (never pulled) and one
    replica of each data-plane component."""
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nats": {"url": nats_url},
        "ingress": {"replicas": 1}, "dispatcher": {"replicas": 1}, "sources": {"replicas": 1},
    }


def component_pods_ready(ns: str, selector: str, timeout: float) -> list[dict] | None:
    """The chart's 5 component pods (operator x2, ingress, dispatcher, sources), once
    every one is Ready; None after `timeout` seconds."""
    return wait_for("every component pod Ready", timeout, lambda: (
        lambda ps: len(ps) == 5 and all(ready(p) for p in ps) and ps)(pods(ns, selector)))


def display_service(image: str) -> str:
    """A `herald display` Deployment and its Service `display` (port 80): a subscriber
    that prints every event it gets, read back with `kubectl logs -l app=display`."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: display}}
spec:
  selector: {{matchLabels: {{app: display}}}}
  template:
    metadata: {{labels: {{app: display}}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 65532}}
      containers:
        - name: display
          image: {image}
          imagePullPolicy: Never
          args: [display, --listen, "0.0.0.0:8080"]
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
          securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}}
---
apiVersion: v1
kind: Service
metadata: {{name: display}}
spec:
  selector: {{app: display}}
  ports: [{{port: 80, targetPort: 8080}}]
"""
