"""What a template edit may do to an existing claim: grow it, or be refused; never lose it."""

from __future__ import annotations

from jupyternetes.crd.labels import LABEL_ENTRY, LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE
from jupyternetes.policy.pvc import (
    Expansion,
    expansion_refusal,
    immutable_changes,
    retained_claims,
    size_change,
)

CLAIM = "hub/alice-workspace"


def spec(size: str = "1Gi", **fields) -> dict:
    return {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
            **fields}


def test_fields_the_template_does_not_set_are_not_compared():
    live = spec(storageClassName="standard", volumeName="pv-1", volumeMode="Filesystem")
    assert immutable_changes("workspace", CLAIM, spec(), live) == []


def test_an_immutable_change_names_field_values_and_what_to_do():
    (refusal,) = immutable_changes("workspace", CLAIM, spec(storageClassName="fast"),
                                   spec(storageClassName="standard"))
    text = refusal.message("kadense/t (generation 3)")
    for part in ("spec.storageClassName", "'standard'", "'fast'", CLAIM, "pvcs/workspace",
                 "kadense/t (generation 3)", "status.retainedPvcs", "not applied"):
        assert part in text, (part, text)


def test_access_modes_are_immutable_too():
    changed = immutable_changes("workspace", CLAIM, {"accessModes": ["ReadWriteMany"]},
                                spec())
    assert [r.field for r in changed] == ["accessModes"]


def test_size_growth_is_an_expansion_and_a_shrink_is_refused():
    assert size_change("w", CLAIM, spec("1Gi"), spec("1024Mi")) == (None, None)
    refusal, growth = size_change("w", CLAIM, spec("2Gi"), spec("1Gi",
                                                                storageClassName="sc"))
    assert refusal is None
    assert growth == Expansion("w", CLAIM, "1Gi", "2Gi", "sc")
    shrink, growth = size_change("w", CLAIM, spec("500Mi"), spec("1Gi"))
    assert growth is None and "cannot shrink" in shrink.message("t")
    # Not a quantity: the apiserver says what is wrong.
    assert size_change("w", CLAIM, spec("lots"), spec("1Gi")) == (None, None)


def test_expansion_needs_a_storage_class_that_allows_it():
    growth = Expansion("w", CLAIM, "1Gi", "2Gi", "sc")
    assert expansion_refusal(growth, {"allowVolumeExpansion": True}) is None
    refused = expansion_refusal(growth, {"allowVolumeExpansion": False})
    assert "allowVolumeExpansion" in refused.message("t") and "sc" in refused.message("t")
    assert "does not exist" in expansion_refusal(growth, None).why
    static = Expansion("w", CLAIM, "1Gi", "2Gi", "")
    assert "no StorageClass" in expansion_refusal(static, None).why


def owned_pvc(name: str, entry: str, instance: str = "alice", deleting: bool = False) -> dict:
    meta = {"name": name, "labels": {LABEL_INSTANCE: instance, LABEL_INSTANCE_NAMESPACE: "hub",
                                     LABEL_ENTRY: entry}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_claims_the_render_no_longer_has_are_retained_and_listed():
    owned = [owned_pvc("alice-workspace", "workspace"), owned_pvc("alice-home", "home"),
             owned_pvc("alice-old", "old", deleting=True),
             owned_pvc("bob-workspace", "workspace", instance="bob")]
    retained = retained_claims(owned, "hub", "alice", ["alice-home"], "kadense/t")
    assert [(r["name"], r["entry"]) for r in retained] == [("alice-workspace", "workspace")]
    assert "kadense/t" in retained[0]["reason"] and "kept" in retained[0]["reason"]
    assert retained_claims(owned, "hub", "alice", ["alice-home", "alice-workspace"], "t") == []
