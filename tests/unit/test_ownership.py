"""Whose object a rendered name finds: the instance's own, another instance's, or nobody's."""

from __future__ import annotations

from jupyternetes.crd.labels import (
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    RELEASED_FROM,
)
from jupyternetes.crd.naming import label_value
from jupyternetes.policy.ownership import (
    ADOPT_ANNOTATION,
    account_of,
    conflict,
    is_owned_by,
    owner_of,
)


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


# ---- the account: a later user of the same name is another account -------------------------


def test_an_earlier_accounts_claim_is_not_adopted_by_a_namesake():
    old = pvc(labels={**labels_of("u1"), LABEL_ACCOUNT: "acc-old"})
    found = conflict(old, "hub", "u1", "pvcs/home", account="acc-new")
    assert found is not None
    for part in ("another account of the same name", "acc-old", "acc-new",
                 f"{ADOPT_ANNOTATION}=u1 --overwrite"):
        assert part in found.message, (part, found.message)
    assert conflict(old, "hub", "u1", account="acc-old") is None


def test_an_admin_hands_an_earlier_accounts_claim_over_on_purpose():
    old = pvc(labels={**labels_of("u1"), LABEL_ACCOUNT: "acc-old"},
              annotations={ADOPT_ANNOTATION: "u1"})
    assert conflict(old, "hub", "u1", account="acc-new") is None


def test_a_claim_from_before_accounts_is_adopted_by_its_instance():
    """Existing users keep their data: the claim gets the account label with this adoption."""
    legacy = pvc(labels=labels_of("u1"))
    assert conflict(legacy, "hub", "u1", account="acc") is None


def test_an_instance_without_an_account_adopts_its_own_claims_as_before():
    assert conflict(pvc(labels={**labels_of("u1"), LABEL_ACCOUNT: "acc"}), "hub", "u1") is None


def test_a_released_claim_says_from_whom_and_needs_the_admins_annotation():
    released = pvc(annotations={RELEASED_FROM: '{"user": "vera", "account": "acc-old"}'})
    found = conflict(released, "hub", "u1", account="acc-new")
    assert found is not None and found.owner is None
    assert "released when its account was deleted" in found.message
    assert "vera" in found.message and f"{ADOPT_ANNOTATION}=u1" in found.message
    handed = pvc(annotations={RELEASED_FROM: "{}", ADOPT_ANNOTATION: "u1"})
    assert conflict(handed, "hub", "u1", account="acc-new") is None


def test_account_of_reads_the_label():
    assert account_of(pvc(labels={LABEL_ACCOUNT: "a"})) == "a"
    assert account_of(pvc()) is None
