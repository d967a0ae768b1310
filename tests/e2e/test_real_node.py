"""The real node (harness.node): pods run in real containers (containerd + runc), get an address
on the node's bridge, and are reached by IP, through a Service (kube-proxy) and by cluster DNS
(CoreDNS); a pod reaches the apiserver through the `kubernetes` Service with its ServiceAccount
token; `kubectl logs` goes through the apiserver to kubelet."""

from __future__ import annotations

import ipaddress

import pytest
from kubernetes import client

from harness.cluster import SERVICE_CIDR
from harness.node import NODE_NAME, POD_SUBNET
from tests.e2e.fixtures_node import http_text, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]


# The client pod's check, run with the image's python: the Service by its DNS name, then the
# apiserver through the `kubernetes` Service with the pod's own ServiceAccount token.
CLIENT_SCRIPT = """
import json, ssl, sys, urllib.request
ns = sys.argv[1]
body = urllib.request.urlopen(f"http://web.{ns}.svc.cluster.local/index.html", timeout=10).read()
print("web:", body.decode().strip())
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
token = open(f"{sa}/token").read()
req = urllib.request.Request("https://kubernetes.default.svc/version",
                             headers={"Authorization": f"Bearer {token}"})
print("apiserver:", json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"])
"""


def container(name: str, image: str, command: list[str], **extra: object) -> dict[str, object]:
    return {"name": name, "image": image, "imagePullPolicy": "Never", "command": command,
            **extra}


def test_a_pod_answers_by_ip_through_a_service_and_by_cluster_dns(real_cluster, node_api,
                                                                  node_namespace):
    core = client.CoreV1Api(node_api)
    ns, image = node_namespace, real_cluster.notebook_image
    serve = ("echo hello-from-$(hostname) > /tmp/index.html && cd /tmp && "
             "exec python3 -m http.server 8080")
    core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container(
            "web", image, ["/bin/sh", "-c", serve], ports=[{"containerPort": 8080}],
            readinessProbe={"httpGet": {"path": "/index.html", "port": 8080},
                            "periodSeconds": 1})]}})
    core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})

    def ready() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("web", ns)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        return pod if conditions.get("Ready") == "True" else None

    pod = wait_for("pod web Ready (its readiness probe answered)", ready)
    assert pod.spec.node_name == NODE_NAME
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(POD_SUBNET)
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    # By pod IP, from this host.
    assert http_text(f"http://{pod.status.pod_ip}:8080/index.html") == "hello-from-web\n"
    # Through the Service's cluster IP (kube-proxy's rules), from this host.
    svc = core.read_namespaced_service("web", ns)
    assert ipaddress.ip_address(svc.spec.cluster_ip) in ipaddress.ip_network(SERVICE_CIDR)
    assert wait_for("the Service answering", lambda: http_text(
        f"http://{svc.spec.cluster_ip}/index.html")) == "hello-from-web\n"

    # From another pod: cluster DNS, the Service, and the apiserver with its own token.
    core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [container("client", image,
                                          ["python3", "-c", CLIENT_SCRIPT, ns])]}})
    phase = wait_for("pod client finished", lambda: (
        p if (p := core.read_namespaced_pod("client", ns).status.phase)
        in ("Succeeded", "Failed") else None))
    logs = core.read_namespaced_pod_log("client", ns)  # apiserver -> kubelet -> containerd
    assert phase == "Succeeded", logs
    assert "web: hello-from-web" in logs
    assert "apiserver: v1." in logs
