"""Create ahead (controller/createahead.py): a new server's claims and pods before its first up."""

from __future__ import annotations

import copy

from jupyternetes.controller import createahead
from jupyternetes.controller.reconcile import ReconcileConfig, Reconciler
from jupyternetes.crd.labels import LABEL_ACCOUNT, LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE
from jupyternetes.engine.applied import FIELD_MANAGER, applied_manifest
from jupyternetes.kube.errors import KubeError
from jupyternetes.render.objects import RenderedObject
from tests.unit import test_reconcile_unit as base
from tests.unit.test_reconcile_preflight import PVC, claim, ours
from tests.unit.test_reconcile_unit import KEY, NS, POD_NAME, PVC_NAME, FakeResult

env = base.env


def applies(kube) -> list[tuple]:
    return [c for c in kube.calls if c[0] == "apply"]


def seen_at_up(kube, engine) -> list[set[str]]:
    """Wrap the engine's up: which objects the cluster held when each up started."""
    snapshots: list[set[str]] = []
    real_up = engine.up

    def up(*args, **kwargs):
        snapshots.append({*kube.pods, *(f"{ns}/{name}" for _, ns, name in kube.objects)})
        return real_up(*args, **kwargs)

    engine.up = up
    return snapshots


def test_a_new_servers_claim_and_pod_exist_before_its_first_up(env):
    kube, engine, reconciler, _ = env
    snapshots = seen_at_up(kube, engine)
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert applies(kube) == [("apply", "PersistentVolumeClaim", NS, PVC_NAME, FIELD_MANAGER),
                             ("apply", "Pod", NS, POD_NAME, FIELD_MANAGER)]
    assert snapshots == [{f"{NS}/{PVC_NAME}", f"{NS}/{POD_NAME}"}]
    # Exactly what the stack's program declares (same annotations, field manager included).
    (_, _, _, rendered, _, _), = engine.ups()
    pod = next(o for o in rendered.objects() if o.kind == "Pod")
    assert kube.pods[f"{NS}/{POD_NAME}"] == applied_manifest("pods", pod.manifest)
    # After the finalizer and the Processing status: a crash right after leaves a
    # finalizer-held instance that the next reconcile takes over.
    names = [c[0] for c in kube.calls]
    assert names.index("add_finalizer") < names.index("apply")
    assert names.index("patch_status") < names.index("apply")


def test_only_the_first_up_creates_ahead(env):
    kube, engine, reconciler, _pods = env
    reconciler.reconcile(KEY)
    del kube.pods[f"{NS}/{POD_NAME}"]  # gone while the stack says it is there: drift
    reconciler.drift.flag(KEY)
    calls = len(applies(kube))
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert len(engine.ups()) == 2
    assert len(applies(kube)) == calls  # the engine alone repairs it


def test_an_existing_own_claim_is_left_to_the_up_and_the_pod_is_created(env):
    kube, _engine, reconciler, _ = env
    kube.objects[PVC] = claim(ours())
    before = copy.deepcopy(kube.objects[PVC])
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert applies(kube) == [("apply", "Pod", NS, POD_NAME, FIELD_MANAGER)]
    assert kube.objects[PVC] == before


def test_nothing_is_created_when_a_name_is_anothers(env):
    kube, engine, reconciler, _ = env
    kube.objects[PVC] = claim({LABEL_INSTANCE: "someone", LABEL_INSTANCE_NAMESPACE: NS})
    assert reconciler.reconcile(KEY).action == "refused"
    assert applies(kube) == [] and engine.calls == []


def test_nothing_is_created_over_another_accounts_claim(env):
    kube, engine, reconciler, _ = env
    # A later account of the same user name: the earlier account's home is not its own.
    kube.instances[KEY]["metadata"].setdefault("labels", {})[LABEL_ACCOUNT] = "acc-new"
    kube.objects[PVC] = claim({**ours(), LABEL_ACCOUNT: "acc-old"})
    assert reconciler.reconcile(KEY).action == "refused"
    assert applies(kube) == [] and engine.calls == []


def appearing_after_preflight(kube, where, obj) -> None:
    """`obj` shows up between the preflight's read and the create-ahead (at the finalizer)."""
    real = kube.add_finalizer

    def add_finalizer(*args, **kwargs):
        kube.objects[where] = obj
        return real(*args, **kwargs)

    kube.add_finalizer = add_finalizer


def test_a_claim_of_anothers_appearing_after_the_preflight_stops_the_create_ahead(env):
    kube, _engine, reconciler, _ = env
    foreign = claim({LABEL_INSTANCE: "someone", LABEL_INSTANCE_NAMESPACE: NS})
    appearing_after_preflight(kube, PVC, foreign)
    reconciler.reconcile(KEY)
    # Re-read right before the apply: neither its claim nor a pod mounting it is applied; the
    # up's create guard refuses it with the admin's message.
    assert applies(kube) == []
    assert kube.objects[PVC] == foreign
    assert f"{NS}/{POD_NAME}" not in kube.pods


def test_an_own_claim_appearing_after_the_preflight_is_left_as_it_is(env):
    kube, _engine, reconciler, _ = env
    own = claim(ours())
    appearing_after_preflight(kube, PVC, own)
    reconciler.reconcile(KEY)
    assert applies(kube) == [("apply", "Pod", NS, POD_NAME, FIELD_MANAGER)]
    assert kube.objects[PVC] == own


def test_a_pod_whose_claim_could_not_be_applied_is_left_to_the_up(env):
    kube, engine, reconciler, _ = env
    real = kube.apply_object

    def apply_object(manifest, field_manager):
        if manifest["kind"] == "PersistentVolumeClaim":
            raise KubeError(422, "PersistentVolumeClaim is invalid")
        return real(manifest, field_manager)

    kube.apply_object = apply_object
    assert reconciler.reconcile(KEY).action == "provisioned"  # the up still runs
    assert f"{NS}/{POD_NAME}" not in kube.pods
    assert len(engine.ups()) == 1


def test_no_create_ahead_while_other_instances_wait_for_a_worker(env):
    kube, engine, _, pods = env
    queued = [3]
    reconciler = Reconciler(kube, engine, ReconcileConfig(),
                            pod_lookup=lambda ns, name: pods.get(f"{ns}/{name}"),
                            clock=lambda: "2026-01-01T00:00:05Z", waiting=lambda: queued[0])
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert applies(kube) == []


def test_worth_it_is_the_first_up_of_an_idle_operator_only():
    assert createahead.worth_it(True, first_up=True, drift=False, waiting=0)
    assert not createahead.worth_it(False, first_up=True, drift=False, waiting=0)
    assert not createahead.worth_it(True, first_up=False, drift=False, waiting=0)
    assert not createahead.worth_it(True, first_up=True, drift=True, waiting=0)
    assert not createahead.worth_it(True, first_up=True, drift=False, waiting=1)


def test_create_ahead_can_be_turned_off(env):
    kube, engine, _, pods = env
    reconciler = Reconciler(kube, engine, ReconcileConfig(create_ahead=False),
                            pod_lookup=lambda ns, name: pods.get(f"{ns}/{name}"),
                            clock=lambda: "2026-01-01T00:00:05Z")
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert applies(kube) == []


def test_deleting_an_instance_whose_up_never_succeeded_deletes_its_pods(env):
    kube, engine, reconciler, _ = env
    engine.failures.append(FakeResult("up", "failed", message="provider crashed"))
    assert reconciler.reconcile(KEY).action == "up-failed"
    assert f"{NS}/{POD_NAME}" in kube.pods  # created ahead, not in the stack
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:09Z"
    assert reconciler.reconcile(KEY).action == "destroyed"
    deletes = [c for c in kube.calls if c[0] == "delete_pods"]
    assert len(deletes) == 1 and deletes[0][1] == NS
    assert f"jupyternetes.kadense.io/instance={KEY.split('/')[1]}" in deletes[0][2]
    assert "not in the stack deleted" in kube.events[-1][2]


def test_deleting_an_instance_whose_up_succeeded_leaves_pods_to_the_destroy(env):
    kube, _engine, reconciler, _ = env
    reconciler.reconcile(KEY)
    kube.instances[KEY]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:09Z"
    assert reconciler.reconcile(KEY).action == "destroyed"
    assert not [c for c in kube.calls if c[0] == "delete_pods"]


def obj(group: str, entry: str, kind: str, **extra) -> RenderedObject:
    return RenderedObject(group, entry, {"apiVersion": "v1", "kind": kind, "metadata": {
        "name": entry, "namespace": NS}, **extra})


def test_wanted_is_claims_then_pods_of_the_absent_only():
    from jupyternetes.render.objects import Rendered

    rendered = Rendered(pvcs=(obj("pvcs", "a", "PersistentVolumeClaim"),
                              obj("pvcs", "b", "PersistentVolumeClaim")),
                        pods=(obj("pods", "p", "Pod"),),
                        other_resources=(obj("otherResources", "s", "Service"),))
    absent = {("pods", "p"), ("pvcs", "b"), ("otherResources", "s")}
    assert [(o.group, o.entry) for o in createahead.wanted(rendered, absent)] == [
        ("pvcs", "b"), ("pods", "p")]


def test_the_body_has_no_nulls_and_the_engines_annotations():
    body = createahead.body(obj("pods", "p", "Pod", spec={
        "nodeSelector": None, "containers": [{"name": "c", "args": None, "env": []}]}))
    assert body["spec"] == {"containers": [{"name": "c", "env": []}]}
    assert body["metadata"]["annotations"]["pulumi.com/patchFieldManager"] == FIELD_MANAGER
