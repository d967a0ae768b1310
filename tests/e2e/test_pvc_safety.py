"""End to end: one user's claim never reaches another user, and template edits never lose one.

Same harness and operator subprocess as test_operator.py (its fixtures are reused). What is
checked is the cluster: the claim's uid, resourceVersion, labels, annotations and spec, and the
instance's status and Events.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from harness.examples import load_example, shared_template, strip_server_fields
from jupyternetes.crd.definitions import GROUP, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.naming import stack_name
from tests.e2e import test_operator as base
from tests.e2e.test_operator import (
    HUB_NAMESPACE,
    Cluster,
    condition,
    provisioned,
    wait_for,
)

pytestmark = pytest.mark.e2e

# The operator tests' fixtures (hub namespace and templates, static PVs, operator process).
hub, volumes, start_operator = base.hub, base.volumes, base.start_operator

MARKER = "e2e.jupyternetes.kadense.io/marker"


def seed_variant(pvc_entry: str, name: str, pvc_spec: dict | None = None) -> dict:
    """The seed template with its PVC entry renamed (and its spec replaced), the pod mounting it."""
    body = strip_server_fields(load_example("seed-template.yaml"))
    body["metadata"] = {"name": name, "namespace": HUB_NAMESPACE}
    body["spec"]["pvcs"][0]["name"] = pvc_entry
    if pvc_spec is not None:
        body["spec"]["pvcs"][0]["spec"] = pvc_spec
    volume = body["spec"]["pods"][0]["spec"]["volumes"][0]
    volume["persistentVolumeClaim"]["claimName"] = f"{{jupyternetes.pvcs.{pvc_entry}}}"
    return body


@contextlib.contextmanager
def templates(hub: Cluster, *bodies: dict) -> Iterator[list[str]]:
    for body in bodies:
        hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   shared_template(body))
    try:
        yield [b["metadata"]["name"] for b in bodies]
    finally:
        for body in bodies:
            with contextlib.suppress(client.ApiException):
                hub.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body["metadata"]["name"])


def edit_template(hub: Cluster, name: str, edit) -> int:
    updated = hub.edit_template(HUB_NAMESPACE, name, lambda tpl: edit(tpl["spec"]))
    return updated["metadata"]["generation"]


def claim(hub: Cluster, ns: str, name: str) -> dict | None:
    try:
        resp = hub.core.read_namespaced_persistent_volume_claim(name, ns, _preload_content=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(resp.data)


def pod(hub: Cluster, ns: str, name: str) -> dict | None:
    return hub.pod(ns, name)


def fingerprint(obj: dict) -> dict:
    """What must not change on another user's object: identity, version, metadata and spec."""
    meta = obj["metadata"]
    return {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
            "labels": meta.get("labels"), "annotations": meta.get("annotations"),
            "spec": obj.get("spec")}


def test_colliding_names_fail_the_second_instance_and_leave_the_first_alone(
        hub, namespace, volumes, start_operator):
    """`alice` + entry `data-home` and `alice-data` + entry `home` both name `alice-data-home`."""
    ns = namespace
    first = seed_variant("data-home", f"own-a-{ns}"[:63])
    second = seed_variant("home", f"own-b-{ns}"[:63])
    shared = "alice-data-home"
    with templates(hub, first, second) as (tpl_a, tpl_b):
        volumes.provide(ns, "alice", "data-home")
        op = start_operator([ns])
        hub.create_instance(ns, "alice", template=tpl_a)
        wait_for("alice Completed", provisioned(hub, ns, "alice"),
                 describe=lambda: hub.describe(ns, "alice") + op.log_tail())
        # alice's data: a marker on her claim (no volume plugin writes files in the harness).
        hub.core.patch_namespaced_persistent_volume_claim(
            shared, ns, {"metadata": {"annotations": {MARKER: "alice's data"}}})
        before_claim = fingerprint(claim(hub, ns, shared))
        before_pod = fingerprint(pod(hub, ns, "alice-notebook"))

        hub.create_instance(ns, "alice-data", template=tpl_b)
        inst = wait_for("alice-data decided", lambda: (lambda i: i if condition(
            i, "Provisioned").get("reason") not in (None, "", "Provisioning") else None)(
            hub.instance(ns, "alice-data")),
            describe=lambda: hub.describe(ns, "alice-data") + op.log_tail())
        cond = condition(inst, "Provisioned")
        assert cond["status"] == "False", hub.describe(ns, "alice-data")
        assert cond["reason"] == "OwnershipConflict", cond
        assert shared in cond["message"], cond["message"]
        assert f"instance {ns}/alice " in cond["message"], cond["message"]  # the owner
        assert "jupyternetes.kadense.io/adopt" not in cond["message"]  # owned: no opt-in offered
        assert inst["status"]["pvcsProvisioned"] == "Failed"
        hub.wait_event(ns, "alice-data", "Warning", "OwnershipConflict", shared)
        # No engine call touched it: no stack, no pod for the second instance.
        assert not [p for p in op.stack_files() if stack_name(ns, "alice-data") in p.name]
        assert hub.pods(ns, "alice-data") == []

        # Nothing of alice changed, even after a resync-worth of time.
        time.sleep(5)
        after = claim(hub, ns, shared)
        assert fingerprint(after) == before_claim
        assert after["metadata"]["annotations"][MARKER] == "alice's data"
        assert after["metadata"]["labels"]["jupyternetes.kadense.io/instance"] == "alice"
        assert fingerprint(pod(hub, ns, "alice-notebook")) == before_pod
        assert condition(hub.instance(ns, "alice"), "Provisioned")["status"] == "True"


@pytest.fixture
def expandable_class(hub) -> Iterator[str]:
    """A StorageClass that allows expansion (static volumes: no provisioner in the harness)."""
    storage = client.StorageV1Api(hub.api)
    name = f"e2e-expandable-{int(time.time() * 1000) % 10**9}"
    storage.create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name, "labels": {"jupyternetes.e2e/test": "true"}},
        "provisioner": "kubernetes.io/no-provisioner", "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate"})
    yield name
    with contextlib.suppress(client.ApiException):
        storage.delete_storage_class(name)


def provide_pv(hub: Cluster, volumes, ns: str, claim_name: str, storage_class: str) -> None:
    name = f"pv-{ns}-{claim_name}"[:253]
    hub.core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"jupyternetes.e2e/test": "true"}},
        "spec": {
            "capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
            "hostPath": {"path": f"/tmp/jupyternetes-e2e/{name}"},
            "claimRef": {"namespace": ns, "name": claim_name}}})
    volumes.names.append(name)


def test_template_edits_of_a_pvc_keep_the_users_claim(hub, namespace, volumes, start_operator,
                                                       expandable_class):
    ns, name = namespace, "keeper"
    spec = {"accessModes": ["ReadWriteOnce"], "storageClassName": expandable_class,
            "resources": {"requests": {"storage": "1Gi"}}}
    body = seed_variant("workspace", f"pvc-edit-{ns}"[:63], spec)
    original = f"{name}-workspace"
    provide_pv(hub, volumes, ns, original, expandable_class)
    provide_pv(hub, volumes, ns, f"{name}-home", expandable_class)
    op = start_operator([ns], extra=("--resync-seconds", "3600",
                                     "--template-rollout", "immediate"))
    with templates(hub, body) as (template,):
        hub.create_instance(ns, name, template=template)
        wait_for("Completed", provisioned(hub, ns, name),
                 describe=lambda: hub.describe(ns, name) + op.log_tail())
        bound = wait_for("the claim Bound", lambda: (lambda c: c if (c or {}).get(
            "status", {}).get("phase") == "Bound" else None)(claim(hub, ns, original)))
        uid = bound["metadata"]["uid"]

        def at_generation(gen: int):
            def check() -> dict | None:
                inst = provisioned(hub, ns, name)()
                stack = ((inst or {}).get("status") or {}).get("stack") or {}
                return inst if stack.get("templateGeneration") == gen else None
            return check

        def template_not_current():
            inst = hub.instance(ns, name)
            cond = condition(inst, "TemplateCurrent")
            if cond.get("status") == "False" or condition(inst, "Provisioned").get(
                    "status") == "False":
                return inst
            return None

        # 1. Size up: an expansion request on the same claim, the running pod left alone.
        pod_uid = hub.pod(ns, f"{name}-notebook")["metadata"]["uid"]

        def grow(spec: dict) -> None:
            spec["pvcs"][0]["spec"]["resources"]["requests"]["storage"] = "2Gi"
        gen = edit_template(hub, template, grow)
        inst = wait_for("the size change applied", at_generation(gen),
                        describe=lambda: hub.describe(ns, name) + op.log_tail())
        grown = claim(hub, ns, original)
        assert grown["metadata"]["uid"] == uid
        assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
        summary = inst["status"]["stack"]["lastUpdate"]["changeSummary"]
        assert summary.get("update") == 1 and not summary.get("replace"), summary
        assert hub.pod(ns, f"{name}-notebook")["metadata"]["uid"] == pod_uid
        hub.wait_event(ns, name, "Normal", "Provisioned", "expansion of PVC")

        # 2. An immutable field: the claim is used as it is, the condition names the field and
        #    both values; the template's other changes are applied, nothing replaced.
        def reclass(spec: dict) -> None:
            spec["pvcs"][0]["spec"]["storageClassName"] = "e2e-other"
        gen = edit_template(hub, template, reclass)
        inst = wait_for("the edit applied with the claim kept", at_generation(gen),
                        describe=lambda: hub.describe(ns, name) + op.log_tail())
        cond = condition(inst, "PVCsKept")
        assert cond.get("status") == "True", hub.describe(ns, name)
        assert cond.get("reason") == "ClaimKeptAsItIs", cond
        for text in ("storageClassName", expandable_class, "e2e-other", original):
            assert text in cond["message"], cond["message"]
        assert condition(inst, "TemplateCurrent")["status"] == "True"
        kept = claim(hub, ns, original)
        assert kept["metadata"]["uid"] == uid
        assert kept["spec"]["storageClassName"] == expandable_class
        summary = inst["status"]["stack"]["lastUpdate"]["changeSummary"]
        assert not summary.get("replace") and not summary.get("delete"), summary
        assert hub.pod(ns, f"{name}-notebook")["metadata"]["uid"] == pod_uid
        assert condition(inst, "Provisioned")["status"] == "True"  # the server still runs

        # 3. The entry renamed (class back as it was): a new claim; the old one kept and listed.
        def rename(spec: dict) -> None:
            spec["pvcs"][0]["spec"]["storageClassName"] = expandable_class
            spec["pvcs"][0]["name"] = "home"
            volume = spec["pods"][0]["spec"]["volumes"][0]
            volume["persistentVolumeClaim"]["claimName"] = "{jupyternetes.pvcs.home}"
        gen = edit_template(hub, template, rename)
        inst = wait_for("the rename applied", at_generation(gen),
                        describe=lambda: hub.describe(ns, name) + op.log_tail())
        assert claim(hub, ns, original)["metadata"]["uid"] == uid
        assert claim(hub, ns, f"{name}-home") is not None
        retained = inst["status"].get("retainedPvcs") or []
        assert [(r["name"], r["entry"]) for r in retained] == [(original, "workspace")], retained
        assert template in retained[0]["reason"]
        assert condition(inst, "TemplateCurrent")["status"] == "True"
        assert "workspace" not in inst["status"]["pvcs"]
        mounted = hub.pod(ns, f"{name}-notebook")["spec"]["volumes"][0]
        assert mounted["persistentVolumeClaim"]["claimName"] == f"{name}-home"
