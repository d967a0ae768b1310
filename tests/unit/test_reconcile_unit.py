"""Reconcile decisions, with in-memory recorders standing in for the kube and engine edges.

The recorders apply status patches with JSON merge patch semantics (RFC 7386), as the apiserver
does, so the status a sequence of reconciles leaves behind is what the tests read.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from harness.examples import shared_template
from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.noop import DriftFlags
from jupyternetes.controller.reconcile import (
    ReconcileConfig,
    Reconciler,
    desired_hash,
    secret_values,
)
from jupyternetes.crd.labels import FINALIZER
from jupyternetes.crd.model import Instance, Template
from jupyternetes.render.objects import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "default/8dc366d8a0f05869bfdb6e7eb3d83f65"
NS, NAME = KEY.split("/")
POD_NAME = f"{NAME}-notebook"
PVC_NAME = f"{NAME}-workspace"


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class KubeRecorder:
    def __init__(self, instance: dict, template: dict | None) -> None:
        self.instances = {KEY: instance}
        self.templates = {}
        if template is not None:
            meta = template["metadata"]
            self.templates[f"{meta['namespace']}/{meta['name']}"] = template
        self.pods: dict[str, dict] = {}
        # Other objects by (kind, namespace, name): what a rendered name finds in the cluster.
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.calls: list[tuple] = []
        self.events: list[tuple[str, str, str]] = []
        self.status_patches: list[dict] = []

    def get_instance(self, namespace, name):
        self.calls.append(("get_instance", namespace, name))
        obj = self.instances.get(f"{namespace}/{name}")
        return copy.deepcopy(obj) if obj else None

    def get_template(self, namespace, name):
        self.calls.append(("get_template", namespace, name))
        return copy.deepcopy(self.templates.get(f"{namespace}/{name}"))

    def get_pod(self, namespace, name):
        self.calls.append(("get_pod", namespace, name))
        return copy.deepcopy(self.pods.get(f"{namespace}/{name}"))

    def get_object(self, api_version, kind, namespace, name):
        self.calls.append(("get_object", kind, namespace, name))
        if kind == "Pod":
            return copy.deepcopy(self.pods.get(f"{namespace}/{name}"))
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    def list_pvcs(self, namespace, selector):
        self.calls.append(("list_pvcs", namespace, selector))
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [copy.deepcopy(o) for (kind, ns, _), o in sorted(self.objects.items())
                if kind == "PersistentVolumeClaim" and ns == namespace
                and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]

    def patch_instance_status(self, namespace, name, status):
        self.calls.append(("patch_status", namespace, name))
        obj = self.instances.get(f"{namespace}/{name}")
        if obj is None:
            return None
        self.status_patches.append(copy.deepcopy(status))
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        return copy.deepcopy(obj)

    def add_finalizer(self, namespace, name, finalizer=FINALIZER):
        self.calls.append(("add_finalizer", namespace, name))
        obj = self.instances.get(f"{namespace}/{name}")
        if obj is None:
            return None
        fins = obj["metadata"].setdefault("finalizers", [])
        if finalizer not in fins:
            fins.append(finalizer)
        return copy.deepcopy(obj)

    def remove_finalizer(self, namespace, name, finalizer=FINALIZER):
        self.calls.append(("remove_finalizer", namespace, name))
        obj = self.instances.get(f"{namespace}/{name}")
        if obj is None:
            return None
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers", [])
                                         if f != finalizer]
        return copy.deepcopy(obj)

    def emit_event(self, instance, event_type, reason, message):
        self.events.append((event_type, reason, message))

    terminating: set[str] = set()

    def namespace_terminating(self, namespace):
        self.calls.append(("namespace_terminating", namespace))
        return namespace in self.terminating

    def apply_object(self, manifest, field_manager):
        meta = manifest["metadata"]
        self.calls.append(("apply", manifest["kind"], meta["namespace"], meta["name"],
                           field_manager))
        live = copy.deepcopy(manifest)
        if manifest["kind"] == "Pod":
            self.pods[f"{meta['namespace']}/{meta['name']}"] = live
        else:
            self.objects[(manifest["kind"], meta["namespace"], meta["name"])] = live
        return copy.deepcopy(live)

    def delete_pods(self, namespace, selector):
        self.calls.append(("delete_pods", namespace, selector))
        return sorted(name.partition("/")[2] for name in self.pods
                      if name.startswith(f"{namespace}/"))

    @property
    def status(self) -> dict:
        return self.instances[KEY].get("status") or {}

    def condition(self, type_: str) -> dict:
        return next(c for c in self.status.get("conditions", []) if c["type"] == type_)


@dataclass
class FakeResult:
    operation: str
    result: str
    message: str = ""
    change_summary: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    started_at: str = "2026-01-01T00:00:00Z"
    finished_at: str = "2026-01-01T00:00:03Z"
    engine_seconds: float = 2.5


class EngineRecorder:
    """Scripted engine: `fail_next` makes the next ups fail with a message; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.failures: list[FakeResult] = []
        self.raise_next: Exception | None = None

    def up(self, namespace, name, rendered, secret_values, refresh=False):
        self.calls.append(("up", namespace, name, rendered, frozenset(secret_values), refresh))
        if self.raise_next:
            exc, self.raise_next = self.raise_next, None
            raise exc
        if self.failures:
            return self.failures.pop(0)
        objects = [{"group": o.group, "entry": o.entry, "apiVersion": o.api_version,
                    "kind": o.kind, "name": o.name, "namespace": o.namespace,
                    "uid": f"uid-{o.name}-{len(self.calls)}"} for o in rendered.objects()]
        return FakeResult("up", "succeeded", change_summary={"create": len(objects)},
                          outputs={"objects": objects})

    def destroy(self, namespace, name):
        self.calls.append(("destroy", namespace, name))
        if self.failures:
            return self.failures.pop(0)
        return FakeResult("destroy", "succeeded", change_summary={"delete": 1})

    def forget(self, namespace, name):
        self.calls.append(("forget", namespace, name))
        if self.failures:
            return self.failures.pop(0)
        return FakeResult("forget", "succeeded")

    def ups(self):
        return [c for c in self.calls if c[0] == "up"]


def seed(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.fixture
def env():
    instance = seed("seed-instance.yaml")
    instance["metadata"].pop("resourceVersion")
    kube = KubeRecorder(instance, shared_template(seed("seed-template.yaml")))
    engine = EngineRecorder()
    pods: dict[str, dict] = {}
    reconciler = Reconciler(kube, engine, ReconcileConfig(degraded_after=3),
                            pod_lookup=lambda ns, name: pods.get(f"{ns}/{name}"),
                            drift=DriftFlags(), metrics=Metrics(),
                            clock=lambda: "2026-01-01T00:00:05Z")
    return kube, engine, reconciler, pods


def running_pod(uid: str, ready: bool = True) -> dict:
    return {"metadata": {"name": POD_NAME, "namespace": NS, "uid": uid},
            "spec": {"containers": [{"name": "notebook", "ports": [{"containerPort": 8888}]}]},
            "status": {"phase": "Running", "podIP": "198.18.2.3",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_first_reconcile_adds_finalizer_before_up_and_writes_the_status_contract(env):
    kube, engine, reconciler, _ = env
    result = reconciler.reconcile(KEY)
    assert result.action == "provisioned" and not result.failed
    names = [c[0] for c in kube.calls]
    assert names.index("add_finalizer") < names.index("patch_status")
    assert FINALIZER in kube.instances[KEY]["metadata"]["finalizers"]
    # Processing was written before the engine ran, Completed after.
    assert kube.status_patches[0]["podsProvisioned"] == "Processing"
    assert kube.status_patches[0]["pvcs"]["workspace"]["state"] == "Processing"
    status = kube.status
    assert status["pvcsProvisioned"] == status["podsProvisioned"] == "Completed"
    assert status["otherResourcesProvisioned"] == "Completed"
    assert status["pods"]["notebook"]["resourceName"] == POD_NAME
    assert status["pods"]["notebook"]["state"] == "Completed"
    assert status["pvcs"]["workspace"] == {"resourceName": PVC_NAME, "state": "Completed"}
    assert status["observedGeneration"] == 1
    assert status["stack"]["name"] == f"{NS}.{NAME}"
    assert status["stack"]["lastUpdate"]["result"] == "succeeded"
    assert status["stack"]["lastUpdate"]["changeSummary"] == {"create": 2}
    assert status["stack"]["desiredHash"].startswith("sha256:")
    assert kube.condition("Provisioned")["status"] == "True"
    assert kube.condition("Provisioned")["observedGeneration"] == 1
    assert kube.condition("Degraded")["status"] == "False"
    # No pod seen yet: provisioned, but not Ready.
    assert kube.condition("Ready")["status"] == "False"
    assert [e[:2] for e in kube.events] == [("Normal", "Provisioned")]
    # The api token is passed as a secret value.
    (_, ns, name, rendered, secrets, refresh), = engine.ups()
    # First up of this instance object: refresh whatever state a predecessor of the same name
    # may have left (the engine skips it for a stack it has just created).
    assert (ns, name, refresh) == (NS, NAME, True)
    assert secrets == frozenset({"852dc4bd4e4e4360b7ae94cffa4f1c76"})
    assert [o.name for o in rendered.objects()] == [PVC_NAME, POD_NAME]


def test_unchanged_instance_skips_the_engine_and_only_mirrors_pods(env):
    kube, engine, reconciler, pods = env
    reconciler.reconcile(KEY)
    pods[f"{NS}/{POD_NAME}"] = running_pod("p1")
    events_before = len(kube.events)
    result = reconciler.reconcile(KEY)
    assert result.action == "unchanged"
    assert len(engine.ups()) == 1
    last = kube.status_patches[-1]
    assert set(last) == {"pods", "conditions"}
    assert last["pods"]["notebook"]["podAddress"] == "198.18.2.3"
    assert kube.status["pods"]["notebook"]["portNumber"] == 8888
    assert kube.status["pods"]["notebook"]["ready"] is True
    assert kube.condition("Ready")["status"] == "True"
    assert kube.condition("Provisioned")["status"] == "True"  # untouched
    assert len(kube.events) == events_before
    # Nothing changed at all: no patch either.
    patches = len(kube.status_patches)
    assert reconciler.reconcile(KEY).action == "unchanged"
    assert len(kube.status_patches) == patches


def test_spec_change_runs_up_again(env):
    kube, engine, reconciler, pods = env
    reconciler.reconcile(KEY)
    pods[f"{NS}/{POD_NAME}"] = running_pod("p1")
    old_hash = kube.status["stack"]["desiredHash"]
    inst = kube.instances[KEY]
    inst["spec"]["variables"]["jupyterhub.user.id"] = "2"
    inst["metadata"]["generation"] = 2
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert len(engine.ups()) == 2
    assert kube.status["stack"]["desiredHash"] != old_hash
    assert kube.status["observedGeneration"] == 2
    # The pod in the cache is the one from before the replacement (uid differs from the
    # output's): its address must not be reported for the new pod.
    assert "podAddress" not in kube.status["pods"]["notebook"]
    assert kube.status["pods"]["notebook"]["ready"] is False


def test_deleted_pod_is_drift_and_triggers_refresh_up(env):
    kube, engine, reconciler, _pods = env
    reconciler.reconcile(KEY)
    # Pod absent from cache and from the apiserver (it was created ahead of the first up):
    # drift.
    del kube.pods[f"{NS}/{POD_NAME}"]
    reconciler.drift.flag(KEY)
    result = reconciler.reconcile(KEY)
    assert result.action == "provisioned"
    assert engine.ups()[-1][5] is True  # refresh=True
    assert ("get_pod", NS, POD_NAME) in kube.calls
    assert "drift repaired" in kube.events[-1][2]


def test_cache_lag_is_not_drift_when_the_apiserver_has_the_pod(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.pods[f"{NS}/{POD_NAME}"] = running_pod("p1")
    assert reconciler.reconcile(KEY).action == "unchanged"
    assert len(engine.ups()) == 1


def test_render_error_fails_without_engine_and_names_missing_variables(env):
    kube, engine, reconciler, _ = env
    del kube.instances[KEY]["spec"]["variables"]["jupyterhub.user.name"]
    del kube.instances[KEY]["spec"]["variables"]["jupyterhub.oauth_client_id"]
    result = reconciler.reconcile(KEY)
    assert result.action == "render-failed"
    assert result.requeue_after is None and not result.failed  # no hot retry
    assert engine.calls == []
    status = kube.status
    assert status["podsProvisioned"] == status["pvcsProvisioned"] == "Failed"
    for type_ in ("Provisioned", "Ready"):
        cond = kube.condition(type_)
        assert cond["status"] == "False" and cond["reason"] == "RenderFailed"
        assert "jupyterhub.user.name" in cond["message"]
        assert "jupyterhub.oauth_client_id" in cond["message"]
    assert [e[1] for e in kube.events] == ["RenderFailed"]
    # Reconciling again (resync) neither patches nor emits again.
    patches = len(kube.status_patches)
    reconciler.reconcile(KEY)
    assert len(kube.status_patches) == patches and len(kube.events) == 1


def test_missing_template_is_reported_and_retried_later(env):
    kube, engine, reconciler, _ = env
    kube.templates.clear()
    result = reconciler.reconcile(KEY)
    assert result.action == "template-missing"
    assert result.requeue_after == 30.0
    assert engine.calls == []
    cond = kube.condition("Provisioned")
    assert cond["reason"] == "TemplateNotFound"
    assert "kadense/default-template" in cond["message"]
    assert kube.status["podsProvisioned"] == "Pending"


def test_engine_failure_marks_failed_with_apiserver_message_and_backs_off(env):
    kube, engine, reconciler, _ = env
    apiserver = ('Pod "x-notebook" is invalid: spec.containers[0].image: Required value')
    engine.failures = [FakeResult("up", "failed", message=f"pods/notebook: {apiserver}",
                                  outputs={"errors": {"pods/notebook": apiserver}})]
    result = reconciler.reconcile(KEY, failures=0)
    assert result.failed and not result.degraded
    status = kube.status
    assert status["podsProvisioned"] == "Failed"
    assert status["pvcsProvisioned"] == "Completed"  # declared before the failing pods
    assert status["pods"]["notebook"]["state"] == "Failed"
    assert status["pods"]["notebook"]["errorMessage"] == apiserver
    assert apiserver in kube.condition("Provisioned")["message"]
    assert kube.condition("Degraded")["status"] == "False"
    assert status["stack"]["lastUpdate"]["result"] == "failed"
    assert "desiredHash" not in status["stack"]  # so the next attempt runs up again
    assert kube.events[-1][:2] == ("Warning", "ProvisionFailed")


def test_repeated_failures_set_degraded_and_success_clears_it(env):
    kube, engine, reconciler, _ = env
    engine.failures = [FakeResult("up", "failed", message="connection refused")] * 3
    for attempt in range(3):
        result = reconciler.reconcile(KEY, failures=attempt)
    assert result.degraded
    cond = kube.condition("Degraded")
    assert cond["status"] == "True" and "connection refused" in cond["message"]
    assert reconciler.reconcile(KEY, failures=3).action == "provisioned"
    assert kube.condition("Degraded")["status"] == "False"


def test_engine_exception_is_a_failed_update_not_a_crash(env):
    kube, engine, reconciler, _ = env
    engine.raise_next = RuntimeError("pulumi CLI not found on PATH")
    result = reconciler.reconcile(KEY)
    assert result.failed
    assert "pulumi CLI not found" in kube.condition("Provisioned")["message"]


def test_deletion_destroys_then_removes_finalizer(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    result = reconciler.reconcile(KEY)
    assert result.action == "destroyed"
    assert engine.calls[-1] == ("destroy", NS, NAME)
    assert FINALIZER not in kube.instances[KEY]["metadata"]["finalizers"]
    assert kube.events[-1][1] == "Destroyed"


def test_deletion_with_template_gone_still_cleans_up(env):
    kube, _engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.templates.clear()
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    assert reconciler.reconcile(KEY).action == "destroyed"
    assert FINALIZER not in kube.instances[KEY]["metadata"]["finalizers"]


def test_failed_destroy_keeps_the_finalizer(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    engine.failures = [FakeResult("destroy", "failed", message="backend unreachable")]
    result = reconciler.reconcile(KEY)
    assert result.failed
    assert FINALIZER in kube.instances[KEY]["metadata"]["finalizers"]
    assert "backend unreachable" in kube.status["stack"]["lastUpdate"]["message"]


def test_destroy_failing_again_and_again_says_so_and_names_the_way_out(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    outcomes = []
    bound = reconciler.config.degraded_after
    for failures in range(bound):
        engine.failures = [FakeResult("destroy", "failed", message="the stack is locked")]
        outcomes.append(reconciler.reconcile(KEY, failures=failures))
    assert [r.degraded for r in outcomes] == [False] * (bound - 1) + [True]
    assert all(r.failed for r in outcomes)
    assert [e[1] for e in kube.events[-bound:]] == ["DestroyFailed"] * (bound - 1) + [
        "DestroyStuck"]
    stuck = kube.condition("Degraded")
    assert stuck["status"] == "True" and stuck["reason"] == "DestroyStuck"
    assert "jupyternetes.kadense.io/force-delete=true" in stuck["message"]
    assert "the stack is locked" in stuck["message"]
    assert FINALIZER in kube.instances[KEY]["metadata"]["finalizers"]
    assert not [c for c in kube.calls if c[0] == "delete_pods"]


def test_force_delete_deletes_pods_forgets_the_stack_and_releases_the_finalizer(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.pods[f"{NS}/{POD_NAME}"] = {"metadata": {"name": POD_NAME}}
    meta = kube.instances[KEY]["metadata"]
    meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    meta["annotations"] = {"jupyternetes.kadense.io/force-delete": "true"}
    result = reconciler.reconcile(KEY, failures=7)
    assert result.action == "force-deleted" and not result.failed
    assert not [c for c in engine.calls if c[0] == "destroy"]
    assert ("forget", NS, NAME) in engine.calls
    (call,) = [c for c in kube.calls if c[0] == "delete_pods"]
    assert "jupyternetes.kadense.io/instance=" in call[2]
    assert FINALIZER not in meta["finalizers"]
    (event,) = [e for e in kube.events if e[1] == "ForceDeleted"]
    assert POD_NAME in event[2] and "PVCs kept" in event[2] and "removed" in event[2]


def test_force_delete_releases_even_when_the_stack_cannot_be_forgotten(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    meta = kube.instances[KEY]["metadata"]
    meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    meta["annotations"] = {"jupyternetes.kadense.io/force-delete": "true"}
    engine.failures = [FakeResult("forget", "failed", message="the stack is locked")]
    reconciler.reconcile(KEY)
    assert FINALIZER not in meta["finalizers"]
    (event,) = [e for e in kube.events if e[1] == "ForceDeleted"]
    assert "could not be removed (the stack is locked)" in event[2]


def test_failed_destroy_in_a_terminating_namespace_releases_the_finalizer(env):
    kube, engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    kube.terminating = {NS}
    engine.failures = [FakeResult("destroy", "failed", message="forbidden: being terminated")]
    result = reconciler.reconcile(KEY)
    assert result.action == "destroy-skipped" and not result.failed
    assert FINALIZER not in kube.instances[KEY]["metadata"]["finalizers"]
    assert [e[1] for e in kube.events][-1] == "DestroySkipped"


def test_deleting_without_our_finalizer_does_nothing(env):
    kube, engine, reconciler, _ = env
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    assert reconciler.reconcile(KEY).action == "deleting"
    assert engine.calls == []


def test_gone_instance_is_nothing_to_do(env):
    kube, engine, reconciler, _ = env
    del kube.instances[KEY]
    assert reconciler.reconcile(KEY).action == "gone"
    assert engine.calls == [] and kube.events == []


def test_desired_hash_covers_manifests_secret_names_and_settings():
    template = Template.from_dict(seed("seed-template.yaml"))
    instance = Instance.from_dict(seed("seed-instance.yaml"))
    rendered = render(template, instance)
    base = desired_hash(rendered, {"jupyterhub.api_token"}, {"context": None})
    assert base == desired_hash(rendered, {"JupyterHub.API_Token"}, {"context": None})
    assert base != desired_hash(rendered, {"jupyterhub.api_token", "x"}, {"context": None})
    assert base != desired_hash(rendered, {"jupyterhub.api_token"}, {"context": "other"})
    changed = Instance.from_dict({**seed("seed-instance.yaml"), "spec": {
        **seed("seed-instance.yaml")["spec"],
        "variables": {**instance.variables, "jupyterhub.user.id": "9"}}})
    assert base != desired_hash(render(template, changed), {"jupyterhub.api_token"},
                                {"context": None})


def test_secret_values_are_case_insensitive_and_skip_empty():
    instance = Instance.from_dict(seed("seed-instance.yaml"))
    assert secret_values(instance, {"JUPYTERHUB.API_TOKEN"}) == frozenset(
        {"852dc4bd4e4e4360b7ae94cffa4f1c76"})
    assert secret_values(instance, {"missing"}) == frozenset()


# ---- event handlers of the operator (which events queue which instance) -----------------------


def operator_with(instances: list[dict]):
    from jupyternetes.controller.controller import Operator

    op = Operator(kube=None, engine=EngineRecorder(), workers=1)  # type: ignore[arg-type]
    for obj in instances:
        op.instance_watchers[0]._cache[f"{obj['metadata']['namespace']}/"
                                       f"{obj['metadata']['name']}"] = obj
    return op


def drain(queue) -> list[str]:
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def test_status_only_updates_do_not_requeue_but_spec_changes_do():
    inst = seed("seed-instance.yaml")
    op = operator_with([inst])
    op.on_instance("ADDED", inst)
    assert drain(op.queue) == [KEY]
    status_only = copy.deepcopy(inst)
    status_only["status"] = {"podsProvisioned": "Completed"}
    op.on_instance("MODIFIED", status_only)
    assert drain(op.queue) == []
    spec_change = copy.deepcopy(inst)
    spec_change["metadata"]["generation"] = 2
    op.on_instance("MODIFIED", spec_change)
    deleting = copy.deepcopy(spec_change)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    op.on_instance("MODIFIED", deleting)
    assert drain(op.queue) == [KEY]  # coalesced
    op.on_instance("RESYNC", deleting)
    assert drain(op.queue) == [KEY]
    # A key waiting for its backoff retry is not hurried by a resync.
    op.queue.add_after(KEY, 100.0)
    op.on_instance("RESYNC", deleting)
    assert drain(op.queue) == []


def managed_pod(instance_name: str, ns: str = NS) -> dict:
    return {"metadata": {"name": f"{instance_name}-notebook", "namespace": ns, "labels": {
        "jupyternetes.kadense.io/instance": instance_name,
        "jupyternetes.kadense.io/instanceNamespace": ns}}}


def test_pod_events_queue_the_instance_and_deletion_flags_drift():
    inst = seed("seed-instance.yaml")
    op = operator_with([inst])
    op.on_pod("MODIFIED", managed_pod(NAME))
    assert drain(op.queue) == [KEY]
    assert KEY not in op.drift
    op.on_pod("DELETED", managed_pod(NAME))
    assert drain(op.queue) == [KEY]
    assert KEY in op.drift


def test_pod_deleted_with_its_instance_is_not_drift():
    inst = seed("seed-instance.yaml")
    inst["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    op = operator_with([inst])
    op.on_pod("DELETED", managed_pod(NAME))
    assert KEY not in op.drift


def test_long_instance_names_are_found_through_their_hashed_label():
    from jupyternetes.crd.naming import label_value

    long_name = "a" * 70
    inst = seed("seed-instance.yaml")
    inst["metadata"]["name"] = long_name
    op = operator_with([inst])
    pod = managed_pod(long_name)
    pod["metadata"]["labels"]["jupyternetes.kadense.io/instance"] = label_value(long_name)
    assert op.instance_key_of_pod(pod) == f"{NS}/{long_name}"


def test_worker_backs_off_failures_jumps_to_cap_when_degraded_and_forgets_on_success():
    from jupyternetes.controller.controller import Operator
    from jupyternetes.controller.edges import Result
    from jupyternetes.controller.queue import Backoff, WorkQueue

    op = Operator(kube=None, engine=EngineRecorder(), workers=1,  # type: ignore[arg-type]
                  backoff=Backoff(base=1.0, cap=60.0, jitter=0.0))
    results = [Result("up-failed", failed=True), Result("up-failed", failed=True),
               Result("up-failed", failed=True, degraded=True), Result("provisioned"),
               Result("template-missing", requeue_after=30.0)]
    seen_failures = []

    class Scripted:
        def reconcile(self, key, failures=0):
            seen_failures.append(failures)
            return results.pop(0)

    op.reconciler = Scripted()  # type: ignore[assignment]
    op.queue = WorkQueue(Backoff(base=1.0, cap=60.0, jitter=0.0), clock=lambda: 0.0)
    delays: list[float] = []
    schedule = op.queue.add_after
    op.queue.add_after = lambda key, delay: (delays.append(delay), schedule(key, delay))[1]
    limited = op.queue.add_rate_limited
    op.queue.add_rate_limited = lambda key, floor=0.0: (  # type: ignore[method-assign]
        delays.append(d := limited(key, floor)), d)[1]
    for _ in range(5):
        op.process(KEY)
    assert seen_failures == [0, 1, 2, 3, 0]
    assert op.queue.num_requeues(KEY) == 0
    # 1, 2, then the cap instead of 4 (Degraded), then the template retry's 30.
    assert delays == [1.0, 2.0, 60.0, 30.0]
    assert op.queue.waiting() == 1  # one pending retry per key, the earliest
    samples = op.metrics.exposition()[0].decode()
    assert 'jupyternetes_reconciles_total{result="up-failed"} 3.0' in samples


def test_a_ready_pod_from_before_a_replacement_does_not_make_the_instance_ready(env):
    kube, _engine, reconciler, pods = env
    reconciler.reconcile(KEY)
    pods[f"{NS}/{POD_NAME}"] = running_pod("old-uid", ready=True)
    reconciler.reconcile(KEY)
    assert kube.condition("Ready")["status"] == "True"
    kube.instances[KEY]["spec"]["variables"]["jupyterhub.user.id"] = "7"
    kube.instances[KEY]["metadata"]["generation"] = 2
    assert reconciler.reconcile(KEY).action == "provisioned"
    # The engine reported a new uid for the pod; the cache still holds the old, ready one.
    assert kube.condition("Ready")["status"] == "False"
    assert "missing" in kube.condition("Ready")["message"]


# ---- template rollout (--template-rollout) ---------------------------------------------------

TEMPLATE_KEY = "kadense/default-template"


def edit_template(kube: KubeRecorder, value: str = "/custom/", generation: int = 5) -> None:
    """What `kubectl edit jnt` does: change the spec, the apiserver bumps the generation."""
    tpl = kube.templates[TEMPLATE_KEY]
    env = tpl["spec"]["pods"][0]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "JUPYTERHUB_BASE_URL")["value"] = value
    tpl["metadata"]["generation"] = generation


def running(env) -> tuple:
    """The seed instance up and its pod running (the cache has it)."""
    kube, engine, reconciler, pods = env
    assert reconciler.reconcile(KEY).action == "provisioned"
    pods[f"{NS}/{POD_NAME}"] = running_pod("p1")
    assert reconciler.reconcile(KEY).action == "unchanged"
    return kube, engine, reconciler, pods


def with_rollout(env, rollout: str):
    reconciler = env[2]
    reconciler.config = ReconcileConfig(degraded_after=3, template_rollout=rollout)
    return env


def test_first_up_records_the_template_generation_and_template_current(env):
    kube, _engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    assert kube.status["stack"]["templateGeneration"] == 4
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "True" and cond["reason"] == "TemplateApplied"
    assert "kadense/default-template generation 4" in cond["message"]


def test_next_start_leaves_a_running_server_alone_when_its_template_changes(env):
    kube, engine, reconciler, _ = running(env)
    hash_before = kube.status["stack"]["desiredHash"]
    events_before = len(kube.events)
    edit_template(kube)
    result = reconciler.reconcile(KEY)
    assert result.action == "template-pending" and not result.failed
    assert len(engine.ups()) == 1  # no engine call: the kernel survives
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "False" and cond["reason"] == "TemplateChanged"
    assert "kadense/default-template" in cond["message"]
    assert "generation 5" in cond["message"] and "generation 4" in cond["message"]
    assert f"jupyternetes preview {KEY}" in cond["message"]
    assert "restart" in cond["message"]
    # The server is still what it was: provisioned, ready, same hash and template generation.
    assert kube.condition("Provisioned")["status"] == "True"
    assert kube.condition("Ready")["status"] == "True"
    assert kube.status["stack"]["desiredHash"] == hash_before
    assert kube.status["stack"]["templateGeneration"] == 4
    assert kube.events[events_before:] == [("Normal", "TemplateChanged", cond["message"])]
    # Resyncs and pod events: no Event again, no status patch, no engine.
    patches = len(kube.status_patches)
    for _ in range(3):
        assert reconciler.reconcile(KEY).action == "template-pending"
    assert len(kube.events) == events_before + 1
    assert len(kube.status_patches) == patches
    assert len(engine.ups()) == 1
    # A second edit is news again.
    edit_template(kube, "/other/", generation=6)
    reconciler.reconcile(KEY)
    assert "generation 6" in kube.condition("TemplateCurrent")["message"]
    assert len(kube.events) == events_before + 2 and len(engine.ups()) == 1


def test_next_start_template_current_again_when_the_render_matches_again(env):
    kube, engine, reconciler, _ = running(env)
    edit_template(kube)
    reconciler.reconcile(KEY)
    assert kube.condition("TemplateCurrent")["status"] == "False"
    edit_template(kube, "/", generation=6)  # reverted
    assert reconciler.reconcile(KEY).action == "unchanged"
    assert kube.condition("TemplateCurrent")["status"] == "True"
    assert len(engine.ups()) == 1


def test_next_start_a_spec_change_renders_against_the_current_template(env):
    kube, engine, reconciler, _ = running(env)
    edit_template(kube)
    reconciler.reconcile(KEY)
    kube.instances[KEY]["spec"]["variables"]["jupyterhub.user.id"] = "2"
    kube.instances[KEY]["metadata"]["generation"] = 2
    assert reconciler.reconcile(KEY).action == "provisioned"
    rendered = engine.ups()[-1][3]
    pod = next(o for o in rendered.objects() if o.kind == "Pod").manifest
    env_values = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env_values["JUPYTERHUB_BASE_URL"] == "/custom/"
    assert kube.status["stack"]["templateGeneration"] == 5
    assert kube.condition("TemplateCurrent")["status"] == "True"


def test_next_start_a_restart_after_drift_uses_the_current_template(env):
    kube, engine, reconciler, pods = running(env)
    edit_template(kube)
    reconciler.reconcile(KEY)
    del pods[f"{NS}/{POD_NAME}"]  # the pod is gone: the server restarts anyway
    kube.pods.pop(f"{NS}/{POD_NAME}", None)
    reconciler.drift.flag(KEY)
    assert reconciler.reconcile(KEY).action == "provisioned"
    up = engine.ups()[-1]
    assert up[5] is True  # refresh
    pod = next(o for o in up[3].objects() if o.kind == "Pod").manifest
    assert {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}[
        "JUPYTERHUB_BASE_URL"] == "/custom/"
    assert kube.status["stack"]["templateGeneration"] == 5
    assert kube.condition("TemplateCurrent")["status"] == "True"


def test_immediate_rollout_applies_a_template_edit_at_once(env):
    kube, engine, reconciler, _ = running(with_rollout(env, "immediate"))
    edit_template(kube)
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert len(engine.ups()) == 2
    assert engine.ups()[-1][5] is False
    assert kube.status["stack"]["templateGeneration"] == 5
    assert kube.condition("TemplateCurrent")["status"] == "True"
    assert not [e for e in kube.events if e[1] == "TemplateChanged"]


def test_unknown_rollout_is_refused():
    with pytest.raises(ValueError, match="next-start, immediate"):
        ReconcileConfig(template_rollout="sometimes")


def test_next_start_settings_change_is_reported_as_such(env):
    kube, engine, reconciler, _ = running(env)
    reconciler.config = ReconcileConfig(settings_fingerprint={"context": "other"})
    assert reconciler.reconcile(KEY).action == "template-pending"
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "False" and cond["reason"] == "SettingsChanged"
    assert len(engine.ups()) == 1


def test_deleted_template_keeps_a_running_server_and_says_so(env):
    kube, engine, reconciler, pods = running(env)
    kube.templates.clear()
    result = reconciler.reconcile(KEY)
    assert result.action == "template-gone" and result.requeue_after == 30.0
    assert len(engine.ups()) == 1 and not [c for c in engine.calls if c[0] == "destroy"]
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "False" and cond["reason"] == "TemplateNotFound"
    assert "kadense/default-template" in cond["message"] and "deleted" in cond["message"]
    assert kube.condition("Provisioned")["status"] == "True"
    assert kube.condition("Ready")["status"] == "True"
    assert kube.status["podsProvisioned"] == "Completed"
    assert [e[:2] for e in kube.events if e[1] == "TemplateNotFound"] == [
        ("Warning", "TemplateNotFound")]
    reconciler.reconcile(KEY)
    assert len([e for e in kube.events if e[1] == "TemplateNotFound"]) == 1
    # Pod status is still mirrored from what the stack made.
    pods[f"{NS}/{POD_NAME}"] = running_pod("p1", ready=False)
    reconciler.reconcile(KEY)
    assert kube.condition("Ready")["status"] == "False"
    # And deleting the instance still destroys the stack.
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:09Z"
    assert reconciler.reconcile(KEY).action == "destroyed"


def test_next_start_a_broken_template_edit_does_not_fail_a_running_server(env):
    kube, engine, reconciler, _ = running(env)
    tpl = kube.templates[TEMPLATE_KEY]
    tpl["spec"]["pods"][0]["labels"]["extra"] = "{not.a.variable}"
    tpl["metadata"]["generation"] = 5
    result = reconciler.reconcile(KEY)
    assert result.action == "template-invalid"
    assert len(engine.ups()) == 1
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "False" and cond["reason"] == "TemplateInvalid"
    assert "not.a.variable" in cond["message"]
    assert kube.condition("Provisioned")["status"] == "True"
    assert kube.status["podsProvisioned"] == "Completed"


def test_events_do_not_hurry_a_failing_instance_but_spec_template_and_retry_now_do():
    from jupyternetes.crd.labels import RETRY_NOW

    inst = seed("seed-instance.yaml")
    inst["metadata"].update(generation=1, annotations={})
    op = operator_with([inst])
    template_key = f"{inst['spec']['template']['namespace']}/{inst['spec']['template']['name']}"
    op.on_template("ADDED", {"metadata": {"namespace": template_key.split("/")[0],
                                          "name": template_key.split("/")[1], "generation": 1}})
    op.on_instance("ADDED", inst)
    assert drain(op.queue) == [KEY]
    op.queue.add_rate_limited(KEY)  # the up failed: a retry with backoff is scheduled
    assert op.queue.backing_off(KEY)

    op.on_pod("MODIFIED", managed_pod(NAME))
    op.on_pod("DELETED", managed_pod(NAME))
    op.on_instance("RESYNC", inst)
    op.on_instance("ADDED", inst)  # a relist
    with_finalizer = copy.deepcopy(inst)
    with_finalizer["metadata"]["finalizers"] = ["x"]
    op.on_instance("MODIFIED", with_finalizer)
    op.on_template("ADDED", {"metadata": {"namespace": template_key.split("/")[0],
                                          "name": template_key.split("/")[1], "generation": 1}})
    assert drain(op.queue) == []

    retry = copy.deepcopy(with_finalizer)
    retry["metadata"]["annotations"][RETRY_NOW] = "1"
    op.on_instance("MODIFIED", retry)
    assert drain(op.queue) == [KEY]
    op.on_instance("MODIFIED", retry)  # the same value again is no new request
    assert drain(op.queue) == []
    spec = copy.deepcopy(retry)
    spec["metadata"]["generation"] = 2
    op.on_instance("MODIFIED", spec)
    assert drain(op.queue) == [KEY]
    op.on_template("MODIFIED", {"metadata": {"namespace": template_key.split("/")[0],
                                             "name": template_key.split("/")[1],
                                             "generation": 2}})
    assert drain(op.queue) == [KEY]
