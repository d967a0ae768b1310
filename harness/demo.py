"""`make demo`: the whole product on a throwaway local cluster, end to end.

Starts the harness cluster (real kube-apiserver, etcd, controller-manager, scheduler, kwok nodes),
installs the CRDs and the seed template, runs `jupyternetes operator` against it with the
harness-built Pulumi engine, creates the seed instance and shows it reach Completed with its PVC
and pod. Everything it started is stopped at the end (`--keep` leaves the cluster and operator up
until Ctrl-C, for poking at it with kubectl).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from harness import paths
from harness.cluster import DevCluster
from harness.crds import apply_crds
from harness.examples import load_example, shared_template, strip_server_fields
from harness.operator_process import OperatorProcess, poll
from harness.pulumi_env import backend_url, pulumi_env
from jupyternetes.crd.definitions import (
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
    load_crd_documents,
)
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import object_name

REPO = Path(__file__).resolve().parents[1]


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    result = poll(check, timeout, 0.5)
    if result:
        return result
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    with contextlib.suppress(client.ApiException):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def _volume_for(core: client.CoreV1Api, ns: str, claim: str) -> None:
    """A PersistentVolume pre-bound to `claim`: the harness has no volume provisioner (a real
    cluster's StorageClass does this), and the scheduler holds a pod until its claim is bound."""
    core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"demo-{claim}"[:63]},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": f"/tmp/jupyternetes-demo/{claim}"},
                 "claimRef": {"namespace": ns, "name": claim}},
    })


def _show(custom: client.CustomObjectsApi, core: client.CoreV1Api, ns: str, name: str) -> None:
    inst = custom.get_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, name)
    status = inst.get("status", {})
    print(yaml.safe_dump({INSTANCE_KIND: f"{ns}/{name}", "status": status},
                         sort_keys=False), flush=True)
    label = f"{LABEL_INSTANCE}={name}"
    for pvc in core.list_namespaced_persistent_volume_claim(ns, label_selector=label).items:
        print(f"PVC {pvc.metadata.name}: {pvc.status.phase}, "
              f"{pvc.spec.resources.requests.get('storage')}")
    for pod in core.list_namespaced_pod(ns, label_selector=label).items:
        env = {e.name: e.value for e in pod.spec.containers[0].env or []}
        print(f"Pod {pod.metadata.name}: {pod.status.phase} on {pod.spec.node_name}, "
              f"IP {pod.status.pod_ip}, JUPYTERHUB_USER={env.get('JUPYTERHUB_USER')}")


def _ready(custom: client.CustomObjectsApi, ns: str, name: str) -> bool:
    inst = custom.get_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, name)
    status = inst.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status.get("podsProvisioned") == "Completed" and conditions.get("Ready") == "True"


def run(keep: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="jupyternetes-demo-"))
    _say(f"starting a local control plane (tools in {paths.tools_dir()})")
    with DevCluster() as cluster:
        _say(f"cluster up in {cluster.timing['total']:.1f} s at {cluster.server}; "
             f"KUBECONFIG={cluster.kubeconfig}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        _say("installing CRDs: " + ", ".join(apply_crds(api, load_crd_documents())))

        instance = strip_server_fields(load_example("seed-instance.yaml"))
        ins = instance["metadata"]["namespace"]
        # The seed's template (kadense) serves the seed's instance (default): it says so.
        template = shared_template(strip_server_fields(load_example("seed-template.yaml")),
                                   (ins,))
        tns = template["metadata"]["namespace"]
        _ensure_namespace(core, tns)
        _ensure_namespace(core, ins)
        custom.create_namespaced_custom_object(GROUP, VERSION, tns, TEMPLATE_PLURAL, template)
        _say(f"created {TEMPLATE_KIND} {tns}/{template['metadata']['name']}")

        state = work / "state"
        env = pulumi_env(backend_url(state), secrets.token_hex(16))
        log_path = work / "operator.log"
        # Every namespace and the default workers, as an admin would run it first.
        operator = OperatorProcess(cluster.kubeconfig, env, state, env["PULUMI_HOME"], [],
                                   log_path, backend_url=env["PULUMI_BACKEND_URL"],
                                   workers=None)
        _say(f"starting `jupyternetes operator` (log: {log_path})")
        try:
            operator.start(timeout=60)
            name = instance["metadata"]["name"]
            _volume_for(core, ins, object_name(name, "workspace"))
            started = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ins, INSTANCE_PLURAL,
                                                   instance)
            _say(f"created {INSTANCE_KIND} {ins}/{name}; waiting for Completed + Ready")
            try:
                _wait("the instance to be Completed and Ready",
                      lambda: _ready(custom, ins, name), 180)
            except TimeoutError:
                print(log_path.read_text()[-4000:], file=sys.stderr)
                _show(custom, core, ins, name)
                raise
            _say(f"instance Completed and Ready {time.monotonic() - started:.1f} s after "
                 "creation")
            _show(custom, core, ins, name)
            if keep:
                _say(f"cluster and operator stay up; export KUBECONFIG={cluster.kubeconfig} "
                     "and try `kubectl get jni -A`. Ctrl-C to stop.")
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
        finally:
            if operator.running():
                try:
                    operator.terminate(60)
                except subprocess.TimeoutExpired:
                    operator.kill()
    _say("stopped the operator and the cluster")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster and operator running until Ctrl-C")
    args = parser.parse_args(argv)
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return run(args.keep)


if __name__ == "__main__":
    sys.exit(main())
