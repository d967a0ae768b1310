"""End to end: `jupyternetes operator` against the harness's real apiserver and real Pulumi engine.

Each test runs the operator as a subprocess (`python -m jupyternetes.app.cli operator`), as an
admin would, scoped to the test's namespace, with its own file:// Pulumi backend. What is
checked is what exists in the cluster (PVCs, pods, finalizers, Events, status) and in the
backend folder, never the operator's own idea of it.

The harness has no volume provisioner, so each test pre-creates a static PersistentVolume bound
to the PVC name the template will produce (as an admin would without dynamic provisioning);
otherwise the scheduler would keep the notebook pod Pending on its unbound claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from harness.examples import load_example, shared_template, strip_server_fields
from harness.operator_process import OperatorProcess, poll
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import FINALIZER, LABEL_INSTANCE
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine.state import statedirs
from jupyternetes.kube.client import Kube

pytestmark = pytest.mark.e2e

HUB_NAMESPACE = "kadense"
SEED_TEMPLATE = "default-template"
SEED_NAME = "8dc366d8a0f05869bfdb6e7eb3d83f65"
API_TOKEN = "852dc4bd4e4e4360b7ae94cffa4f1c76"
# Generous: two cores shared with other work, and each `up` starts a Pulumi engine + provider.
PROVISION_TIMEOUT = 180.0
# Retries within seconds, so the tests of failures do not wait for the default backoff.
FAST_BACKOFF = ("--backoff-base", "0.5", "--backoff-cap", "10")


def all_lock_files(state_root: Path) -> list[Path]:
    """Stack lock files in the operator's file:// state: the root's and every bucket's."""
    return [lock for folder in statedirs.backend_dirs(state_root)
            for lock in (folder / ".pulumi" / "locks").rglob("*.json")]


# ---- small helpers ---------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], Any], timeout: float = PROVISION_TIMEOUT,
             describe: Callable[[], str] | None = None) -> Any:
    value = poll(check, timeout, 0.25)
    if value:
        return value
    detail = describe() if describe else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")


def condition(inst: dict | None, type_: str) -> dict:
    for cond in ((inst or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


class Cluster:
    """Thin test-side access to the cluster (separate from the operator's own client)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.kube = Kube(api)

    def instance(self, ns: str, name: str) -> dict | None:
        return self.kube.get_instance(ns, name)

    def create_instance(self, ns: str, name: str, variables: dict | None = None,
                        template: str = SEED_TEMPLATE) -> dict:
        body = strip_server_fields(load_example("seed-instance.yaml"))
        body["metadata"] = {"name": name, "namespace": ns}
        body["spec"]["template"] = {"name": template, "namespace": HUB_NAMESPACE}
        body["spec"]["variables"]["jupyternetes.instance.name"] = name
        body["spec"]["variables"]["jupyternetes.instance.namespace"] = ns
        if variables is not None:
            body["spec"]["variables"] = variables
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL,
                                                           body)

    def patch_variables(self, ns: str, name: str, variables: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, INSTANCE_PLURAL, name, {"spec": {"variables": variables}},
            _content_type="application/merge-patch+json")

    def edit_template(self, ns: str, name: str, change: Callable[[dict], None]) -> dict:
        """`kubectl edit jnt`: change(template) in place and replace it, again on a conflict.

        The operator writes the template's status (revisions, counts, lint) at any time, and each
        write moves the resourceVersion; a GET-then-PUT that lost that race is refused with 409
        and must be redone on a fresh read, as client-go's RetryOnConflict does.
        """
        for attempt in range(10):
            tpl = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL,
                                                           name)
            change(tpl)
            try:
                return self.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, ns, TEMPLATE_PLURAL, name, tpl)
            except client.ApiException as exc:
                if exc.status != 409 or attempt == 9:
                    raise
        raise AssertionError("unreachable")

    def delete_instance(self, ns: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, name)

    def pods(self, ns: str, instance: str) -> list[dict]:
        resp = self.core.list_namespaced_pod(ns, label_selector=f"{LABEL_INSTANCE}={instance}",
                                             _preload_content=False)
        return json.loads(resp.data)["items"]

    def pvcs(self, ns: str, instance: str) -> list[dict]:
        resp = self.core.list_namespaced_persistent_volume_claim(
            ns, label_selector=f"{LABEL_INSTANCE}={instance}", _preload_content=False)
        return json.loads(resp.data)["items"]

    def pod(self, ns: str, name: str) -> dict | None:
        return self.kube.get_pod(ns, name)

    def events(self, ns: str, name: str) -> list[tuple[str, str, str]]:
        return [(e.get("type"), e.get("reason"), e.get("message"))
                for e in self.kube.list_events(ns, name)]

    def wait_event(self, ns: str, name: str, type_: str, reason: str,
                   text: str = "") -> tuple[str, str, str]:
        """The Event is written right after the status it explains: wait for it briefly."""
        return wait_for(f"event {type_}/{reason} on {ns}/{name}", lambda: next(
            (e for e in self.events(ns, name)
             if e[:2] == (type_, reason) and text in (e[2] or "")), None), timeout=30,
            describe=lambda: str(self.events(ns, name)))

    def describe(self, ns: str, name: str) -> str:
        inst = self.instance(ns, name)
        pods = [(p["metadata"]["name"], (p.get("status") or {}).get("phase"))
                for p in self.pods(ns, name)]
        return (f"instance {ns}/{name} status: {json.dumps((inst or {}).get('status'), indent=1)}"
                f"\npods: {pods}\nevents: {self.events(ns, name)}")


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hub(cluster, crds_installed) -> Iterator[Cluster]:
    """The hub namespace `kadense` holding the seed template (and a broken one for tests)."""
    api = cluster.api_client()
    c = Cluster(api)
    try:
        c.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=HUB_NAMESPACE)))
        created_ns = True
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        created_ns = False
    # Shared with the tests' own namespaces (spec.allowedNamespaces), as an admin upgrading an
    # install whose templates live in the hub's namespace does.
    templates = [strip_server_fields(load_example("seed-template.yaml"))]
    broken = strip_server_fields(load_example("seed-template.yaml"))
    broken["metadata"] = {"name": "rejected-template", "namespace": HUB_NAMESPACE}
    broken["spec"] = {"pods": [{"name": "notebook", "spec": {"containers": [{
        # Underscores and capitals: the apiserver rejects this container name.
        "name": "Not_A_Valid_Name", "image": "quay.io/jupyter/base-notebook",
        "ports": [{"containerPort": 8888}]}]}}]}
    templates = [shared_template(body) for body in (*templates, broken)]
    for body in templates:
        try:
            c.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                     body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    yield c
    if created_ns:
        c.core.delete_namespace(HUB_NAMESPACE)
    api.close()


class Volumes:
    """Static PVs pre-bound to the PVC names instances will get (no provisioner in harness)."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.names: list[str] = []

    def provide(self, ns: str, instance: str, entry: str = "workspace") -> None:
        claim = f"{instance}-{entry}"
        name = f"pv-{ns}-{claim}"[:253]
        self.core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {"jupyternetes.e2e/test": "true"}},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                "hostPath": {"path": f"/tmp/jupyternetes-e2e/{name}"},
                "claimRef": {"namespace": ns, "name": claim},
            }})
        self.names.append(name)

    def cleanup(self) -> None:
        for name in self.names:
            try:
                self.core.delete_persistent_volume(name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def volumes(hub: Cluster) -> Iterator[Volumes]:
    v = Volumes(hub.core)
    yield v
    v.cleanup()


@pytest.fixture
def start_operator(cluster, pulumi_env, tmp_path, hub) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: start an operator for some namespaces; on teardown delete what the test left
    (while the operator still runs, so finalizers are honoured) and stop it with SIGTERM."""
    started: list[tuple[OperatorProcess, list[str]]] = []

    def start(namespaces: list[str], workers: int = 4,
              extra: tuple[str, ...] = ()) -> OperatorProcess:
        op = OperatorProcess(cluster.kubeconfig, pulumi_env.env, tmp_path / "operator-state",
                             pulumi_env.pulumi_home, namespaces,
                             tmp_path / f"operator-{len(started)}.log",
                             backend_url=pulumi_env.backend_url, workers=workers,
                             resync_seconds=20, extra=(*FAST_BACKOFF, *extra))
        started.append((op, namespaces))
        return op.start()

    yield start
    for op, namespaces in started:
        if op.proc is None or op.proc.poll() is not None:
            continue
        for ns in namespaces:
            items = hub.custom.list_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL)
            for item in items["items"]:
                hub.delete_instance(ns, item["metadata"]["name"])
            try:
                wait_for(f"instances in {ns} deleted", lambda ns=ns: not hub.custom
                         .list_namespaced_custom_object(GROUP, VERSION, ns,
                                                        INSTANCE_PLURAL)["items"],
                         timeout=120)
            finally:
                # Never leave a namespace stuck Terminating on our finalizer.
                for item in hub.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL)["items"]:
                    hub.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
        code = op.terminate()
        assert code == 0, f"operator exit code {code} after SIGTERM\n{op.log_tail()}"


def provisioned(hub: Cluster, ns: str, name: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        inst = hub.instance(ns, name)
        status = (inst or {}).get("status") or {}
        if (status.get("podsProvisioned") == "Completed"
                and status.get("pvcsProvisioned") == "Completed"
                and status.get("observedGeneration") == inst["metadata"]["generation"]
                and condition(inst, "Provisioned").get("status") == "True"):
            return inst
        return None
    return check


def ready(hub: Cluster, ns: str, name: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        inst = provisioned(hub, ns, name)()
        pod = ((inst or {}).get("status") or {}).get("pods", {}).get("notebook", {})
        if inst and condition(inst, "Ready").get("status") == "True" and pod.get("podAddress"):
            return inst
        return None
    return check


def env_of(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


# ---- the Must-show list ----------------------------------------------------------------------


def test_seed_instance_gets_pvc_and_pod_completed_and_ready(hub, namespace, volumes,
                                                            start_operator, tmp_path):
    ns, name = namespace, SEED_NAME
    volumes.provide(ns, name)
    op = start_operator([ns])
    created = time.monotonic()
    hub.create_instance(ns, name)
    pod = wait_for("the notebook pod", lambda: hub.pod(ns, f"{name}-notebook"))
    pod_seconds = time.monotonic() - created
    inst = wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(
        ns, name) + "\n" + op.log_tail())
    inst = wait_for("Ready", ready(hub, ns, name), describe=lambda: hub.describe(ns, name))
    ready_seconds = time.monotonic() - created
    print(f"\ninstance created -> pod exists {pod_seconds:.1f}s, -> Ready {ready_seconds:.1f}s")

    # Rendered values in the real objects.
    pvc = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace", ns)
    assert pvc.metadata.labels["jupyternetes.kadense.io/userId"] == "1"
    assert pvc.metadata.labels["app.kubernetes.io/managed-by"] == "jupyternetes"
    assert pvc.spec.resources.requests["storage"] == "1Gi"
    pod = hub.pod(ns, f"{name}-notebook")
    env = env_of(pod)
    assert env["JUPYTERHUB_USER"] == "jovyan"
    assert env["JUPYTERHUB_API_URL"] == "http://hub.kadense.svc.cluster.local:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/jovyan/"
    assert env["JUPYTERHUB_API_TOKEN"] == API_TOKEN  # the pod needs it; the state must not
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == f"{name}-workspace"
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/home/jovyan/work"
    assert pod["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert pod["status"]["phase"] == "Running"

    # The status contract.
    status = inst["status"]
    entry = status["pods"]["notebook"]
    assert entry["resourceName"] == f"{name}-notebook"
    assert entry["state"] == "Completed"
    assert entry["podAddress"] == pod["status"]["podIP"]
    assert entry["portNumber"] == 8888
    assert entry["ready"] is True and entry["phase"] == "Running"
    assert status["pvcs"]["workspace"] == {"resourceName": f"{name}-workspace",
                                           "state": "Completed"}
    assert condition(inst, "Provisioned")["observedGeneration"] == 1
    assert condition(inst, "Degraded")["status"] == "False"
    assert status["stack"]["name"] == stack_name(ns, name)
    assert status["stack"]["lastUpdate"]["result"] == "succeeded"
    assert status["stack"]["lastUpdate"]["changeSummary"].get("create", 0) >= 2
    assert status["stack"]["desiredHash"].startswith("sha256:")
    assert FINALIZER in inst["metadata"]["finalizers"]
    hub.wait_event(ns, name, "Normal", "Provisioned")

    # The api token is a Pulumi secret: nowhere in the backend's files in plain text.
    state_files = [p for p in op.backend_dir.rglob("*") if p.is_file()]
    assert state_files
    assert not [p for p in state_files if API_TOKEN.encode() in p.read_bytes()]

    # Ops endpoints.
    assert op.http("/healthz") == (200, "ok\n")
    code, metrics = op.http("/metrics")
    assert code == 200
    assert op.metric(metrics, 'jupyternetes_reconciles_total{result="provisioned"}') >= 1
    assert op.metric(metrics, 'jupyternetes_engine_operation_duration_seconds_count'
                              '{operation="up"}') >= 1
    assert "jupyternetes_queue_depth" in metrics

    # Nothing changed: periodic resyncs must not call the engine again.
    ups = op.metric(metrics, 'jupyternetes_engine_operations_total{operation="up"')
    time.sleep(25)  # > --resync-seconds 20
    _, metrics = op.http("/metrics")
    assert op.metric(metrics, 'jupyternetes_engine_operations_total{operation="up"') == ups
    assert op.metric(metrics, 'jupyternetes_reconciles_total{result="unchanged"}') >= 1


def test_variable_change_replaces_pod_and_keeps_pvc(hub, namespace, volumes, start_operator):
    ns, name = namespace, "alice"
    volumes.provide(ns, name)
    start_operator([ns])
    hub.create_instance(ns, name)
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))
    pod_before = wait_for("pod", lambda: hub.pod(ns, f"{name}-notebook"))
    pvc_uid = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace",
                                                               ns).metadata.uid

    hub.patch_variables(ns, name, {"jupyterhub.user.name": "alice2"})

    def replaced() -> dict | None:
        pod = hub.pod(ns, f"{name}-notebook")
        if pod and pod["metadata"]["uid"] != pod_before["metadata"]["uid"]:
            return pod
        return None
    pod_after = wait_for("the pod replaced", replaced, describe=lambda: hub.describe(ns, name))
    assert env_of(pod_after)["JUPYTERHUB_USER"] == "alice2"
    def ready_with_new_pod() -> dict | None:
        inst = ready(hub, ns, name)()
        pod = hub.pod(ns, f"{name}-notebook") or {}
        ip = (pod.get("status") or {}).get("podIP")
        if inst and ip and inst["status"]["pods"]["notebook"]["podAddress"] == ip:
            return inst
        return None
    inst = wait_for("Ready at generation 2 with the new pod's address", ready_with_new_pod,
                    describe=lambda: hub.describe(ns, name))
    assert inst["status"]["observedGeneration"] == 2
    assert inst["status"]["stack"]["lastUpdate"]["changeSummary"].get("replace", 0) >= 1
    assert hub.pod(ns, f"{name}-notebook")["metadata"]["uid"] == pod_after["metadata"]["uid"]
    pvc = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace", ns)
    assert pvc.metadata.uid == pvc_uid
    assert len(hub.pods(ns, name)) == 1


def test_delete_removes_pod_stack_and_finalizer_keeps_pvc_and_recreate_adopts_it(
        hub, namespace, volumes, start_operator):
    ns, name = namespace, "bob"
    volumes.provide(ns, name)
    op = start_operator([ns])
    hub.create_instance(ns, name)
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))
    pvc_uid = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace",
                                                               ns).metadata.uid
    assert [p for p in op.stack_files() if stack_name(ns, name) in p.name]

    hub.delete_instance(ns, name)
    wait_for("instance gone (finalizer dropped)", lambda: hub.instance(ns, name) is None,
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    wait_for("pod gone", lambda: not hub.pods(ns, name))
    pvcs = hub.pvcs(ns, name)
    assert [p["metadata"]["uid"] for p in pvcs] == [pvc_uid]
    assert pvcs[0]["metadata"].get("deletionTimestamp") is None
    assert not [p for p in op.stack_files() if stack_name(ns, name) in p.name], \
        "the stack must be removed from the backend"

    hub.create_instance(ns, name)
    inst = wait_for("Ready again", ready(hub, ns, name), describe=lambda: hub.describe(ns, name))
    pvc = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace", ns)
    assert pvc.metadata.uid == pvc_uid, "the retained PVC must be adopted, not recreated"
    assert inst["status"]["pvcs"]["workspace"]["state"] == "Completed"
    assert len(hub.pods(ns, name)) == 1


def test_a_new_servers_pod_is_created_ahead_and_its_stack_takes_it_over(
        hub, namespace, volumes, start_operator):
    """controller/createahead.py: the first up's claim and pod are applied by the operator
    before the engine runs, with the stack's field manager; the up's create of the same object
    changes nothing, and the stack owns the pod from then on (its destroy deletes it)."""
    ns, name = namespace, "carol"
    volumes.provide(ns, name)
    op = start_operator([ns])
    created = time.monotonic()
    hub.create_instance(ns, name)
    pod = wait_for("the notebook pod", lambda: hub.pod(ns, f"{name}-notebook"))
    pod_seconds = time.monotonic() - created
    inst = wait_for("Completed", provisioned(hub, ns, name),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    print(f"\ninstance created -> pod exists {pod_seconds:.2f}s")
    assert "created ahead of its first up" in op.log_text()
    assert inst["status"]["stack"]["lastUpdate"]["changeSummary"].get("create", 0) >= 2

    live = hub.pod(ns, f"{name}-notebook")
    assert live["metadata"]["uid"] == pod["metadata"]["uid"]  # the up created no other pod
    assert live["metadata"].get("generation", 1) == 1  # nor changed its spec
    # One applier of the spec: the operator's apply and the engine's are the same manager.
    appliers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]
                if not m.get("subresource")}
    assert appliers == {("jupyternetes-engine", "Apply")}, appliers
    pvc = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace", ns)
    # (The controller-manager's binding annotations are an Update of its own.)
    assert {m.manager for m in pvc.metadata.managed_fields
            if m.operation == "Apply"} == {"jupyternetes-engine"}

    # The stack owns the pod: its destroy deletes it (a successful up leaves nothing for
    # teardown's label sweep), and keeps the claim.
    hub.delete_instance(ns, name)
    wait_for("instance gone", lambda: hub.instance(ns, name) is None,
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    wait_for("pod gone", lambda: not hub.pods(ns, name))
    assert "not in the stack deleted" not in op.log_text()
    assert [p["metadata"]["uid"] for p in hub.pvcs(ns, name)] == [pvc.metadata.uid]


def test_render_error_and_rejected_object_fail_without_affecting_others(
        hub, namespace, volumes, start_operator):
    ns = namespace
    volumes.provide(ns, "good")
    op = start_operator([ns])
    variables = dict(load_example("seed-instance.yaml")["spec"]["variables"])
    del variables["jupyterhub.user.name"]
    del variables["jupyterhub.oauth_client_id"]
    hub.create_instance(ns, "norender", variables=variables)
    hub.create_instance(ns, "rejected", template="rejected-template")
    hub.create_instance(ns, "good")

    def failed_with(name: str, reason: str) -> Callable[[], dict | None]:
        def check() -> dict | None:
            inst = hub.instance(ns, name)
            if (inst and inst.get("status", {}).get("podsProvisioned") == "Failed"
                    and condition(inst, "Provisioned").get("reason") == reason):
                return inst
            return None
        return check

    norender = wait_for("render failure", failed_with("norender", "RenderFailed"),
                        describe=lambda: hub.describe(ns, "norender"))
    message = condition(norender, "Provisioned")["message"]
    assert "jupyterhub.user.name" in message and "jupyterhub.oauth_client_id" in message
    assert condition(norender, "Ready")["status"] == "False"
    assert "stack" not in norender["status"]  # the engine was never called for it
    assert not [p for p in op.stack_files() if stack_name(ns, "norender") in p.name]
    hub.wait_event(ns, "norender", "Warning", "RenderFailed")

    rejected = wait_for("apiserver rejection", failed_with("rejected", "UpFailed"),
                        describe=lambda: hub.describe(ns, "rejected") + op.log_tail())
    message = condition(rejected, "Provisioned")["message"]
    # The apiserver's own words, naming the field and the value.
    assert "Not_A_Valid_Name" in message and "Invalid value" in message, message
    entry = rejected["status"]["pods"]["notebook"]
    assert entry["state"] == "Failed" and "Not_A_Valid_Name" in entry["errorMessage"]
    hub.wait_event(ns, "rejected", "Warning", "ProvisionFailed", "Not_A_Valid_Name")

    wait_for("the good instance Ready", ready(hub, ns, "good"),
             describe=lambda: hub.describe(ns, "good"))
    assert len(hub.pods(ns, "good")) == 1

    # The rejected one keeps failing with backoff and, after 5 attempts, is Degraded.
    degraded = wait_for("Degraded", lambda: condition(hub.instance(ns, "rejected"),
                                                      "Degraded").get("status") == "True"
                        and hub.instance(ns, "rejected"), timeout=240,
                        describe=lambda: hub.describe(ns, "rejected"))
    assert "Not_A_Valid_Name" in condition(degraded, "Degraded")["message"]
    # and the good one is still fine.
    assert ready(hub, ns, "good")()


def test_pod_deleted_out_of_band_is_recreated(hub, namespace, volumes, start_operator):
    ns, name = namespace, "carol"
    volumes.provide(ns, name)
    op = start_operator([ns])
    hub.create_instance(ns, name)
    wait_for("Ready", ready(hub, ns, name), describe=lambda: hub.describe(ns, name))
    old = hub.pod(ns, f"{name}-notebook")
    hub.core.delete_namespaced_pod(f"{name}-notebook", ns, grace_period_seconds=0)

    def recreated() -> dict | None:
        pod = hub.pod(ns, f"{name}-notebook")
        return pod if pod and pod["metadata"]["uid"] != old["metadata"]["uid"] else None
    new = wait_for("the pod recreated", recreated,
                   describe=lambda: hub.describe(ns, name) + op.log_tail())
    inst = wait_for("Ready with the new pod's address", lambda: (
        (i := ready(hub, ns, name)()) and i["status"]["pods"]["notebook"]["podAddress"]
        == (hub.pod(ns, f"{name}-notebook") or {}).get("status", {}).get("podIP") and i),
        describe=lambda: hub.describe(ns, name))
    assert new["metadata"]["name"] == old["metadata"]["name"]
    assert len(hub.pods(ns, name)) == 1
    hub.wait_event(ns, name, "Normal", "Provisioned", "drift repaired")
    assert inst["status"]["stack"]["lastUpdate"]["result"] == "succeeded"


def test_operator_killed_during_up_restarts_and_converges(hub, namespace, volumes,
                                                         start_operator):
    ns = namespace
    names = ["kill-a", "kill-b", "kill-c"]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=3)
    for name in names:
        hub.create_instance(ns, name)

    # Kill in the middle of an `up`: while the engine holds the stack's lock in the backend
    # (`.pulumi/locks/...`), i.e. between the start and the end of the Pulumi update.
    def locked() -> list[Path]:
        return all_lock_files(op.backend_dir)
    # The tree is frozen before the look, so the `up` cannot finish (and drop its lock) between
    # the look and the kill.
    killed = wait_for("a stack update holding its lock", lambda: op.kill_tree_while(locked),
                      timeout=120)
    locks_at_kill = locked()
    states = {n: (((hub.instance(ns, n) or {}).get("status") or {}).get("podsProvisioned"),
                  len(hub.pvcs(ns, n)), len(hub.pods(ns, n))) for n in names}
    print(f"\nSIGKILL of {len(killed)} processes with {len(locks_at_kill)} stack lock(s) held; "
          f"(state, pvcs, pods): {states}")
    assert locks_at_kill, "the kill must leave a held lock behind for the restart to clear"

    op.start()
    for name in names:
        wait_for(f"{name} Ready after restart", ready(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    for name in names:
        assert len(hub.pods(ns, name)) == 1, f"duplicate pods for {name}"
        assert len(hub.pvcs(ns, name)) == 1, f"duplicate PVCs for {name}"
    # No orphans: every managed pod in the namespace belongs to one of the instances.
    managed = client.CoreV1Api(hub.api).list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/managed-by=jupyternetes").items
    assert sorted(p.metadata.name for p in managed) == sorted(f"{n}-notebook" for n in names)
    # No stack stays locked.
    locks = all_lock_files(op.backend_dir)
    assert locks == [], locks
    restart_log = op.log_path.read_text().split("===== start 2 =====")[1]
    cleared = [line for line in restart_log.splitlines() if "stale lock" in line
               or "pending operations" in line]
    print("\n".join(cleared))
    assert cleared, "the restart should report the stale locks it cleared"


def test_parallel_instances_reconcile_concurrently(hub, namespace, volumes, start_operator):
    ns = namespace
    names = [f"par-{i}" for i in range(5)]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=5)
    started = time.monotonic()
    for name in names:
        hub.create_instance(ns, name)
    done = {}
    for name in names:
        done[name] = wait_for(f"{name} Completed", provisioned(hub, ns, name),
                              describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    wall = time.monotonic() - started
    for name in names:
        assert len(hub.pods(ns, name)) == 1 and len(hub.pvcs(ns, name)) == 1
        env = env_of(hub.pod(ns, f"{name}-notebook"))
        assert env["JUPYTERHUB_USER"] == "jovyan"

    def stamp(text: str) -> float:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    intervals = [(stamp(d["status"]["stack"]["lastUpdate"]["startedAt"]),
                  stamp(d["status"]["stack"]["lastUpdate"]["finishedAt"]))
                 for d in done.values()]
    # Largest number of `up`s running at one instant (1 s timestamp resolution).
    peak = max(sum(1 for s, f in intervals if s <= t <= f) for t, _ in intervals)
    engine_total = sum(f - s for s, f in intervals)
    print(f"\n{len(names)} instances: wall {wall:.1f}s, sum of up durations "
          f"{engine_total:.0f}s, peak concurrent ups {peak}")
    assert peak >= 4, intervals
    for name in names:
        wait_for(f"{name} Ready", ready(hub, ns, name), describe=lambda name=name: hub.describe(
            ns, name))


def test_deleting_an_instance_whose_template_is_gone_still_cleans_up(hub, namespace, volumes,
                                                                     start_operator):
    ns, name, template = namespace, "orphan", f"gone-{namespace}"[:63]
    body = shared_template(strip_server_fields(load_example("seed-template.yaml")), (ns,))
    body["metadata"] = {"name": template, "namespace": HUB_NAMESPACE}
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    volumes.provide(ns, name)
    op = start_operator([ns])
    hub.create_instance(ns, name, template=template)
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))
    hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                               template)
    hub.delete_instance(ns, name)
    wait_for("instance gone", lambda: hub.instance(ns, name) is None,
             describe=lambda: hub.describe(ns, name) + op.log_tail())
    wait_for("pod gone", lambda: not hub.pods(ns, name))
    assert len(hub.pvcs(ns, name)) == 1  # user data stays
    assert not [p for p in op.stack_files() if stack_name(ns, name) in p.name]


def test_namespace_flags_scope_the_operator(hub, namespace, volumes, start_operator):
    """`--namespace` twice: both namespaces are served, a third one is left alone."""
    second, ignored = f"{namespace}-b", f"{namespace}-c"
    for ns in (second, ignored):
        hub.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=ns, labels={"jupyternetes.e2e/test": "true"})))
    try:
        for ns in (namespace, second, ignored):
            volumes.provide(ns, "scoped")
        start_operator([namespace, second])
        for ns in (namespace, second, ignored):
            hub.create_instance(ns, "scoped")
        for ns in (namespace, second):
            wait_for(f"{ns}/scoped Completed", provisioned(hub, ns, "scoped"),
                     describe=lambda ns=ns: hub.describe(ns, "scoped"))
        time.sleep(3)
        outside = hub.instance(ignored, "scoped")
        assert not outside.get("status") and not outside["metadata"].get("finalizers")
        assert hub.pods(ignored, "scoped") == []
    finally:
        hub.delete_instance(ignored, "scoped")
        for ns in (second, ignored):
            # The start_operator teardown cleans `namespace`; this one is ours to empty first.
            if ns == second:
                hub.delete_instance(ns, "scoped")
                wait_for(f"{ns}/scoped deleted", lambda ns=ns: hub.instance(ns, "scoped") is None,
                         timeout=120)
            hub.core.delete_namespace(ns)


def test_sigterm_during_an_up_finishes_it_and_exits_zero(hub, namespace, volumes,
                                                        start_operator):
    ns, name = namespace, "term"
    volumes.provide(ns, name)
    op = start_operator([ns])
    hub.create_instance(ns, name)
    wait_for("an up holding its lock", lambda: all_lock_files(op.backend_dir), timeout=120)
    started = time.monotonic()
    assert op.terminate(timeout=90) == 0
    print(f"\nSIGTERM during up: exit 0 after {time.monotonic() - started:.1f}s")
    # In-flight work was finished within the grace period, not abandoned.
    assert "abandoning" not in op.log_tail()
    assert all_lock_files(op.backend_dir) == []
    inst = hub.instance(ns, name)
    assert inst["status"]["stack"]["lastUpdate"]["result"] == "succeeded", hub.describe(ns, name)
    op.start()  # so the fixture's teardown can delete the instance through the finalizer
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))


def test_sigterm_stops_cleanly(hub, namespace, start_operator):
    op = start_operator([namespace])
    assert op.http("/healthz")[0] == 200
    started = time.monotonic()
    assert op.terminate(timeout=60) == 0
    assert time.monotonic() - started < 30
    assert "stopped" in op.log_tail()


if os.environ.get("JUPYTERNETES_E2E_KEEP_LOGS"):  # pragma: no cover - debugging aid
    @pytest.fixture(autouse=True)
    def _print_logs(tmp_path):
        yield
        for log in sorted(tmp_path.glob("operator-*.log")):
            print(log.read_text())


# ---- template edits and --template-rollout ----------------------------------------------------


@contextlib.contextmanager
def own_template(hub: Cluster, namespace: str, prefix: str) -> Iterator[str]:
    """A copy of the seed template for one test, in the hub namespace like the seed's own (the
    shared `default-template` is not edited: other tests may be rendering from it right now)."""
    name = f"{prefix}-{namespace}"[:63]
    body = shared_template(strip_server_fields(load_example("seed-template.yaml")), (namespace,))
    body["metadata"] = {"name": name, "namespace": HUB_NAMESPACE}
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE,
                                                       TEMPLATE_PLURAL, name)


def set_template_env(hub: Cluster, template: str, env_name: str, value: str) -> int:
    """`kubectl edit jnt`: one env value changed; returns the template's new generation."""
    def change(tpl: dict) -> None:
        env = tpl["spec"]["pods"][0]["spec"]["containers"][0]["env"]
        next(e for e in env if e["name"] == env_name)["value"] = value
    return hub.edit_template(HUB_NAMESPACE, template, change)["metadata"]["generation"]


def test_template_edit_waits_for_the_next_start_of_a_running_server(hub, namespace, volumes,
                                                                     start_operator):
    ns, name = namespace, "rollout"
    volumes.provide(ns, name)
    # Resync far away: the edit must arrive through the template watch, not a periodic resync.
    op = start_operator([ns], extra=("--resync-seconds", "3600"))
    with own_template(hub, ns, "rollout") as template:
        hub.create_instance(ns, name, template=template)
        inst = wait_for("Ready", ready(hub, ns, name), describe=lambda: hub.describe(ns, name))
        started_gen = inst["status"]["stack"]["templateGeneration"]
        assert condition(inst, "TemplateCurrent")["status"] == "True"
        pod_before = hub.pod(ns, f"{name}-notebook")
        assert env_of(pod_before)["JUPYTERHUB_BASE_URL"] == "/"
        _, metrics = op.http("/metrics")
        ups = op.metric(metrics, 'jupyternetes_engine_operations_total{operation="up"')

        new_gen = set_template_env(hub, template, "JUPYTERHUB_BASE_URL", "/edited/")
        assert new_gen > started_gen
        edited = time.monotonic()
        inst = wait_for("TemplateCurrent=False", lambda: (lambda i: i if condition(
            i, "TemplateCurrent").get("status") == "False" else None)(hub.instance(ns, name)),
            timeout=15, describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
        print(f"\ntemplate edited -> TemplateCurrent=False in {time.monotonic() - edited:.1f}s")
        cond = condition(inst, "TemplateCurrent")
        assert cond["reason"] == "TemplateChanged"
        assert f"{HUB_NAMESPACE}/{template}" in cond["message"]
        assert f"generation {new_gen}" in cond["message"]
        assert f"jupyternetes preview {ns}/{name}" in cond["message"]
        hub.wait_event(ns, name, "Normal", "TemplateChanged", f"generation {new_gen}")
        # The running server is left alone: same pod, still Ready, no engine call.
        time.sleep(5)
        pod = hub.pod(ns, f"{name}-notebook")
        assert pod["metadata"]["uid"] == pod_before["metadata"]["uid"]
        assert env_of(pod)["JUPYTERHUB_BASE_URL"] == "/"
        inst = hub.instance(ns, name)
        assert condition(inst, "Ready")["status"] == "True"
        assert inst["status"]["stack"]["templateGeneration"] == started_gen
        _, metrics = op.http("/metrics")
        assert op.metric(metrics, 'jupyternetes_engine_operations_total{operation="up"') == ups
        assert len([e for e in hub.events(ns, name) if e[1] == "TemplateChanged"]) == 1

        # A restart (the spawner deletes and recreates the instance) gets the new template.
        hub.delete_instance(ns, name)
        wait_for("instance gone", lambda: hub.instance(ns, name) is None,
                 describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
        hub.create_instance(ns, name, template=template)
        inst = wait_for("Ready again", ready(hub, ns, name),
                        describe=lambda: hub.describe(ns, name))
        pod = hub.pod(ns, f"{name}-notebook")
        assert env_of(pod)["JUPYTERHUB_BASE_URL"] == "/edited/"
        assert inst["status"]["stack"]["templateGeneration"] == new_gen
        assert condition(inst, "TemplateCurrent")["status"] == "True"


def test_template_edit_with_immediate_rollout_replaces_the_pod(hub, namespace, volumes,
                                                               start_operator):
    ns, name = namespace, "eager"
    volumes.provide(ns, name)
    op = start_operator([ns], extra=("--resync-seconds", "3600",
                                     "--template-rollout", "immediate"))
    with own_template(hub, ns, "eager") as template:
        hub.create_instance(ns, name, template=template)
        wait_for("Ready", ready(hub, ns, name), describe=lambda: hub.describe(ns, name))
        pod_before = hub.pod(ns, f"{name}-notebook")
        new_gen = set_template_env(hub, template, "JUPYTERHUB_BASE_URL", "/edited/")

        def replaced() -> dict | None:
            pod = hub.pod(ns, f"{name}-notebook")
            if pod and pod["metadata"]["uid"] != pod_before["metadata"]["uid"]:
                return pod
            return None
        pod = wait_for("the pod replaced", replaced,
                       describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
        assert env_of(pod)["JUPYTERHUB_BASE_URL"] == "/edited/"
        inst = wait_for("templateGeneration recorded", lambda: (lambda i: i if (
            (i or {}).get("status") or {}).get("stack", {}).get("templateGeneration") == new_gen
            else None)(provisioned(hub, ns, name)()), describe=lambda: hub.describe(ns, name))
        assert condition(inst, "TemplateCurrent")["status"] == "True"
        assert not [e for e in hub.events(ns, name) if e[1] == "TemplateChanged"]
