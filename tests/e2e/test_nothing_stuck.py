# ruff: noqa: F811  (the shared fixtures are imported from test_operator by name)
"""End to end, issue 9 "Nothing shared, nothing stuck, nothing lost": backoff and deletion.

The operator runs as a subprocess against the harness's apiserver (with the real namespace and
garbage collector controllers of kube-controller-manager) and the real Pulumi engine, as in
test_operator.py, whose fixtures these tests share.

- Backoff means backoff: a failing instance whose pod changes every second costs no more
  engine operations than its backoff allows (counted on /metrics); `retry-now` ends the wait.
- Deletion always ends: a destroy that cannot succeed (another live process holds the stack's
  lock in the backend: the Pulumi CLI refuses to touch a locked stack) is reported after a
  bounded number of attempts, and the `force-delete` annotation releases it (pods deleted,
  PVC kept); a namespace with running instances deletes within a minute; pods carry an
  ownerReference to their instance, and so does every other object a stack makes but PVCs
  (a force-delete leaves no Service/ConfigMap/Role/RoleBinding behind); a stack whose instance
  vanished while the operator was stopped is destroyed at the next start.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client

from harness.examples import load_example, strip_server_fields
from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.model import Instance, Template
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine import PROJECT, StackEngine, StackSettings
from jupyternetes.engine.state import statedirs
from jupyternetes.render.objects import render
from tests.e2e.test_operator import (  # noqa: F401
    HUB_NAMESPACE,
    condition,
    hub,
    provisioned,
    ready,
    start_operator,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.e2e

RETRY_NOW = "jupyternetes.kadense.io/retry-now"
FORCE_DELETE = "jupyternetes.kadense.io/force-delete"


def annotate(hub, ns: str, name: str, key: str, value: str) -> None:
    hub.custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, INSTANCE_PLURAL, name, {"metadata": {"annotations": {key: value}}},
        _content_type="application/merge-patch+json")


def failing_template(hub, namespace: str) -> str:
    """A pod the apiserver accepts, then a ConfigMap it rejects (invalid key): every `up`
    creates/keeps the pod and fails on the ConfigMap."""
    name = f"failing-{namespace}"[:63]
    body = {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
            "metadata": {"name": name, "namespace": HUB_NAMESPACE},
            "spec": {
                "allowedNamespaces": [namespace],
                "pods": [{"name": "notebook", "spec": {"containers": [{
                    "name": "notebook", "image": "quay.io/jupyter/base-notebook",
                    "ports": [{"containerPort": 8888}]}]}}],
                "otherResources": [{"name": "broken", "apiVersion": "v1", "kind": "ConfigMap",
                                    "data": {"not a valid key!": "x"}}]}}
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    return name


def engine_ops(op) -> float:
    return op.metrics().engine_operations


# ---- 1. backoff means backoff -----------------------------------------------------------------


def test_degraded_instance_engine_operations_follow_the_backoff_while_its_pod_changes(
        hub, namespace, start_operator):
    ns, name = namespace, "flaky"
    cap, window = 20.0, 45.0
    template = failing_template(hub, ns)
    try:
        op = start_operator([ns], extra=("--backoff-base", "0.5", "--backoff-cap", f"{cap:g}",
                                         "--degraded-after", "3",
                                         "--other-resource-kind", "configmaps"))
        hub.create_instance(ns, name, variables={}, template=template)
        wait_for("Degraded", lambda: condition(hub.instance(ns, name), "Degraded").get(
            "status") == "True", timeout=240,
            describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
        pod_name = f"{name}-notebook"
        wait_for("its pod", lambda: hub.pod(ns, pod_name))
        assert "not a valid key!" in condition(hub.instance(ns, name), "Degraded")["message"]

        # The pod changes every second (as status updates of a crash-looping pod would).
        stop = threading.Event()
        patches = [0]

        def touch() -> None:
            while not stop.wait(1.0):
                try:
                    hub.core.patch_namespaced_pod(pod_name, ns, {"metadata": {"annotations": {
                        "e2e.jupyternetes/touched": str(patches[0])}}})
                    patches[0] += 1
                except client.ApiException:
                    pass  # replaced by an `up` right now; the next patch lands
        toucher = threading.Thread(target=touch, daemon=True)
        before, started = engine_ops(op), time.monotonic()
        toucher.start()
        try:
            time.sleep(window)  # the measurement window itself, not a wait for a condition
        finally:
            stop.set()
            toucher.join(5)
        ops = engine_ops(op) - before
        elapsed = time.monotonic() - started
        # Degraded: one attempt per `cap` seconds (the floor; jitter only lengthens it), plus
        # the one that may have been due as the window opened.
        allowed = int(elapsed // cap) + 1
        print(f"\n{patches[0]} pod patches in {elapsed:.0f}s: {ops:.0f} engine operations "
              f"(backoff cap {cap:g}s allows {allowed})")
        assert patches[0] >= window / 2, "the pod was not changed often enough to count"
        assert ops <= allowed, (f"{ops:.0f} engine operations in {elapsed:.0f}s, the backoff "
                                f"allows {allowed}\n{op.log_tail(40)}")

        # retry-now ends the wait: right after an attempt, the next one comes at once, not
        # `cap` seconds later.
        count = engine_ops(op)
        wait_for("an attempt", lambda: engine_ops(op) > count, timeout=cap * 1.5)
        count, asked = engine_ops(op), time.monotonic()
        annotate(hub, ns, name, RETRY_NOW, "1")
        wait_for("the attempt retry-now asked for", lambda: engine_ops(op) > count,
                 timeout=cap * 1.5)
        waited = time.monotonic() - asked
        print(f"retry-now: next attempt after {waited:.1f}s (backoff {cap:g}s)")
        assert waited < cap * 0.6, f"retry-now did not hurry the retry ({waited:.1f}s)"
    finally:
        hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   template)


# ---- 2. deletion always ends ------------------------------------------------------------------


def hold_stack_lock(backend_dir: Path, stack: str) -> Path:
    """A lock file of the file backend held by a live process on this host (the test itself),
    as a running `pulumi` of another operator replica would hold it: the CLI refuses to update,
    destroy or refresh the stack while it exists, and the operator's stale-lock clean-up must
    leave it alone (its holder is alive)."""
    folder = (statedirs.stack_dir(backend_dir, PROJECT, stack) / ".pulumi" / "locks"
              / "organization" / PROJECT / stack)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4()}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "username": "e2e",
                                "hostname": socket.gethostname(),
                                "timestamp": "2026-01-01T00:00:00Z"}))
    return path


@pytest.fixture
def stack_locks():
    """hold_stack_lock, with every lock released at teardown, before start_operator's (list
    this fixture after it): a failed test must not leave an instance stuck on its lock."""
    held: list[Path] = []

    def hold(backend_dir: Path, stack: str) -> Path:
        held.append(hold_stack_lock(backend_dir, stack))
        return held[-1]

    yield hold
    for path in held:
        path.unlink(missing_ok=True)


def owner_of(pod: dict) -> dict:
    refs = pod["metadata"].get("ownerReferences") or []
    assert len(refs) == 1, refs
    return refs[0]


def test_stuck_destroy_is_reported_and_force_delete_releases_it_keeping_the_pvc(
        hub, namespace, volumes, start_operator, stack_locks):
    ns, name = namespace, "stuck"
    volumes.provide(ns, name)
    op = start_operator([ns], extra=("--degraded-after", "3"))
    hub.create_instance(ns, name)
    wait_for("Completed", provisioned(hub, ns, name),
             describe=lambda: hub.describe(ns, name) + op.log_tail())
    wait_for("pod", lambda: hub.pod(ns, f"{name}-notebook"))
    pvc_uid = hub.core.read_namespaced_persistent_volume_claim(f"{name}-workspace",
                                                               ns).metadata.uid

    lock = stack_locks(op.backend_dir, stack_name(ns, name))
    hub.delete_instance(ns, name)
    deleted = time.monotonic()
    event = hub.wait_event(ns, name, "Warning", "DestroyStuck", FORCE_DELETE)
    stuck = hub.instance(ns, name)
    print(f"\ndestroy stuck reported after {time.monotonic() - deleted:.1f}s: {event[2]}")
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp")
    cond = condition(stuck, "Degraded")
    assert cond.get("reason") == "DestroyStuck" and FORCE_DELETE in cond["message"], cond
    assert "locked" in cond["message"], cond  # the engine's own reason
    assert hub.pods(ns, name), "nothing is deleted behind the admin's back"

    annotate(hub, ns, name, FORCE_DELETE, "true")
    forced = time.monotonic()
    wait_for("instance gone", lambda: hub.instance(ns, name) is None, timeout=60,
             describe=lambda: hub.describe(ns, name) + op.log_tail())
    wait_for("its pods gone", lambda: not hub.pods(ns, name), timeout=60)
    print(f"force-delete: instance and pods gone in {time.monotonic() - forced:.1f}s")
    pvcs = hub.pvcs(ns, name)
    assert [p["metadata"]["uid"] for p in pvcs] == [pvc_uid]
    assert pvcs[0]["metadata"].get("deletionTimestamp") is None
    assert any(e[1] == "ForceDeleted" for e in hub.events(ns, name)), hub.events(ns, name)

    # The lock's holder goes away; the stack left behind is not resurrected: a new server of
    # the same name gets a pod again (its first up refreshes what the old state claims).
    lock.unlink()
    hub.create_instance(ns, name)
    wait_for("a new pod for the same name", lambda: hub.pods(ns, name),
             describe=lambda: hub.describe(ns, name) + op.log_tail())
    wait_for("Completed", provisioned(hub, ns, name), describe=lambda: hub.describe(ns, name))
    assert [p["metadata"]["uid"] for p in hub.pvcs(ns, name)] == [pvc_uid]

    # And the namespace goes away.
    hub.core.delete_namespace(ns)
    wait_for("namespace gone", lambda: not namespace_exists(hub, ns), timeout=60,
             describe=lambda: hub.describe(ns, name) + op.log_tail())


def namespace_exists(hub, ns: str) -> bool:
    try:
        hub.core.read_namespace(ns)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_namespace_with_three_running_instances_deletes_within_a_minute(
        hub, namespace, volumes, start_operator, stack_locks):
    """One of the three stacks cannot be destroyed (locked by a live process): the namespace
    still goes within a minute, and that stack is collected as an orphan once it can be."""
    ns, names = namespace, ["ns-a", "ns-b", "ns-c"]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=3, extra=("--orphan-check-seconds", "5"))
    for name in names:
        hub.create_instance(ns, name)
    for name in names:
        inst = wait_for(f"{name} Ready", ready(hub, ns, name),
                        describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
        # Every managed pod is owned by its instance (Kubernetes' garbage collector removes
        # it should the finalizer be stripped by hand).
        ref = owner_of(hub.pod(ns, f"{name}-notebook"))
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"]) == (
            API_VERSION, INSTANCE_KIND, name, inst["metadata"]["uid"])
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is False
        assert not hub.pvcs(ns, name)[0]["metadata"].get("ownerReferences")
    stacks_before = [p for p in op.stack_files() if p.name.startswith(f"{ns}.")]
    assert len(stacks_before) == 3
    lock = stack_locks(op.backend_dir, stack_name(ns, names[0]))

    started = time.monotonic()
    hub.core.delete_namespace(ns)
    wait_for("namespace gone", lambda: not namespace_exists(hub, ns), timeout=60,
             describe=lambda: "\n".join(hub.describe(ns, n) for n in names) + op.log_tail())
    print(f"\nnamespace with 3 running instances (one stack locked) deleted in "
          f"{time.monotonic() - started:.1f}s")
    wait_for("the unlocked stacks destroyed", lambda: [
        p.name for p in op.stack_files() if p.name.startswith(f"{ns}.")] == [
        f"{stack_name(ns, names[0])}.json"], timeout=60, describe=op.log_tail)
    lock.unlink()  # its holder is done: the stack left behind goes as an orphan
    wait_for("the locked stack collected", lambda: not [
        p for p in op.stack_files() if p.name.startswith(f"{ns}.")], timeout=60,
        describe=op.log_tail)


def test_orphaned_stack_is_destroyed_at_the_next_start_and_the_pvc_kept(
        hub, namespace, volumes, start_operator):
    ns, gone, kept = namespace, "orphan", "keeper"
    for name in (gone, kept):
        volumes.provide(ns, name)
    op = start_operator([ns])
    for name in (gone, kept):
        hub.create_instance(ns, name)
    for name in (gone, kept):
        wait_for(f"{name} Completed", provisioned(hub, ns, name),
                 describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
    kept_pod = wait_for("keeper pod", lambda: hub.pod(ns, f"{kept}-notebook"))
    pvc_uid = hub.core.read_namespaced_persistent_volume_claim(f"{gone}-workspace",
                                                               ns).metadata.uid
    assert op.terminate() == 0

    # The operator is stopped: the instance goes away with its finalizer stripped by hand.
    hub.custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, INSTANCE_PLURAL, gone, {"metadata": {"finalizers": None}},
        _content_type="application/merge-patch+json")
    hub.delete_instance(ns, gone)
    wait_for("instance gone", lambda: hub.instance(ns, gone) is None, timeout=30)
    assert [p for p in op.stack_files() if p.name.startswith(stack_name(ns, gone) + ".json")]

    op.start()
    wait_for("the orphaned stack destroyed", lambda: not [
        p for p in op.stack_files() if p.name.startswith(stack_name(ns, gone) + ".json")],
        timeout=120, describe=op.log_tail)
    wait_for("its pod gone", lambda: not hub.pods(ns, gone), timeout=60)
    assert [p["metadata"]["uid"] for p in hub.pvcs(ns, gone)] == [pvc_uid]
    assert "orphan" in op.log_tail(200)
    # The other instance's stack and pod are untouched.
    assert [p for p in op.stack_files() if p.name.startswith(stack_name(ns, kept) + ".json")]
    assert hub.pod(ns, f"{kept}-notebook")["metadata"]["uid"] == kept_pod["metadata"]["uid"]


def test_a_pod_made_without_owner_reference_gets_it_in_place_at_the_next_up(
        cluster, hub, namespace, volumes, pulumi_env, start_operator):
    """An older operator made the pod (no ownerReference); the next `up` adds it as a
    metadata-only change: same pod (uid), not a replacement."""
    ns, name = namespace, "upgrade"
    volumes.provide(ns, name)
    created = hub.create_instance(ns, name)
    tpl = hub.custom.get_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                  "default-template")
    old = Instance.from_dict(strip_server_fields(created))  # no uid: renders as before
    assert old.uid is None
    rendered = render(Template.from_dict(tpl), old)
    assert "ownerReferences" not in rendered.pods[0].manifest["metadata"]
    engine = StackEngine(StackSettings(
        backend_url=pulumi_env.backend_url, passphrase=pulumi_env.passphrase,
        kubeconfig=str(cluster.kubeconfig), context=None,
        pulumi_home=str(pulumi_env.pulumi_home)), env=pulumi_env.env, timeout=300)
    try:
        result = engine.up(ns, name, rendered, {old.variables["jupyterhub.api_token"]})
    finally:
        engine.close()
    assert result.succeeded, result.message
    before = hub.pod(ns, f"{name}-notebook")
    assert not before["metadata"].get("ownerReferences")

    op = start_operator([ns])
    wait_for("ownerReference added", lambda: (hub.pod(ns, f"{name}-notebook") or {}).get(
        "metadata", {}).get("ownerReferences"), describe=lambda: hub.describe(ns, name)
        + op.log_tail())
    after = hub.pod(ns, f"{name}-notebook")
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the pod was replaced"
    assert owner_of(after)["uid"] == created["metadata"]["uid"]


# ---- leftovers (issue 19 item 5): everything but PVCs is owned by its instance ---------------


def template_with_other_resources(hub, namespace: str) -> str:
    """The seed template plus a Service, a ConfigMap, a Role and a RoleBinding."""
    name = f"extras-{namespace}"[:63]
    body = strip_server_fields(load_example("seed-template.yaml"))
    body["metadata"] = {"name": name, "namespace": HUB_NAMESPACE}
    body["spec"]["otherResources"] = [
        {"name": "svc", "apiVersion": "v1", "kind": "Service",
         "spec": {"selector": {LABEL_INSTANCE: "{jupyternetes.instance.name}"},
                  "ports": [{"port": 8888}]}},
        {"name": "settings", "apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}},
        {"name": "reader", "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
        {"name": "reader-binding", "apiVersion": "rbac.authorization.k8s.io/v1",
         "kind": "RoleBinding",
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "{jupyternetes.otherResources.reader}"},
         "subjects": [{"kind": "ServiceAccount", "name": "default",
                       "namespace": "{jupyternetes.instance.namespace}"}]}]
    body["spec"]["allowedNamespaces"] = [namespace]  # a template of the hub's namespace, shared
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    return name


def other_objects(hub, ns: str, name: str) -> dict[str, list]:
    """The instance's Services, ConfigMaps, Roles and RoleBindings, by kind."""
    rbac = client.RbacAuthorizationV1Api(hub.api)
    selector = f"{LABEL_INSTANCE}={name}"
    return {
        "Service": hub.core.list_namespaced_service(ns, label_selector=selector).items,
        "ConfigMap": hub.core.list_namespaced_config_map(ns, label_selector=selector).items,
        "Role": rbac.list_namespaced_role(ns, label_selector=selector).items,
        "RoleBinding": rbac.list_namespaced_role_binding(ns, label_selector=selector).items,
    }


def test_force_delete_leaves_no_service_configmap_or_rolebinding_behind(
        hub, namespace, volumes, start_operator, stack_locks):
    """Every object of the stack but the PVC carries a controller ownerReference to the
    instance: when the stack cannot be destroyed and the admin force-deletes, Kubernetes'
    garbage collector removes the Service, ConfigMap, Role and RoleBinding with the pods."""
    ns, name = namespace, "extras"
    volumes.provide(ns, name)
    template = template_with_other_resources(hub, ns)
    try:
        # The kinds the template makes are allowed, RBAC kinds opted into (trust model).
        op = start_operator([ns], extra=(
            "--degraded-after", "3", "--other-resource-kind", "services",
            "--other-resource-kind", "configmaps", "--other-resource-kind",
            "roles.rbac.authorization.k8s.io", "--other-resource-kind",
            "rolebindings.rbac.authorization.k8s.io", "--allow-rbac-kinds"))
        inst = hub.create_instance(ns, name, template=template)
        wait_for("Completed", provisioned(hub, ns, name),
                 describe=lambda: hub.describe(ns, name) + op.log_tail())
        made = other_objects(hub, ns, name)
        assert all(len(objs) == 1 for objs in made.values()), made
        for kind, (obj,) in made.items():
            refs = obj.metadata.owner_references or []
            assert [(r.kind, r.name, r.uid, r.controller) for r in refs] == [
                ("JupyterNotebookInstance", name, inst["metadata"]["uid"], True)], (kind, refs)
        pvc_uid = hub.pvcs(ns, name)[0]["metadata"]["uid"]
        assert not hub.pvcs(ns, name)[0]["metadata"].get("ownerReferences")

        lock = stack_locks(op.backend_dir, stack_name(ns, name))
        hub.delete_instance(ns, name)
        hub.wait_event(ns, name, "Warning", "DestroyStuck", FORCE_DELETE)
        annotate(hub, ns, name, FORCE_DELETE, "true")
        wait_for("instance gone", lambda: hub.instance(ns, name) is None, timeout=60,
                 describe=lambda: hub.describe(ns, name) + op.log_tail())
        # force-delete deletes the pods itself; the stack (locked) cannot remove the rest, and
        # the orphan collector runs again only in 10 minutes: this is the garbage collector.
        wait_for("Service, ConfigMap, Role and RoleBinding gone", lambda: not any(
            other_objects(hub, ns, name).values()), timeout=120,
            describe=lambda: str({k: [o.metadata.name for o in v]
                                  for k, v in other_objects(hub, ns, name).items()}))
        wait_for("its pods gone", lambda: not hub.pods(ns, name), timeout=60)
        assert [p["metadata"]["uid"] for p in hub.pvcs(ns, name)] == [pvc_uid]
        lock.unlink()
    finally:
        hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   template)


def configmap_template(hub, namespace: str) -> str:
    """One ConfigMap: the cheapest stack (no pod, no PVC), so an orphan round is all CLI time."""
    name = f"cm-only-{namespace}"[:63]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "JupyterNotebookTemplate",
            "metadata": {"name": name, "namespace": HUB_NAMESPACE},
            "spec": {"allowedNamespaces": [namespace],
                     "otherResources": [{"name": "settings", "apiVersion": "v1",
                                         "kind": "ConfigMap", "data": {"a": "b"}}]}}
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    return name


def configmap_done(hub, ns: str, name: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        inst = hub.instance(ns, name)
        if inst and condition(inst, "Provisioned").get("status") == "True" and (
                inst["status"].get("observedGeneration") == inst["metadata"]["generation"]):
            return inst
        return None
    return check


def test_orphan_collector_keeps_a_stack_whose_instance_came_back_during_the_round(
        hub, namespace, start_operator):
    """Four orphaned stacks; while the collector destroys the first, a user starts the last
    one's server again (same name). The collector listed the instances before that, but
    re-checks each stack right before destroying it: the new instance's stack and objects
    stay. (Before the re-check it destroyed that stack, or failed on its lock mid-`up`.)"""
    ns = namespace
    names = ["orph-a1", "orph-a2", "orph-a3", "orph-b"]
    template = configmap_template(hub, ns)
    try:
        op = start_operator([ns], extra=("--orphan-check-seconds", "0",
                                          "--other-resource-kind", "configmaps"))
        for name in names:
            hub.create_instance(ns, name, variables={}, template=template)
        for name in names:
            wait_for(f"{name} provisioned", configmap_done(hub, ns, name), timeout=240,
                     describe=lambda name=name: hub.describe(ns, name) + op.log_tail())
        assert op.terminate() == 0
        for name in names:  # gone while the operator was stopped: four orphaned stacks
            hub.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, INSTANCE_PLURAL, name, {"metadata": {"finalizers": None}},
                _content_type="application/merge-patch+json")
            hub.delete_instance(ns, name)
        wait_for("instances gone", lambda: not any(hub.instance(ns, n) for n in names))

        first, last = stack_name(ns, names[0]), stack_name(ns, names[-1])
        op.start()
        wait_for("the first orphan destroyed", lambda: f"destroyed orphaned stack {first}"
                 in op.log_text(), timeout=180, describe=op.log_tail)
        hub.create_instance(ns, names[-1], variables={}, template=template)
        wait_for("the round over", lambda: f"destroyed orphaned stack {stack_name(ns, names[2])}"
                 in op.log_text(), timeout=180, describe=op.log_tail)
        inst = wait_for("the new instance provisioned", configmap_done(hub, ns, names[-1]),
                        timeout=240, describe=lambda: hub.describe(ns, names[-1]) + op.log_tail())
        kept, taken = f"stack {last}: an instance names it again", f"orphaned stack {last}"
        wait_for("the collector's word on the last stack", lambda: any(
            t in op.log_text().split("===== start 2")[-1] for t in (kept, taken)),
            timeout=180, describe=op.log_tail)
        log_text = op.log_text().split("===== start 2")[-1]
        assert taken not in log_text and kept in log_text, op.log_tail(80)
        assert [p for p in op.stack_files() if p.name == f"{last}.json"]
        (cm,) = other_objects(hub, ns, names[-1])["ConfigMap"]
        assert cm.metadata.owner_references[0].uid == inst["metadata"]["uid"]
        assert not [p for p in op.stack_files()
                    if p.name in {f"{stack_name(ns, n)}.json" for n in names[:3]}]
    finally:
        hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   template)
