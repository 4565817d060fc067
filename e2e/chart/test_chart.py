#!/usr/bin/env python3
"""The Helm chart, tested by real Helm (helm-sdkpy bundles Helm's Go library) against
the e2e control plane: lint, install, the objects and the RBAC they grant (checked
with `kubectl auth can-i --as`, i.e. SubjectAccessReview), upgrade with changed
values, invalid values refused by values.schema.json, uninstall leaving only the CRDs.

Run by e2e/test.sh with KUBECONFIG and HERALD_NATS_URL of the test plane.
"""

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import helm_sdkpy as helm

CHART = str(Path(__file__).resolve().parents[2] / "charts" / "herald")
KUBECONFIG = os.environ["KUBECONFIG"]
NATS_URL = os.environ.get("HERALD_NATS_URL", "nats://127.0.0.1:4222")
failures: list[str] = []


def kubectl(*args: str, check: bool = True) -> str:
    out = subprocess.run(["kubectl", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


# Stand-ins for the Prometheus Operator's CRDs (not installed here): enough for the
# apiserver to store the chart's ServiceMonitor and PodMonitor so the test can read
# back what the chart rendered.
MONITOR_CRDS = "\n---\n".join(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.monitoring.coreos.com}}
spec:
  group: monitoring.coreos.com
  names: {{kind: {kind}, plural: {plural}, singular: {plural[:-1]}, listKind: {kind}List}}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
""" for kind, plural in [("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors")])


def expect(ok: bool, what: str) -> None:
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        failures.append(what)


def can(sa: str, namespace: str, verb: str, resource: str, where: str, subresource: str = "") -> bool:
    out = subprocess.run(
        ["kubectl", "auth", "can-i", verb, resource, "-n", where,
         f"--as=system:serviceaccount:{namespace}:{sa}",
         *([f"--subresource={subresource}"] if subresource else [])],
        capture_output=True, text=True,
    )
    return out.stdout.strip() == "yes"


def can_mint_token(sa: str, namespace: str, account: str, where: str) -> bool:
    out = subprocess.run(
        ["kubectl", "auth", "can-i", "create", f"serviceaccounts/{account}", "--subresource=token",
         "-n", where, f"--as=system:serviceaccount:{namespace}:{sa}"],
        capture_output=True, text=True,
    )
    return out.stdout.strip() == "yes"


def get(kind: str, namespace: str | None, selector: str) -> list[dict]:
    args = ["get", kind, "-l", selector, "-o", "json"]
    args += ["-n", namespace] if namespace else []
    return json.loads(kubectl(*args))["items"]


async def main() -> int:
    suffix = secrets.token_hex(3)
    ns, other = f"herald-chart-{suffix}", f"herald-chart-apps-{suffix}"
    other2 = f"herald-chart-more-{suffix}"
    release = f"hc{suffix}"
    full = f"{release}-herald"
    selector = f"app.kubernetes.io/instance={release}"
    kubectl("create", "namespace", other)
    kubectl("create", "namespace", other2)
    cfg = helm.Configuration(namespace=ns, kubeconfig=KUBECONFIG)
    try:
        print("lint")
        lint = await helm.Lint(cfg).run(CHART)
        problems = [m for m in lint.get("Messages") or [] if m.get("Severity", 0) >= 2]
        expect(not problems, f"helm lint has no warnings or errors: {problems}")

        print("invalid values are refused at install")
        for bad, needle in [
            ({"operator": {"replicas": 0}}, "replicas"),
            ({"nats": {"url": "http://nats:4222"}}, "url"),
            ({"watchNamespaces": ["a", "a"]}, "watchNamespaces"),
            ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
            ({"ingress": {"service": {"type": "Ingress"}}}, "type"),
            ({"ingress": {"readTimeout": "soon"}}, "readTimeout"),
            ({"operator": {"streamLimits": {"maxAge": "soon"}}}, "maxAge"),
            ({"operator": {"sharedNatsNamespaces": "team"}}, "sharedNatsNamespaces"),
            ({"ingress": {"tls": {"reloadInterval": "soon"}}}, "reloadInterval"),
            ({"caBundle": {"configMap": "a", "secret": "b"}}, "caBundle"),
            ({"admission": {"timeoutSeconds": 60}}, "timeoutSeconds"),
            ({"egress": {"allow": ["everything"]}}, "allow"),
            ({"no-such-value": 1}, "no-such-value"),
        ]:
            try:
                await helm.Install(cfg).run(f"bad{suffix}", CHART, values=bad,
                                            create_namespace=True, wait=False)
                expect(False, f"{bad} refused")
            except helm.HelmError as e:
                expect(needle in str(e), f"{bad} refused, naming {needle!r}")

        print("install")
        await helm.Install(cfg).run(release, CHART, values={"nats": {"url": NATS_URL}},
                                    create_namespace=True, wait=False)
        deployments = {d["metadata"]["name"]: d for d in get("deployments", ns, selector)}
        for component, replicas in [("operator", 2), ("ingress", 2), ("dispatcher", 2), ("sources", 2)]:
            d = deployments.get(f"{full}-{component}")
            expect(d is not None and d["spec"]["replicas"] == replicas,
                   f"{component} Deployment with {replicas} replicas")
            if d is None:
                continue
            pod = d["spec"]["template"]["spec"]
            container = pod["containers"][0]
            sc = container.get("securityContext", {})
            expect(pod["securityContext"].get("runAsNonRoot") is True
                   and sc.get("readOnlyRootFilesystem") is True
                   and sc.get("allowPrivilegeEscalation") is False,
                   f"{component}: non-root, read-only root filesystem, no privilege escalation")
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            expect(env.get("HERALD_NATS_URL") == NATS_URL, f"{component}: NATS URL from values")
            expect(pod["serviceAccountName"] == f"{full}-{component}",
                   f"{component}: its own ServiceAccount")
        ingress_args = deployments[f"{full}-ingress"]["spec"]["template"]["spec"]["containers"][0]["args"]
        herald_bin = os.environ.get("HERALD_BIN", os.path.join(os.path.dirname(CHART), "..", "target", "debug", "herald"))
        parsed = subprocess.run([herald_bin, *ingress_args, "--help"], capture_output=True, text=True)
        expect("--read-timeout=15s" in ingress_args and "--max-concurrent-per-broker=1024" in ingress_args
               and "--max-in-flight-bytes=67108864" in ingress_args
               and parsed.returncode == 0,
               f"ingress limits passed as flags the binary accepts: {ingress_args} {parsed.stderr.strip()}")
        services = {s["metadata"]["name"] for s in get("services", ns, selector)}
        expect(f"{full}-ingress" in services and f"{full}-sources" in services, "ingress and sources Services")
        expect(len(get("poddisruptionbudgets", ns, selector)) == 4, "a PodDisruptionBudget per component")

        print("admission webhook: served by the operator, its configuration and rights")
        vwc = json.loads(kubectl("get", "validatingwebhookconfiguration", f"{full}-admission", "-o", "json"))
        hook = vwc["webhooks"][0]
        rule = hook["rules"][0]
        expect(hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
               and hook["clientConfig"].get("service") == {"name": f"{full}-operator", "namespace": ns,
                                                           "path": "/validate", "port": 443}
               and rule["apiGroups"] == ["eventing.herald.dev"]
               and sorted(rule["resources"]) == ["brokers", "eventsources", "triggers"]
               and sorted(rule["operations"]) == ["CREATE", "UPDATE"],
               f"ValidatingWebhookConfiguration: Brokers, Triggers and EventSources, CREATE and UPDATE, fail closed: {hook}")
        expect("caBundle" not in hook["clientConfig"], "the chart leaves the caBundle to the operator")
        admission_port = json.loads(kubectl("get", "service", f"{full}-operator", "-n", ns, "-o", "json"))["spec"]["ports"][0]
        expect(admission_port["port"] == 443 and admission_port["targetPort"] == "admission",
               f"operator Service: the webhook on 443: {admission_port}")
        op_container = deployments[f"{full}-operator"]["spec"]["template"]["spec"]["containers"][0]
        op_args = op_container["args"]
        parsed = subprocess.run([herald_bin, *op_args, "--help"], capture_output=True, text=True)
        expect("--admission-addr=0.0.0.0:8443" in op_args
               and f"--admission-webhook-config={full}-admission" in op_args
               and f"--admission-service={full}-operator" in op_args
               and {"name": "admission", "containerPort": 8443} in [
                   {k: p[k] for k in ("name", "containerPort")} for p in op_container.get("ports", [])]
               and parsed.returncode == 0,
               f"operator serves the webhook, with flags the binary accepts: {op_args} {parsed.stderr.strip()}")

        print("RBAC: what each ServiceAccount may and may not do")
        op, ing, disp, src = (f"{full}-{c}" for c in ("operator", "ingress", "dispatcher", "sources"))
        for sa, verb, resource, where, allowed in [
            (op, "watch", "brokers.eventing.herald.dev", other, True),
            (op, "patch", "triggers.eventing.herald.dev/status", other, True),
            (op, "create", "deployments.apps", other, True),
            # The autoscaler reads the scale and applies spec.replicas on the Deployment.
            (op, "get", "deployments.apps/scale", other, True),
            (op, "patch", "deployments.apps/scale", other, False),
            (op, "create", "events.events.k8s.io", other, True),
            (op, "create", "subjectaccessreviews.authorization.k8s.io", other, True),
            (op, "update", "leases.coordination.k8s.io", ns, True),
            (op, "update", "leases.coordination.k8s.io", other, False),
            (op, "get", "secrets", other, True),
            (op, "list", "secrets", other, False),
            (op, "delete", "deployments.apps", other, False),
            (op, "create", "pods", other, False),
            (op, "patch", f"validatingwebhookconfigurations.admissionregistration.k8s.io/{full}-admission", other, True),
            (op, "patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses", other, False),
            (op, "update", f"secrets/{full}-operator-admission-tls", ns, True),
            (op, "update", "secrets/someone-elses", ns, False),
            (op, "create", "secrets", ns, True),
            (op, "update", f"secrets/{full}-operator-admission-tls", other, False),
            (ing, "list", "brokers.eventing.herald.dev", other, True),
            (ing, "patch", "brokers.eventing.herald.dev", other, False),
            (ing, "list", "triggers.eventing.herald.dev", other, False),
            (ing, "create", "tokenreviews.authentication.k8s.io", other, True),
            (ing, "get", "secrets", other, False),
            (disp, "create", "tokenreviews.authentication.k8s.io", other, True),
            (disp, "watch", "triggers.eventing.herald.dev", other, True),
            (disp, "create", "deployments.apps", other, False),
            (disp, "get", "secrets", other, False),
            (disp, "create", "eventtypes.eventing.herald.dev", other, True),
            (disp, "delete", "eventtypes.eventing.herald.dev", other, False),
            (disp, "patch", "brokers.eventing.herald.dev/status", other, False),
            (disp, "create", "jobs.batch", other, True),
            (disp, "delete", "jobs.batch", other, True),
            (disp, "watch", "jobs.batch", other, True),
            (disp, "create", "secrets", other, True),
            (disp, "delete", "secrets", other, False),
            (disp, "create", "pods", other, False),
            (src, "watch", "eventsources.eventing.herald.dev", other, True),
            (src, "get", "secrets", other, True),
            (src, "list", "secrets", other, False),
            (src, "patch", "eventsources.eventing.herald.dev", other, False),
        ]:
            # "kind/status" and "kind/scale" name a subresource (kubectl would read them
            # as an object's name); any other "kind/name" is one object.
            kind, _, sub = resource.partition("/")
            if sub not in ("status", "scale"):
                kind, sub = resource, ""
            expect(can(sa, ns, verb, kind, where, subresource=sub) == allowed,
                   f"{sa.removeprefix(full + '-')} {'can' if allowed else 'cannot'} {verb} {resource} in {where}")

        expect(can(disp, ns, "update", "eventtypes.eventing.herald.dev", other, subresource="status")
               and not can(disp, ns, "update", "eventtypes.eventing.herald.dev", other)
               and not can(disp, ns, "update", "brokers.eventing.herald.dev", other, subresource="status"),
               "dispatcher writes EventTypes' status (the catalog), not their spec, nor Brokers' status")
        expect(can_mint_token(disp, ns, disp, ns) and not can_mint_token(disp, ns, op, ns)
               and not can_mint_token(disp, ns, disp, other) and not can_mint_token(op, ns, disp, ns),
               "dispatcher mints tokens for its own ServiceAccount only (subscriber audience)")
        expect(can_mint_token(src, ns, src, ns) and not can_mint_token(src, ns, disp, ns),
               "sources adapter mints tokens for its own ServiceAccount only (Brokers with auth)")
        s_args = deployments[f"{full}-sources"]["spec"]["template"]["spec"]["containers"][0]["args"]
        expect(f"--token-service-account={ns}/{src}" in s_args, f"sources told its ServiceAccount: {s_args}")
        d_args = deployments[f"{full}-dispatcher"]["spec"]["template"]["spec"]["containers"][0]["args"]
        expect(f"--token-service-account={ns}/{disp}" in d_args, f"dispatcher told its ServiceAccount: {d_args}")

        print("upgrade: more dispatchers, two watched namespaces, monitors")
        subprocess.run(["kubectl", "apply", "-f", "-"], input=MONITOR_CRDS, text=True, check=True,
                       capture_output=True)
        kubectl("wait", "--for", "condition=established", "--timeout=60s",
                "crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com")
        await helm.Upgrade(cfg).run(release, CHART, wait=False, values={
            "nats": {"url": NATS_URL, "userSecret": {"name": "nats-user"}, "nkeySecret": {"name": "nats-nkey"},
                     "tls": {"caSecret": {"name": "nats-ca"}, "clientCertSecret": "nats-client", "required": True}},
            "caBundle": {"configMap": "herald-ca"},
            "egress": {"allow": ["10.1.0.0/16"], "deny": ["10.0.0.0/8", "fd00::/8"]},
            "ingress": {"tls": {"secret": "ingress-tls"}, "service": {"port": 443}},
            "dispatcher": {"replicas": 3}, "watchNamespaces": [other, other2], "admission": {"enabled": False},
            "operator": {"sharedNatsNamespaces": [other], "streamLimits": {"maxBytes": "2Gi", "maxAge": "168h"}},
            "grafanaDashboard": {"enabled": True}, "serviceMonitor": {"enabled": True}})
        d = kubectl("get", "deployment", f"{full}-dispatcher", "-n", ns, "-o", "json")
        spec = json.loads(d)["spec"]
        env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
        expect(spec["replicas"] == 3, "dispatcher scaled to 3 by the upgrade")
        expect("--replicas=3" in spec["template"]["spec"]["containers"][0]["args"],
               "each dispatcher enforces a third of every Trigger's rate limit (--replicas=3)")
        env_from = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in spec["template"]["spec"]["containers"][0]["env"]}
        expect(env_from.get("HERALD_NATS_USER") == {"name": "nats-user", "key": "user"}
               and env_from.get("HERALD_NATS_PASSWORD") == {"name": "nats-user", "key": "password"}
               and env_from.get("HERALD_NATS_NKEY") == {"name": "nats-nkey", "key": "nkey"},
               "NATS user/password and NKey seed come from their Secrets")
        mounts = {m["mountPath"] for m in spec["template"]["spec"]["containers"][0]["volumeMounts"]}
        expect(env.get("HERALD_NATS_TLS_CA") == "/etc/herald/nats-ca/ca.crt"
               and env.get("HERALD_NATS_TLS_CERT") == "/etc/herald/nats-client/tls.crt"
               and env.get("HERALD_NATS_TLS_REQUIRED") == "true"
               and {"/etc/herald/nats-ca", "/etc/herald/nats-client"} <= mounts,
               "NATS TLS: CA and client certificate mounted from Secrets, TLS required")
        op_args = json.loads(kubectl("get", "deployment", f"{full}-operator", "-n", ns, "-o", "json"))[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        expect({f"--shared-nats-namespaces={other}", "--max-stream-bytes=2Gi", "--max-stream-age=168h"} <= set(op_args),
               f"operator: shared-NATS namespaces and stream ceilings from values: {op_args}")
        print("https: the ingress serves the Secret's certificate, the others trust the CA bundle")
        containers = {c: json.loads(kubectl("get", "deployment", f"{full}-{c}", "-n", ns, "-o", "json"))
                      ["spec"]["template"]["spec"] for c in ("ingress", "dispatcher", "sources", "operator")}
        for c in ("dispatcher", "sources"):
            pod = containers[c]
            args = pod["containers"][0]["args"]
            mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            expect("--ca-bundle=/etc/herald/ca-bundle/ca.crt" in args
                   and mounts.get("ca-bundle") == "/etc/herald/ca-bundle"
                   and volumes.get("ca-bundle", {}).get("configMap", {}).get("name") == "herald-ca"
                   and "nats-ca" in volumes,
                   f"{c}: --ca-bundle from the ConfigMap, beside the NATS mounts: {args} {mounts}")
            egress = ["--egress-allow=10.1.0.0/16", "--egress-deny=10.0.0.0/8", "--egress-deny=fd00::/8"]
            parsed = subprocess.run([herald_bin, *args, "--help"], capture_output=True, text=True)
            expect(all(a in args for a in egress) and parsed.returncode == 0,
                   f"{c}: the egress policy's values as flags it accepts: {args} {parsed.stderr.strip()}")
        ing_pod = containers["ingress"]
        ing_args = ing_pod["containers"][0]["args"]
        ing_mounts = {m["name"]: m for m in ing_pod["containers"][0]["volumeMounts"]}
        ing_volumes = {v["name"]: v for v in ing_pod["volumes"]}
        parsed = subprocess.run([herald_bin, *ing_args, "--help"], capture_output=True, text=True)
        expect("--tls-cert=/etc/herald/ingress-tls/tls.crt" in ing_args
               and "--tls-key=/etc/herald/ingress-tls/tls.key" in ing_args
               and "--tls-reload-interval=10s" in ing_args
               and "subPath" not in ing_mounts.get("ingress-tls", {"subPath": "missing"})
               and ing_volumes.get("ingress-tls", {}).get("secret", {}).get("secretName") == "ingress-tls"
               and parsed.returncode == 0,
               f"ingress: https from the whole Secret mounted (updated in place): {ing_args} {parsed.stderr.strip()}")
        port = json.loads(kubectl("get", "service", f"{full}-ingress", "-n", ns, "-o", "json"))["spec"]["ports"][0]
        expect(port["name"] == "https" and port["port"] == 443 and port["targetPort"] == "https",
               f"ingress Service: https on 443: {port}")
        op_args = containers["operator"]["containers"][0]["args"]
        expect(f"--ingress-url=https://{full}-ingress.{ns}.svc.cluster.local" in op_args,
               f"Broker addresses are https: {op_args}")
        expect(not [a for a in op_args if a.startswith("--admission")]
               and not get("validatingwebhookconfigurations", None, selector)
               and not can(op, ns, "create", "secrets", ns),
               f"admission.enabled=false: no webhook, no flags, no rights for it: {op_args}")

        dashboard = json.loads(kubectl("get", "configmap", f"{full}-dashboard", "-n", ns, "-o", "json"))
        panels = json.loads(dashboard["data"]["herald.json"])["panels"]
        expect(dashboard["metadata"]["labels"].get("grafana_dashboard") == "1" and len(panels) > 10,
               f"Grafana dashboard ConfigMap for the sidecar ({len(panels)} panels)")
        expect(env.get("HERALD_WATCH_NAMESPACE") == f"{other},{other2}", "components watch only those namespaces")
        monitors = get("servicemonitors", ns, selector)
        pod_monitors = get("podmonitors", ns, selector)
        expect(len(monitors) == 1 and monitors[0]["spec"]["endpoints"][0]["port"] == "metrics",
               "a ServiceMonitor for the components' metrics port")
        pm = pod_monitors[0]["spec"] if pod_monitors else {}
        expect(pm.get("podMetricsEndpoints", [{}])[0].get("port") == "herald-metrics"
               and pm.get("namespaceSelector") == {"matchNames": [other, other2]}
               and {"key": "eventing.herald.dev/trigger", "operator": "Exists"} in pm.get("selector", {}).get("matchExpressions", []),
               f"a PodMonitor for consumer sidecars in the watched namespaces: {pm}")
        cluster_roles = sorted(r["metadata"]["name"] for r in get("clusterroles", None, selector))
        expect(cluster_roles == [f"{full}-dispatcher-reviews", f"{full}-ingress-reviews", f"{full}-operator-reviews"],
               f"namespaces watched: ClusterRoles only for the cluster-scoped reviews ({cluster_roles})")
        expect(can(op, ns, "create", "subjectaccessreviews.authorization.k8s.io", other)
               and can(ing, ns, "create", "tokenreviews.authentication.k8s.io", other)
               and can(disp, ns, "create", "tokenreviews.authentication.k8s.io", other),
               "... which still work: operator SubjectAccessReview, ingress and dispatcher TokenReview")
        expect(can(op, ns, "create", "deployments.apps", other) and can(op, ns, "create", "deployments.apps", other2)
               and can(disp, ns, "watch", "triggers.eventing.herald.dev", other2),
               "operator may create Deployments in both, the dispatcher watch Triggers there")
        expect(not can(op, ns, "create", "deployments.apps", "default"), "... and nowhere else")

        print("uninstall")
        await helm.Uninstall(cfg).run(release, wait=False)
        left = [f"{kind}: {[o['metadata']['name'] for o in items]}"
                for kind, namespace in [("deployments,services,serviceaccounts,poddisruptionbudgets,roles,rolebindings,configmaps,servicemonitors,podmonitors", ns),
                                        ("roles,rolebindings", other),
                                        ("roles,rolebindings", other2),
                                        ("clusterroles,clusterrolebindings,validatingwebhookconfigurations", None)]
                if (items := get(kind, namespace, selector))]
        expect(not left, f"nothing of the release is left: {left}")
        crds = kubectl("get", "crd", "-o", "name")
        expect(all(f"{k}.eventing.herald.dev" in crds for k in ("brokers", "triggers", "eventsources", "eventtypes")),
               "the CRDs stay")
    finally:
        for r in (release,):
            try:
                await helm.Uninstall(cfg).run(r, wait=False)
            except helm.HelmError:
                pass
        kubectl("delete", "namespace", ns, other, other2, "--wait=false", check=False)
    if failures:
        print(f"\n{len(failures)} chart check(s) failed:", *failures, sep="\n  ")
        return 1
    print("\nchart: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
