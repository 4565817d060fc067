#!/usr/bin/env python3
"""Herald as pods: the chart installed by real Helm (helm-sdkpy) on the test cluster's
real node (e2e/controlplane/up.sh with NODE=1), with the image operator/herald/build-image.sh
built and imported into the node's containerd.

Checks, in order: every component pod (operator x2, ingress, dispatcher, sources)
Running and Ready through the chart's probes, with its security contexts and its
in-cluster ServiceAccount; one operator holds the Lease. Then from inside the cluster:
a Broker and a Trigger to a `herald display` pod addressed by Service ref, an event
sent by a pod to the ingress Service (cluster DNS + kube-proxy), delivered (read with
`kubectl logs`, i.e. apiserver -> kubelet). A consumer Deployment scaled from zero to
a real pod by one event (the time from the POST to the delivery is printed) and back
to zero; a Job per event (a Trigger with spec.job) run as real pods that read
the event from the Secret Herald mounts; 200 events sent while the dispatcher pod is force-deleted, every accepted one
delivered; a cron EventSource delivering to a Broker with `spec.auth` (the sources
pod's ServiceAccount token) while an event without a token is refused; `helm upgrade`; `helm uninstall` leaving no pods.

Run by e2e/test.sh with the env of a NODE=1 plane and HERALD_IMAGE; fails (never
skips) when there is no node.
"""

import asyncio
import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import helm_sdkpy as helm

from on_node import (CHART, apply, chart_values, component_pods_ready, describe_pods, env,
                     display_service, expose_nats, kubectl, pods, ready, wait_for)

KUBECONFIG = env("KUBECONFIG")
NODE = env("HERALD_NODE")
NODE_HOST_IP = env("HERALD_NODE_HOST_IP")
IMAGE = env("HERALD_IMAGE")
NATS_PORT = int(env("HERALD_NATS_URL").rsplit(":", 1)[1])
failures: list[str] = []


def expect(ok: bool, what: str) -> None:
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def display_app() -> str:
    return display_service(IMAGE) + f"""---
apiVersion: eventing.herald.dev/v1alpha1
kind: Broker
metadata: {{name: default}}
spec: {{}}
---
apiVersion: eventing.herald.dev/v1alpha1
kind: Trigger
metadata: {{name: to-display}}
spec:
  broker: default
  filter: {{attributes: {{type: com.example.node}}}}
  subscriber:
    ref: {{apiVersion: v1, kind: Service, name: display}}
"""


def consumer_trigger() -> str:
    return f"""
apiVersion: eventing.herald.dev/v1alpha1
kind: Trigger
metadata: {{name: worker}}
spec:
  broker: default
  filter: {{attributes: {{type: com.example.work}}}}
  consumer:
    mode: http
    port: 8080
    template:
      spec:
        containers:
          - name: worker
            image: {IMAGE}
            imagePullPolicy: Never
            command: [herald, display]
    scaling:
      minReplicas: 0
      maxReplicas: 2
      targetBacklogPerReplica: 20
      pollInterval: 1s
      cooldownPeriod: 5s
      scaleDown: {{stabilizationWindow: 3s}}
"""


def job_trigger() -> str:
    """A Job per event, whose container reads the event where Herald mounts it (a Secret
    volume) and a content pattern from a ConfigMap volume: `herald filter test` exits 0
    (Job Complete) when the event's data is a paid order, 1 (Job Failed) otherwise."""
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: paid-orders}}
data: {{pattern.json: '{{"data": {{"state": ["paid"]}}}}'}}
---
apiVersion: eventing.herald.dev/v1alpha1
kind: Trigger
metadata: {{name: per-event}}
spec:
  broker: default
  filter: {{attributes: {{type: com.example.job}}}}
  delivery: {{retry: 0}}
  job:
    maxRunning: 2
    template:
      spec:
        containers:
          - name: check
            image: {IMAGE}
            imagePullPolicy: Never
            command: [herald, filter, test, --filter, /etc/paid/pattern.json,
                      --event, /etc/herald/event/event.json]
            volumeMounts: [{{name: paid, mountPath: /etc/paid, readOnly: true}}]
        volumes: [{{name: paid, configMap: {{name: paid-orders}}}}]
"""


def send_from_a_pod(ns: str, url: str, event_id: str, event_type: str) -> bool:
    """`herald send` in a pod of its own: the ingress Service by DNS name, through kube-proxy."""
    name = f"send-{secrets.token_hex(3)}"
    kubectl("run", name, "-n", ns, f"--image={IMAGE}", "--image-pull-policy=Never",
            "--restart=Never", "--", "send", "--url", url, "--type", event_type,
            "--source", "real-node-test", "--id", event_id, "--data", '{"n": 1}')
    phase = wait_for(f"pod {name} to finish", 60, lambda: kubectl(
        "get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False
    ) in ("Succeeded", "Failed") and kubectl(
        "get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}", check=False))
    if phase != "Succeeded":
        print(kubectl("logs", "-n", ns, name, check=False))
    return phase == "Succeeded"


def post_event(url: str, event_id: str, event_type: str, data: bytes = b'{"n": 1}') -> int:
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "content-type": "application/json", "ce-specversion": "1.0", "ce-id": event_id,
        "ce-source": "real-node-test", "ce-type": event_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def load_while_deleting(ns: str, url: str, victim: str, count: int, suffix: str) -> list[str]:
    """POSTs `count` events to `url`, force-deleting pod `victim` a second in; the ids accepted."""
    accepted: list[str] = []

    def load() -> None:
        for i in range(count):
            event_id = f"load-{suffix}-{i}"
            try:
                if post_event(url, event_id, "com.example.node") == 202:
                    accepted.append(event_id)
            except OSError:
                pass
            time.sleep(0.02)

    sender = threading.Thread(target=load)
    sender.start()
    time.sleep(1)
    kubectl("delete", "pod", victim, "-n", ns, "--force", "--grace-period=0")
    sender.join()
    return accepted


def log_time(ns: str, selector: str, needle: str, container: str | None = None) -> float | None:
    """When (epoch seconds, from the CRI log timestamps) a pod of `selector` logged needle."""
    which = ["-c", container] if container else ["--all-containers"]
    out = kubectl("logs", "-n", ns, "-l", selector, *which, "--timestamps", "--tail=-1", check=False)
    for line in out.splitlines():
        if needle in line:
            stamp = re.match(r"(\S+)\.(\d+)Z", line)
            if stamp:
                base = datetime.fromisoformat(stamp.group(1) + "+00:00").timestamp()
                return base + float("0." + stamp.group(2))
    return None


async def main() -> int:
    suffix = secrets.token_hex(3)
    ns, release = f"herald-node-{suffix}", f"hn{suffix}"
    full = f"{release}-herald"
    selector = f"app.kubernetes.io/instance={release}"
    kubectl("create", "namespace", ns)
    cfg = helm.Configuration(namespace=ns, kubeconfig=KUBECONFIG)
    values = chart_values(IMAGE, expose_nats(ns, NODE_HOST_IP, NATS_PORT))
    installed = False
    try:
        print(f"helm install {release} (image {IMAGE}) on node {NODE}", flush=True)
        started = time.monotonic()
        await helm.Install(cfg).run(release, CHART, values=values, wait=False)
        installed = True
        component_pods = component_pods_ready(ns, selector, 240)
        took = time.monotonic() - started
        expect(bool(component_pods), f"5 component pods Running and Ready ({took:.1f} s from install)")
        if not component_pods:
            print(describe_pods(ns))
            return 1
        print(f"FIGURE pods_ready_after_install_seconds {took:.1f}", flush=True)
        components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in component_pods)
        expect(components == ["dispatcher", "ingress", "operator", "operator", "sources"],
               f"operator x2, ingress, dispatcher, sources: {components}")
        expect(all(p["spec"]["nodeName"] == NODE for p in component_pods), f"all on node {NODE}")
        expect(all(p["spec"]["securityContext"].get("runAsUser") == 65532 for p in component_pods),
               "pods run as uid 65532 (the chart's security context)")
        token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
        expect(all(any(m["mountPath"] == token_path for c in p["spec"]["containers"]
                       for m in c.get("volumeMounts", [])) for p in component_pods),
               "every component pod has its ServiceAccount token mounted (in-cluster config)")
        holder = wait_for("the operator Lease", 30, lambda: kubectl(
            "get", "lease", f"{full}-operator", "-n", ns, "-o", "jsonpath={.spec.holderIdentity}",
            check=False))
        operators = [p["metadata"]["name"] for p in component_pods
                     if p["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
        expect(bool(holder) and any(o in holder for o in operators),
               f"one operator pod holds the Lease ({holder})")

        print("Broker + Trigger to a display pod by Service ref; an event from a pod", flush=True)
        apply(ns, display_app())
        for kind, condition in [("broker/default", "Ready"), ("trigger/to-display", "Ready"),
                                ("deployment/display", "Available")]:
            waited = subprocess.run(
                ["kubectl", "wait", "-n", ns, f"--for=condition={condition}", "--timeout=90s", kind],
                capture_output=True, text=True)
            expect(waited.returncode == 0, f"{kind} {condition} {waited.stderr.strip()}")
        ingress = f"http://{full}-ingress.{ns}.svc.cluster.local/{ns}/default"
        event_id = f"node-{suffix}"
        expect(send_from_a_pod(ns, ingress, event_id, "com.example.node"),
               f"herald send in a pod to {ingress} accepted")
        delivered = wait_for("the delivery in the display pod's log", 30,
                             lambda: log_time(ns, "app=display", event_id))
        expect(delivered is not None, "the event reached the display pod (kubectl logs)")
        if delivered is None:
            print(describe_pods(ns))

        print("the dispatcher pod force-deleted under load: nothing lost", flush=True)
        ingress_pod = next(p for p in component_pods
                           if p["metadata"]["labels"]["app.kubernetes.io/component"] == "ingress")
        ingress_ip = kubectl("get", "pod", ingress_pod["metadata"]["name"], "-n", ns,
                             "-o", "jsonpath={.status.podIP}")
        dispatcher = next(p["metadata"]["name"] for p in component_pods
                          if p["metadata"]["labels"]["app.kubernetes.io/component"] == "dispatcher")
        accepted = load_while_deleting(ns, f"http://{ingress_ip}:8080/{ns}/default", dispatcher,
                                       200, suffix)
        expect(len(accepted) == 200, f"{len(accepted)} of 200 events accepted during the deletion")
        missing: list[str] = []

        def all_delivered() -> bool:
            out = kubectl("logs", "-n", ns, "-l", "app=display", "--tail=-1", check=False)
            missing[:] = [e for e in accepted if f"(id {e})" not in out]
            return not missing
        delivered_all = wait_for("every accepted event in the display pod's log", 150, all_delivered, 2)
        expect(bool(delivered_all), f"every accepted event delivered after the dispatcher pod was "
                                    f"force-deleted ({len(missing)} missing)")

        print("a cron EventSource delivering to a Broker with spec.auth (ServiceAccount tokens)", flush=True)
        apply(ns, f"""
apiVersion: eventing.herald.dev/v1alpha1
kind: Broker
metadata: {{name: secure}}
spec: {{auth: {{serviceAccounts: {{}}}}}}
---
apiVersion: eventing.herald.dev/v1alpha1
kind: Trigger
metadata: {{name: secure-to-display}}
spec:
  broker: secure
  subscriber: {{ref: {{apiVersion: v1, kind: Service, name: display}}}}
---
apiVersion: eventing.herald.dev/v1alpha1
kind: EventSource
metadata: {{name: heartbeat}}
spec:
  sink: {{ref: {{kind: Broker, name: secure}}}}
  cron: {{schedule: "*/2 * * * * *", data: '{{"beat": "cron-{suffix}"}}'}}
""")
        beat = wait_for("a cron event in the display pod's log", 60, lambda: f"cron-{suffix}" in kubectl(
            "logs", "-n", ns, "-l", "app=display", "--tail=-1", check=False))
        expect(bool(beat), "the cron source's events reach the display pod through the Broker with auth")
        if not beat:
            print(kubectl("get", "brokers,eventsources,triggers", "-n", ns, "-o", "wide", check=False))
        unauthenticated = 0
        try:
            unauthenticated = post_event(f"http://{ingress_ip}:8080/{ns}/secure", f"anon-{suffix}",
                                         "com.example.node")
        except urllib.error.HTTPError as e:
            unauthenticated = e.code
        expect(unauthenticated == 401, f"an event without a token is refused: {unauthenticated}")
        kubectl("delete", "eventsource", "heartbeat", "-n", ns, check=False)

        print("a consumer Deployment scaled from zero by one event, and back", flush=True)
        apply(ns, consumer_trigger())
        deployment = wait_for("the consumer Deployment at zero", 60, lambda: kubectl(
            "get", "deployments", "-n", ns, "-l", "eventing.herald.dev/trigger=worker",
            "-o", "jsonpath={.items[0].metadata.name}/{.items[0].spec.replicas}", check=False
        ).endswith("/0") and kubectl(
            "get", "deployments", "-n", ns, "-l", "eventing.herald.dev/trigger=worker",
            "-o", "jsonpath={.items[0].metadata.name}", check=False))
        expect(bool(deployment), f"consumer Deployment {deployment} at 0 replicas")
        work_id = f"work-{suffix}"
        sent_at = time.time()
        status = post_event(f"http://{ingress_ip}:8080/{ns}/default", work_id, "com.example.work")
        expect(status == 202, f"POST to the ingress pod {ingress_ip}: {status}")
        got = wait_for("the consumer pod's delivery", 90,
                       lambda: log_time(ns, "eventing.herald.dev/trigger=worker", work_id, "worker"))
        expect(got is not None, "the event reached a consumer pod started from zero")
        if got is not None:
            print(f"FIGURE scale_from_zero_first_delivery_seconds {got - sent_at:.2f}", flush=True)
        else:
            print(describe_pods(ns))
        back = wait_for("the consumer Deployment back at zero", 90, lambda: kubectl(
            "get", "deployment", deployment, "-n", ns, "-o", "jsonpath={.spec.replicas}",
            check=False) == "0")
        expect(bool(back), "the consumer Deployment scaled back to zero")

        print("a Job per event: real pods read the event from its mounted Secret", flush=True)
        apply(ns, job_trigger())
        waited = subprocess.run(["kubectl", "wait", "-n", ns, "--for=condition=Ready", "--timeout=60s",
                                 "trigger/per-event"], capture_output=True, text=True)
        expect(waited.returncode == 0, f"trigger/per-event Ready {waited.stderr.strip()}")
        for event_id, state in [(f"paid-{suffix}", "paid"), (f"open-{suffix}", "open")]:
            status = post_event(f"http://{ingress_ip}:8080/{ns}/default", event_id, "com.example.job",
                                json.dumps({"state": state}).encode())
            expect(status == 202, f"event {event_id} ({state}) accepted: {status}")

        def finished_jobs() -> dict[str, str] | None:
            jobs = json.loads(kubectl("get", "jobs", "-n", ns, "-l",
                                      "eventing.herald.dev/job-trigger=per-event", "-o", "json"))["items"]
            outcome = {j["metadata"]["name"]: next(
                (c["type"] for c in j.get("status", {}).get("conditions") or []
                 if c["type"] in ("Complete", "Failed") and c["status"] == "True"), "")
                for j in jobs}
            return outcome if len(outcome) == 2 and all(outcome.values()) else None
        outcome = wait_for("both event Jobs finished", 120, finished_jobs, 1)
        expect(outcome is not None and sorted(outcome.values()) == ["Complete", "Failed"],
               f"one Job per event: the paid order's Complete, the open one's Failed ({outcome})")
        printed = kubectl("logs", "-n", ns, "-l", "eventing.herald.dev/job-trigger=per-event",
                          "--tail=-1", "--prefix", check=False)
        expect(sorted(line.split("] ", 1)[-1] for line in printed.splitlines()) == ["match", "no match"],
               f"the Job pods read their events from the mounted Secret: {printed!r}")
        if outcome is None:
            print(describe_pods(ns))

        print("helm upgrade, helm uninstall", flush=True)
        values["dispatcher"]["replicas"] = 2
        await helm.Upgrade(cfg).run(release, CHART, values=values)
        two = wait_for("two dispatcher pods Ready", 120, lambda: (lambda ps: len(ps) == 2 and all(
            ready(p) for p in ps))(pods(ns, f"{selector},app.kubernetes.io/component=dispatcher")))
        expect(bool(two), "helm upgrade: dispatcher.replicas=2 gives two Ready pods")
        await helm.Uninstall(cfg).run(release)
        installed = False
        gone = wait_for("the chart's pods gone", 120, lambda: not pods(ns, selector))
        expect(bool(gone), "helm uninstall: no component pod left")
    finally:
        # Cluster-scoped objects (the webhook configuration) outlive the namespace.
        if installed:
            try:
                await helm.Uninstall(cfg).run(release)
            except helm.HelmError as e:
                print(f"  ...   helm uninstall after a failure: {e}")
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
    print(f"{len(failures)} failed" if failures else "all real-node checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
