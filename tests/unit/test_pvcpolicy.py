"""What a template may do to an existing claim: grow it, or leave it as it is; never lose it."""

from __future__ import annotations

from jupyternetes.crd.labels import LABEL_ENTRY, LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE
from jupyternetes.policy.pvc import (
    SIZE_FIELD,
    Expansion,
    Kept,
    as_is,
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


def test_an_immutable_change_keeps_the_claims_value_and_says_what_to_do():
    (kept,) = immutable_changes("workspace", CLAIM, spec(storageClassName="fast"),
                                spec(storageClassName="standard"))
    assert (kept.live, kept.wanted) == ("standard", "fast")
    text = kept.message("kadense/t (generation 3)")
    for part in ("spec.storageClassName", "'standard'", "'fast'", CLAIM, "pvcs/workspace",
                 "kadense/t (generation 3)", "status.retainedPvcs", "used as it is"):
        assert part in text, (part, text)


def test_access_modes_are_immutable_too():
    changed = immutable_changes("workspace", CLAIM, {"accessModes": ["ReadWriteMany"]},
                                spec())
    assert [r.field for r in changed] == ["accessModes"]


def test_size_growth_is_an_expansion_and_a_larger_claim_is_used_as_it_is():
    assert size_change("w", CLAIM, spec("1Gi"), spec("1024Mi")) == (None, None)
    kept, growth = size_change("w", CLAIM, spec("2Gi"), spec("1Gi",
                                                             storageClassName="sc"))
    assert kept is None
    assert growth == Expansion("w", CLAIM, "1Gi", "2Gi", "sc")
    larger, growth = size_change("w", CLAIM, spec("500Mi"), spec("5Gi"))
    assert growth is None and "never shrinks" in larger.message("t")
    assert (larger.live, larger.wanted) == ("5Gi", "500Mi")
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


def test_the_engine_gets_the_claims_own_values_of_every_kept_field():
    template = spec("1Gi", storageClassName="fast")
    kept = [Kept("w", CLAIM, SIZE_FIELD, "5Gi", "1Gi", ""),
            Kept("w", CLAIM, "storageClassName", "standard", "fast", ""),
            Kept("w", CLAIM, "volumeMode", None, "Block", "")]
    result = as_is({**template, "volumeMode": "Block"}, kept)
    assert result == spec("5Gi", storageClassName="standard")
    assert template == spec("1Gi", storageClassName="fast")  # the render is not changed
    assert as_is(template, []) == template


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
