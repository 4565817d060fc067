#!/usr/bin/env python3
"""Herald as pods for e2e/up.sh: `helm upgrade --install` of charts/herald on a plane
started with NODE=1, with the local image (operator/herald/build-image.sh), the plane's
nats-server as the Service `nats`, and the ingress on a NodePort the host reaches
through the node's veth. Then a `herald display` subscriber (Deployment + Service
`display`) in namespace `default`.

Waits until the chart's 5 pods are Ready and prints one line for up.sh:
    INGRESS_URL=http://<node ip>:<node port>
Exits 1 (with the pods and events of the namespace) when they are not Ready in time.

Usage: install_on_node.py [--namespace herald-system] [--release herald]
Env: KUBECONFIG, HERALD_IMAGE, HERALD_NODE_HOST_IP, HERALD_NATS_URL.
"""

import argparse
import asyncio
import sys
import time

import helm_sdkpy as helm

from on_node import (CHART, apply, chart_values, component_pods_ready, describe_pods,
                     display_service, env, expose_nats, kubectl, wait_for)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="herald-system")
    parser.add_argument("--release", default="herald")
    args = parser.parse_args()
    image, kubeconfig = env("HERALD_IMAGE"), env("KUBECONFIG")
    nats_port = int(env("HERALD_NATS_URL").rsplit(":", 1)[1])
    ns = args.namespace

    if not kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name"):
        kubectl("create", "namespace", ns)
    values = chart_values(image, expose_nats(ns, env("HERALD_NODE_HOST_IP"), nats_port))
    values["ingress"]["service"] = {"type": "NodePort", "port": 80}
    started = time.monotonic()
    cfg = helm.Configuration(namespace=ns, kubeconfig=kubeconfig)
    await helm.Upgrade(cfg).run(args.release, CHART, values=values, install=True, wait=False)
    selector = f"app.kubernetes.io/instance={args.release}"
    if not component_pods_ready(ns, selector, 240):
        print(describe_pods(ns), file=sys.stderr)
        return 1
    print(f"==> helm release {args.release} in {ns}: 5 pods Ready "
          f"{time.monotonic() - started:.1f} s after the upgrade --install", file=sys.stderr)

    apply("default", display_service(image))
    if not wait_for("the display subscriber Ready", 120, lambda: kubectl(
            "get", "deployment", "display", "-n", "default",
            "-o", "jsonpath={.status.readyReplicas}", check=False) == "1"):
        print(describe_pods("default"), file=sys.stderr)
        return 1

    service = kubectl("get", "service", "-n", ns, "-l",
                      f"{selector},app.kubernetes.io/component=ingress", "-o", "name")
    node_port = kubectl("get", service, "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}")
    node_ip = kubectl("get", "nodes", "-o",
                      "jsonpath={.items[0].status.addresses[?(@.type=='InternalIP')].address}")
    print(f"INGRESS_URL=http://{node_ip}:{node_port}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
