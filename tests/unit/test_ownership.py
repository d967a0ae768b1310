"""Whose object a rendered name finds: the instance's own, another instance's, or nobody's."""

from __future__ import annotations

from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE
from jupyternetes.crd.naming import label_value
from jupyternetes.policy.ownership import ADOPT_ANNOTATION, conflict, is_owned_by, owner_of


def pvc(name: str = "alice-data-home", labels: dict | None = None,
        annotations: dict | None = None, namespace: str = "hub") -> dict:
    return {"kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                         "annotations": annotations or {}}}


def labels_of(instance: str, namespace: str = "hub") -> dict:
    return {LABEL_INSTANCE: label_value(instance), LABEL_INSTANCE_NAMESPACE: namespace}


def test_nothing_there_or_the_instances_own_object_is_fine():
    assert conflict(None, "hub", "alice-data") is None
    assert conflict(pvc(labels=labels_of("alice-data")), "hub", "alice-data") is None


def test_another_instances_object_is_refused_naming_object_and_owner():
    found = conflict(pvc(labels=labels_of("alice")), "hub", "alice-data", "pvcs/home")
    assert found is not None
    assert found.owner == "hub/alice"
    assert "PersistentVolumeClaim hub/alice-data-home" in found.message
    assert "hub/alice " in found.message and "pvcs/home" in found.message
    assert ADOPT_ANNOTATION not in found.message  # owned objects cannot be handed over this way


def test_same_instance_name_in_another_namespace_is_another_instance():
    assert conflict(pvc(labels=labels_of("alice", "other")), "hub", "alice") is not None


def test_an_unlabelled_object_is_adopted_only_with_the_admins_annotation():
    bare = pvc(labels={"owner": "someone-else"})
    found = conflict(bare, "hub", "alice-data")
    assert found is not None and found.owner is None
    assert (f"kubectl annotate persistentvolumeclaim -n hub alice-data-home "
            f"{ADOPT_ANNOTATION}=alice-data") in found.message
    assert conflict(pvc(annotations={ADOPT_ANNOTATION: "alice-data"}), "hub", "alice-data") \
        is None
    # For another instance name the annotation does not count.
    assert conflict(pvc(annotations={ADOPT_ANNOTATION: "alice"}), "hub", "alice-data") \
        is not None


def test_the_annotation_never_hands_over_another_instances_object():
    theirs = pvc(labels=labels_of("alice"), annotations={ADOPT_ANNOTATION: "alice-data"})
    assert conflict(theirs, "hub", "alice-data") is not None


def test_long_instance_names_compare_by_their_label_value():
    long_name = "x" * 80
    assert is_owned_by(pvc(labels=labels_of(long_name)), "hub", long_name)
    assert owner_of(pvc(labels=labels_of(long_name))) == f"hub/{label_value(long_name)}"
    assert owner_of(pvc()) is None
