"""`make demo-hub`: JupyterHub spawning notebook servers through jupyternetes, on this machine.

A throwaway cluster (real kube-apiserver, etcd, controller-manager, scheduler; kwok nodes, one of
them the loopback node), the CRDs, `examples/spawner-template.yaml` placed on the loopback node,
`jupyternetes operator`, the pod runner (the harness's container runtime: each pod's
`jupyterhub-singleuser` runs as a local process on its loopback pod IP), and a real JupyterHub
with configurable-http-proxy using `JupyternetesSpawner`.

By default it proves the path once and stops: logs in as `demo` through the login form, starts
the server, opens JupyterLab through the proxy (the hub's OAuth included) and saves a notebook,
which lands in the user's PVC directory. `--keep` then leaves everything up and
prints the URL and password to open in a browser (any user name works; each user's PVC is
pre-bound by the demo as an admin with static volumes would) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
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

from harness.cluster import DevCluster, loopback_placement
from harness.crds import apply_crds
from harness.hub import Hub
from harness.operator_process import OperatorProcess, poll
from harness.podrunner import PodRunner
from harness.pulumi_env import backend_url, pulumi_env
from jupyternetes.crd.definitions import (
    GROUP,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
    load_crd_documents,
)

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "jupyternetes-demo"
TEMPLATE = "spawner-template"
DEMO_USER = "demo"
SPAWN_TIMEOUT = 300.0


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    result = poll(check, timeout, 0.5)
    if result:
        return result
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def loopback_template(namespace: str) -> dict[str, Any]:
    """examples/spawner-template.yaml with its pod placed on the loopback node."""
    body = yaml.safe_load((REPO / "examples" / "spawner-template.yaml").read_text())
    body["metadata"] = {"name": TEMPLATE, "namespace": namespace}
    for pod in body["spec"]["pods"]:
        pod["spec"].update(loopback_placement())
    return body


def bind_pending_claims(core: client.CoreV1Api, runner: PodRunner, namespace: str) -> None:
    """A pre-bound volume for every unbound claim: the harness has no provisioner."""
    for pvc in core.list_namespaced_persistent_volume_claim(namespace).items:
        if not pvc.spec.volume_name:
            runner.provide_volume(namespace, pvc.metadata.name)


def check_spawn(hub: Hub, core: client.CoreV1Api, runner: PodRunner) -> None:
    """Log in as DEMO_USER, start the server, reach it through the proxy."""
    session = hub.login(DEMO_USER)
    xsrf = session.cookies.get("_xsrf", "")
    resp = session.post(f"{hub.api_url}/users/{DEMO_USER}/server", timeout=30,
                        headers={"X-XSRFToken": xsrf})
    if resp.status_code not in (201, 202):
        raise RuntimeError(f"starting {DEMO_USER}'s server: HTTP {resp.status_code} {resp.text}")
    started = time.monotonic()

    def ready() -> bool:
        bind_pending_claims(core, runner, NAMESPACE)
        status, user = hub.api("GET", f"/users/{DEMO_USER}")
        server = (user or {}).get("servers", {}).get("", {}) if status == 200 else {}
        return bool(server.get("ready"))

    _wait(f"{DEMO_USER}'s server to be ready", ready, SPAWN_TIMEOUT)
    _say(f"{DEMO_USER}'s server ready {time.monotonic() - started:.1f} s after the request")
    # As a browser: the server sends us through the hub's OAuth and back, then serves Lab.
    lab = session.get(f"{hub.url}/user/{DEMO_USER}/lab", timeout=60)
    _say(f"GET {hub.url}/user/{DEMO_USER}/lab through the proxy (OAuth via the hub): "
         f"HTTP {lab.status_code}, {len(lab.history)} redirects")
    if lab.status_code != 200 or "JupyterLab" not in lab.text:
        raise RuntimeError(f"{DEMO_USER}'s server did not serve JupyterLab through the proxy")
    xsrf = next((c.value for c in session.cookies if c.name == "_xsrf"
                 and (c.path or "").startswith(f"/user/{DEMO_USER}")), xsrf)
    saved = session.put(f"{hub.url}/user/{DEMO_USER}/api/contents/hello.ipynb", timeout=30,
                        headers={"X-XSRFToken": xsrf}, json={"type": "notebook", "content": {
                            "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}})
    if saved.status_code not in (200, 201):
        raise RuntimeError(f"saving a notebook: HTTP {saved.status_code} {saved.text[:300]}")
    claims = [p for p in (runner.state_dir / "pvcs" / NAMESPACE).glob("*/hello.ipynb")]
    _say(f"saved hello.ipynb through the server; on the user's PVC it is {claims}")
    if not claims:
        raise RuntimeError("the saved notebook is not in the user's PVC directory")


def run(keep: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="jupyternetes-demo-hub-"))
    with DevCluster(loopback_node=True) as cluster:
        _say(f"cluster up in {cluster.timing['total']:.1f} s; KUBECONFIG={cluster.kubeconfig}; "
             f"loopback pod CIDR {cluster.loopback_cidr}")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        _say("installing CRDs: " + ", ".join(apply_crds(api, load_crd_documents())))
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, TEMPLATE_PLURAL,
                                               loopback_template(NAMESPACE))
        _say(f"created {TEMPLATE_KIND} {NAMESPACE}/{TEMPLATE} (loopback node)")

        state = work / "state"
        env = pulumi_env(backend_url(state), secrets.token_hex(16))
        operator = OperatorProcess(cluster.kubeconfig, env, state, env["PULUMI_HOME"],
                                   [NAMESPACE], work / "operator.log",
                                   backend_url=env["PULUMI_BACKEND_URL"], workers=None)
        runner = PodRunner(api, work / "podrunner")
        hub = Hub(root=work / "hub", keep=True, spawner_config={
            "kubeconfig": str(cluster.kubeconfig), "namespace": NAMESPACE,
            "hub_namespace": NAMESPACE, "template_name": TEMPLATE})
        try:
            _say(f"starting `jupyternetes operator` (log: {work / 'operator.log'})")
            operator.start(timeout=60)
            runner.start()
            _say(f"pod runner watching the loopback node (logs: {work / 'podrunner' / 'logs'})")
            hub.start()
            _say(f"JupyterHub up at {hub.url} (logs: {hub.log_dir})")
            check_spawn(hub, core, runner)
            if keep:
                _say(f"open {hub.url}/hub/login - any user name, password {hub.password}\n"
                     f"    export KUBECONFIG={cluster.kubeconfig}; kubectl get jni -A\n"
                     "    Ctrl-C to stop everything.")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        bind_pending_claims(core, runner, NAMESPACE)
                        time.sleep(1)
        except BaseException:
            for log in (hub.log_dir / "jupyterhub.log", work / "operator.log"):
                with contextlib.suppress(OSError):
                    print(f"----- {log} -----\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            hub.stop()
            runner.stop()
            if operator.running():
                try:
                    operator.terminate(60)
                except subprocess.TimeoutExpired:
                    operator.kill()
    # Reached only on success: logs stay on failure (see the messages above).
    shutil.rmtree(work, ignore_errors=True)
    _say("stopped the hub, the pod runner, the operator and the cluster")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.demo_hub",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="after the check, leave everything up until Ctrl-C")
    args = parser.parse_args(argv)
    os.environ.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return run(args.keep)


if __name__ == "__main__":
    sys.exit(main())
