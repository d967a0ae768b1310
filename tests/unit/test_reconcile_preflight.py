"""Reconcile with the preflight checks (ownership, PVC changes) and status that tells the truth."""

from __future__ import annotations

from jupyternetes.crd.labels import (
    LABEL_ACCOUNT,
    LABEL_ENTRY,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
)
from jupyternetes.kube.errors import KubeError
from jupyternetes.policy.ownership import ADOPT_ANNOTATION
from tests.unit import test_reconcile_unit as base
from tests.unit.test_reconcile_unit import KEY, NAME, NS, POD_NAME, PVC_NAME, FakeResult

env = base.env
PVC = ("PersistentVolumeClaim", NS, PVC_NAME)


def claim(labels: dict | None = None, annotations: dict | None = None, **spec) -> dict:
    return {"kind": "PersistentVolumeClaim",
            "metadata": {"name": PVC_NAME, "namespace": NS, "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def ours(entry: str = "workspace") -> dict:
    return {LABEL_INSTANCE: NAME, LABEL_INSTANCE_NAMESPACE: NS, LABEL_ENTRY: entry}


def test_another_instances_claim_fails_the_instance_without_an_engine_call(env):
    kube, engine, reconciler, _ = env
    kube.objects[PVC] = claim({LABEL_INSTANCE: "someone", LABEL_INSTANCE_NAMESPACE: NS})
    result = reconciler.reconcile(KEY)
    assert result.action == "refused" and result.requeue_after
    assert engine.calls == []
    assert "add_finalizer" not in [c[0] for c in kube.calls]
    cond = kube.condition("Provisioned")
    assert cond["status"] == "False" and cond["reason"] == "OwnershipConflict"
    assert PVC_NAME in cond["message"] and f"{NS}/someone" in cond["message"]
    assert kube.status["pvcsProvisioned"] == "Failed"
    assert [e[:2] for e in kube.events] == [("Warning", "OwnershipConflict")]
    # Said once: a retry does not write or emit again.
    patches = len(kube.status_patches)
    reconciler.reconcile(KEY)
    assert len(kube.status_patches) == patches and len(kube.events) == 1


def test_an_unlabelled_claim_is_adopted_once_the_admin_annotates_it(env):
    kube, engine, reconciler, _ = env
    kube.objects[PVC] = claim()
    assert reconciler.reconcile(KEY).action == "refused"
    assert ADOPT_ANNOTATION in kube.condition("Provisioned")["message"]
    kube.objects[PVC] = claim(annotations={ADOPT_ANNOTATION: NAME})
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert len(engine.ups()) == 1


def test_the_instances_own_claim_is_adopted(env):
    kube, _engine, reconciler, _ = env
    kube.objects[PVC] = claim(ours())
    assert reconciler.reconcile(KEY).action == "provisioned"


def up_claim_spec(engine) -> dict:
    """The claim spec the last `up` was given."""
    rendered = engine.ups()[-1][3]
    return rendered.pvcs[0].manifest["spec"]


def test_an_immutable_claim_change_keeps_the_claim_and_says_so(env):
    kube, engine, reconciler, pods = env
    reconciler.config = base.ReconcileConfig(template_rollout="immediate")
    reconciler.reconcile(KEY)
    pods[f"{NS}/{POD_NAME}"] = base.running_pod("p1")
    kube.objects[PVC] = claim(ours(), storageClassName="standard")
    template = next(iter(kube.templates.values()))
    template["spec"]["pvcs"][0]["spec"]["storageClassName"] = "fast"
    template["metadata"]["generation"] += 1
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert len(engine.ups()) == 2
    assert up_claim_spec(engine)["storageClassName"] == "standard"  # nothing to replace
    cond = kube.condition("PVCsKept")
    assert cond["status"] == "True" and cond["reason"] == "ClaimKeptAsItIs"
    for part in ("storageClassName", "'standard'", "'fast'", PVC_NAME, "used as it is"):
        assert part in cond["message"], (part, cond["message"])
    assert kube.condition("TemplateCurrent")["status"] == "True"
    # The template back as the claim is: the condition says so.
    template["spec"]["pvcs"][0]["spec"]["storageClassName"] = "standard"
    template["metadata"]["generation"] += 1
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert kube.condition("PVCsKept")["status"] == "False"


def test_a_claim_larger_than_the_template_is_used_as_it_is(env):
    """An admin grew it (kubectl patch), or it was migrated in larger: never shrunk."""
    kube, engine, reconciler, _ = env
    kube.objects[PVC] = claim(ours(), resources={"requests": {"storage": "5Gi"}})
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert up_claim_spec(engine)["resources"]["requests"]["storage"] == "5Gi"
    cond = kube.condition("PVCsKept")
    assert cond["status"] == "True" and "5Gi" in cond["message"], cond


def test_an_instance_without_differing_claims_gets_no_pvcs_kept_condition(env):
    kube, _engine, reconciler, _ = env
    kube.objects[PVC] = claim(ours())
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert "PVCsKept" not in [c["type"] for c in kube.status.get("conditions", [])]


def test_an_earlier_accounts_claim_fails_the_namesakes_instance(env):
    kube, engine, reconciler, _ = env
    inst = next(iter(kube.instances.values()))
    inst["metadata"].setdefault("labels", {})[LABEL_ACCOUNT] = "acc-new"
    kube.objects[PVC] = claim({**ours(), LABEL_ACCOUNT: "acc-old"})
    assert reconciler.reconcile(KEY).action == "refused"
    assert engine.calls == []
    cond = kube.condition("Provisioned")
    assert cond["status"] == "False" and cond["reason"] == "OwnershipConflict"
    assert "another account of the same name" in cond["message"]


def test_a_claim_from_before_accounts_is_adopted_and_labelled(env):
    kube, engine, reconciler, _ = env
    inst = next(iter(kube.instances.values()))
    inst["metadata"].setdefault("labels", {})[LABEL_ACCOUNT] = "acc"
    kube.objects[PVC] = claim(ours())
    assert reconciler.reconcile(KEY).action == "provisioned"
    rendered = engine.ups()[-1][3]
    assert {o.manifest["metadata"]["labels"][LABEL_ACCOUNT] for o in rendered.objects()} == {
        "acc"}


def test_a_claim_the_template_no_longer_has_is_listed_as_retained(env):
    kube, _engine, reconciler, _ = env
    reconciler.config = base.ReconcileConfig(template_rollout="immediate")
    reconciler.reconcile(KEY)
    kube.objects[PVC] = claim(ours())
    template = next(iter(kube.templates.values()))
    template["spec"]["pvcs"][0]["name"] = "home"
    volume = template["spec"]["pods"][0]["spec"]["volumes"][0]
    volume["persistentVolumeClaim"]["claimName"] = "{jupyternetes.pvcs.home}"
    template["metadata"]["generation"] += 1
    assert reconciler.reconcile(KEY).action == "provisioned"
    retained = kube.status["retainedPvcs"]
    assert [(r["name"], r["entry"]) for r in retained] == [(PVC_NAME, "workspace")]
    assert "workspace" not in kube.status["pvcs"]
    # Deleted by the admin: no longer listed.
    del kube.objects[PVC]
    template["metadata"]["generation"] += 1
    template["spec"]["pods"][0]["spec"]["containers"][0]["image"] = "other"
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert "retainedPvcs" not in kube.status


def test_a_failed_rollout_is_not_template_current_and_shows_its_own_figures(env):
    kube, engine, reconciler, _ = env
    reconciler.config = base.ReconcileConfig(template_rollout="immediate")
    reconciler.reconcile(KEY)
    assert kube.condition("TemplateCurrent")["status"] == "True"
    assert kube.status["stack"]["lastUpdate"]["changeSummary"] == {"create": 2}
    template = next(iter(kube.templates.values()))
    template["spec"]["pods"][0]["spec"]["containers"][0]["image"] = "other"
    template["metadata"]["generation"] += 1
    engine.failures.append(FakeResult("up", "failed", message="boom", started_at=None))
    result = reconciler.reconcile(KEY)
    assert result.failed
    cond = kube.condition("TemplateCurrent")
    assert cond["status"] == "False" and cond["reason"] == "UpdateFailed"
    assert f"generation {template['metadata']['generation']}" in cond["message"]
    update = kube.status["stack"]["lastUpdate"]
    assert update["result"] == "failed"
    assert update["changeSummary"] == {}
    assert "startedAt" not in update  # the failed update did not report one
    # The retry that succeeds makes it current again.
    assert reconciler.reconcile(KEY, failures=1).action == "provisioned"
    assert kube.condition("TemplateCurrent")["status"] == "True"


def test_a_forbidden_read_is_a_refusal_naming_the_permission(env):
    kube, engine, reconciler, _ = env

    def forbidden(api_version, kind, namespace, name):
        raise KubeError(403, f'{kind.lower()}s "{name}" is forbidden', f"get {kind}")
    kube.get_object = forbidden
    assert reconciler.reconcile(KEY).action == "refused"
    assert engine.calls == []
    cond = kube.condition("Provisioned")
    assert cond["reason"] == "PreflightForbidden" and "forbidden" in cond["message"]
    assert "grant it get" in cond["message"]
