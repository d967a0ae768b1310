"""How an instance status write merges with what other writers put there (pure).

Status is written with a JSON merge patch on the status subresource: maps (`pods`, `pvcs`,
`otherResources`, `stack`) merge key by key, so an entry or field another writer set survives.
A list is replaced whole, and `conditions` is a list: written as the operator last read it, it
would silently drop or undo a condition the spawner, kubectl or another replica wrote since.
So the operator's conditions are *upserts by type* (the CRD declares the list a map keyed by
`type`), merged into the conditions the apiserver has right now, and the write carries the
resourceVersion that merge was computed from: a concurrent write makes it fail with 409, and
the merge is computed again from a fresh read (kube.Kube.patch_instance_status).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def upsert_conditions(current: Iterable[Mapping[str, Any]],
                      ours: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`current` with each condition of `ours` put in place of the same-typed one (appended
    when new). Types `ours` does not mention stay exactly as they are. When a condition keeps
    its status, its lastTransitionTime stays the apiserver's (ours may come from an older
    read and would move it)."""
    merged = [dict(c) for c in current if isinstance(c, Mapping)]
    index = {c.get("type"): i for i, c in enumerate(merged)}
    for cond in ours:
        new = dict(cond)
        at = index.get(new.get("type"))
        if at is None:
            index[new.get("type")] = len(merged)
            merged.append(new)
            continue
        old = merged[at]
        if old.get("status") == new.get("status") and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        merged[at] = new
    return merged


def rebased(status: Mapping[str, Any], current_status: Mapping[str, Any]) -> dict[str, Any]:
    """The status patch to send, given the instance's current status: `status` with its
    conditions merged into the current ones (see upsert_conditions)."""
    patch = dict(status)
    if "conditions" in patch:
        patch["conditions"] = upsert_conditions(current_status.get("conditions") or [],
                                                patch["conditions"] or [])
    return patch
