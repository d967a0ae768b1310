"""What a template may do to a user's existing claim (pure: plain dicts in, decisions out).

The rule (README, "Existing claims that differ from the template"): an existing claim is never
replaced, shrunk or blocked by a template that says otherwise.

- a bigger size is an expansion request, applied in place to the same claim, when the claim's
  StorageClass allows it (`allowVolumeExpansion: true`);
- every other difference keeps the claim as it is: a claim larger than the template (an admin
  grew it with `kubectl patch`, or migrated it in), a growth its StorageClass cannot make, and a
  changed immutable field (IMMUTABLE_FIELDS: storage class, access modes, ...), whether from a
  template edit, another profile's template or a claim made by hand. The object handed to the
  engine carries the claim's own values for those fields (`as_is`), so Pulumi neither replaces
  the claim (with its name fixed that could only fail half way or lose track of the data) nor
  asks the apiserver to shrink it; the start goes on, and the `PVCsKept` condition says which
  field differs, both values and what the admin can do;
- a claim of the instance that the template no longer renders (entry renamed or removed) is
  never deleted: it stays with its data and is listed in `status.retainedPvcs`.

Only fields the template sets are compared: the apiserver and controllers fill in others
(storageClassName from the default class, volumeName at binding, volumeMode).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from jupyternetes.crd.conditions import PVCS_KEPT
from jupyternetes.crd.labels import LABEL_ENTRY
from jupyternetes.policy.ownership import is_owned_by

IMMUTABLE_FIELDS = ("storageClassName", "accessModes", "selector", "volumeName", "volumeMode",
                    "dataSource", "dataSourceRef")
SIZE_FIELD = "resources.requests.storage"
# The condition (type, reason) that says an existing claim is used as it is, not as templated.
KEPT_CONDITION = PVCS_KEPT
KEPT_REASON = "ClaimKeptAsItIs"


@dataclass(frozen=True)
class Kept:
    """A field of an existing claim that differs from the template and is kept as it is."""

    entry: str
    claim: str  # namespace/name
    field: str  # path under spec
    live: Any  # the claim's value (None: unset), which is used
    wanted: Any  # the template's value, which is not applied
    why: str

    def message(self, template_ref: str) -> str:
        return (f"PVC {self.claim} (entry pvcs/{self.entry}) is used as it is: its "
                f"spec.{self.field} is {show(self.live)}, template {template_ref} asks for "
                f"{show(self.wanted)}; {self.why}.")


@dataclass(frozen=True)
class Expansion:
    entry: str
    claim: str
    old: str
    new: str
    storage_class: str


def show(value: Any) -> str:
    return "(unset)" if value is None else repr(value) if isinstance(value, str) else str(value)


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity ("1Gi", "500M", "1e3") as bytes; None when it is not one."""
    if value is None:
        return None
    from kubernetes.utils import parse_quantity

    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, InvalidOperation):
        return None


def storage_request(spec: Mapping[str, Any] | None) -> Any:
    return (((spec or {}).get("resources") or {}).get("requests") or {}).get("storage")


def immutable_changes(entry: str, claim: str, rendered: Mapping[str, Any],
                      live: Mapping[str, Any]) -> list[Kept]:
    """The immutable fields the template sets to something else than the claim has."""
    kept = []
    for name in IMMUTABLE_FIELDS:
        new, old = rendered.get(name), live.get(name)
        if new is None or new == old:
            continue
        kept.append(Kept(
            entry, claim, name, old, new,
            f"spec.{name} of an existing claim cannot change (Kubernetes keeps it immutable) "
            f"and replacing the claim would lose the user's data. To give this user the "
            f"template's value: move the data and delete the claim (the next start makes a "
            f"new one), or give the entry a new name (a new claim is made; the old one is kept "
            f"and listed in status.retainedPvcs)"))
    return kept


def size_change(entry: str, claim: str, rendered: Mapping[str, Any],
                live: Mapping[str, Any]) -> tuple[Kept | None, Expansion | None]:
    """(the claim's larger size kept, expansion request of a growth); (None, None) when
    unchanged or when either size is not a quantity (the apiserver then says what is wrong)."""
    new_text, old_text = storage_request(rendered), storage_request(live)
    new, old = quantity(new_text), quantity(old_text)
    if new is None or old is None or new == old:
        return None, None
    if new < old:
        return Kept(entry, claim, SIZE_FIELD, old_text, new_text,
                    "a claim never shrinks (an admin may have grown it, or it was migrated in "
                    "larger), so the larger claim is used"), None
    return None, Expansion(entry, claim, str(old_text), str(new_text),
                           str(live.get("storageClassName") or ""))


def expansion_refusal(expansion: Expansion,
                      storage_class: Mapping[str, Any] | None) -> Kept | None:
    """None when the claim's StorageClass allows expansion, else the size kept and why."""
    name = expansion.storage_class
    if not name:
        why = ("the claim has no StorageClass (a statically bound volume), and only claims of "
               "a StorageClass with allowVolumeExpansion: true can grow")
    elif storage_class is None:
        why = f"its StorageClass {name} does not exist, so it cannot grow"
    elif storage_class.get("allowVolumeExpansion") is not True:
        why = (f"its StorageClass {name} does not allow volume expansion: set "
               f"allowVolumeExpansion: true on it (if its provisioner can resize), or keep the "
               f"size at {expansion.old}")
    else:
        return None
    return Kept(expansion.entry, expansion.claim, SIZE_FIELD, expansion.old, expansion.new,
                f"the claim keeps its size: {why}")


def as_is(rendered: Mapping[str, Any], kept: Iterable[Kept]) -> dict[str, Any]:
    """A copy of the rendered claim spec with the claim's own value of every kept field (a
    field the claim does not set is left out), so the engine asks for no change there."""
    spec = copy.deepcopy(dict(rendered))
    for item in kept:
        if item.field == SIZE_FIELD:
            resources = dict(spec.get("resources") or {})
            requests = dict(resources.get("requests") or {})
            requests["storage"] = item.live
            resources["requests"] = requests
            spec["resources"] = resources
        elif item.live is None:
            spec.pop(item.field, None)
        else:
            spec[item.field] = copy.deepcopy(item.live)
    return spec


def retained_claims(owned: Iterable[Mapping[str, Any]], namespace: str, instance: str,
                    rendered_names: Iterable[str], template_ref: str) -> list[dict[str, str]]:
    """`status.retainedPvcs`: the instance's own claims (by label) the render no longer has.

    `owned`: the namespace's PVCs labelled as this instance's (others are skipped here too).
    Claims being deleted are left out: someone already decided about them."""
    wanted = set(rendered_names)
    kept = []
    for pvc in owned:
        meta = pvc.get("metadata") or {}
        name = meta.get("name")
        if (not name or name in wanted or meta.get("deletionTimestamp")
                or not is_owned_by(pvc, namespace, instance)):
            continue
        entry = (meta.get("labels") or {}).get(LABEL_ENTRY) or ""
        kept.append({
            "name": name, "entry": entry,
            "reason": (f"template {template_ref} no longer has PVC entry {entry or '?'} (renamed "
                       f"or removed); the claim is kept with its data but is not mounted. "
                       f"Delete it when the data is no longer needed, or put the entry back to "
                       f"use it again."),
        })
    return sorted(kept, key=lambda r: r["name"])
