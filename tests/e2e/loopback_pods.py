"""Helpers for e2e tests with pods on the loopback node (shared by the harness's and the
spawner's tests): build a pod that lands there, wait for the runner to start its process, talk
HTTP to a pod IP."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from kubernetes import client

from harness.cluster import loopback_placement
from harness.podrunner import PID_SCHEME, PodRunner

# A small web server: GET /env answers the process's environment and working directory as JSON,
# anything else is a file from the working directory (the PVC). Binds the IP given as argv[1].
ENV_SERVER = """
import http.server, json, os, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/env":
            return super().do_GET()
        body = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer((sys.argv[1], 8000), Handler).serve_forever()
"""
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes] | None:
    """(status, body), or None when nothing answers."""
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None


def wait_service_account(core: client.CoreV1Api, namespace: str) -> None:
    """Pods are refused until the namespace's default service account exists."""
    wait_for(f"service account {namespace}/default", lambda: any(
        sa.metadata.name == "default"
        for sa in core.list_namespaced_service_account(namespace).items))


def pod_manifest(name: str, container: dict[str, Any], claim: str | None = None,
                 mount_path: str = "/srv/data") -> dict:
    """A one-container pod on the loopback node, with `claim` mounted at `mount_path`."""
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "local", **container}],
                            "terminationGracePeriodSeconds": 5, **loopback_placement()}
    if claim:
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": mount_path}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def env_server(**extra: Any) -> dict[str, Any]:
    """A container running ENV_SERVER on port 8000 of its pod IP."""
    return {"command": ["python", "-c", ENV_SERVER], "args": ["$(POD_IP)"],
            "env": [POD_IP_ENV, *extra.pop("env", [])], **extra}


def make_claim(core: client.CoreV1Api, runner: PodRunner, ns: str, claim: str) -> None:
    """A PVC bound to a PersistentVolume at the runner's directory for it."""
    runner.provide_volume(ns, claim)
    core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}})


def running_pid(core: client.CoreV1Api, ns: str, name: str,
                timeout: float = 60.0) -> tuple[str, int]:
    """(pod IP, pid) once the runner has started the pod's (first) process."""
    def started() -> tuple[str, int] | None:
        pod = core.read_namespaced_pod(name, ns)
        statuses = pod.status.container_statuses or []
        cid = statuses[0].container_id if statuses else None
        if pod.status.pod_ip and cid and cid.startswith(PID_SCHEME):
            return pod.status.pod_ip, int(cid.removeprefix(PID_SCHEME))
        return None
    return wait_for(f"pod {ns}/{name} running a process", started, timeout)


def delete_and_wait_gone(core: client.CoreV1Api, ns: str, name: str) -> None:
    core.delete_namespaced_pod(name, ns)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, ns)
        except client.ApiException as e:
            return e.status == 404
        return False
    wait_for(f"pod {ns}/{name} deleted", gone)
