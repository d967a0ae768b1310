"""What a template edit may do to a user's existing claim (pure: plain dicts in, decisions out).

The rule (README, "The user's PVC under template edits"):

- a bigger size is an expansion request, applied in place to the same claim, when the claim's
  StorageClass allows it (`allowVolumeExpansion: true`); otherwise it is refused and says so;
- a smaller size, or a change of a field the apiserver keeps immutable (IMMUTABLE_FIELDS), is
  refused before any engine call: Pulumi would replace the claim, which with its name fixed can
  only fail half way (the retained old claim blocks the new one) or lose track of the data. The
  claim, its data and the running server stay as they are; the message names the field, both
  values and what the admin can do;
- a claim of the instance that the template no longer renders (entry renamed or removed) is
  never deleted: it stays with its data and is listed in `status.retainedPvcs`.

Only fields the template sets are compared: the apiserver and controllers fill in others
(storageClassName from the default class, volumeName at binding, volumeMode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from jupyternetes.crd.labels import LABEL_ENTRY
from jupyternetes.policy.ownership import is_owned_by

IMMUTABLE_FIELDS = ("storageClassName", "accessModes", "selector", "volumeName", "volumeMode",
                    "dataSource", "dataSourceRef")
SIZE_FIELD = "resources.requests.storage"
REASON = "PVCChangeRefused"


@dataclass(frozen=True)
class Refusal:
    entry: str
    claim: str  # namespace/name
    field: str  # path under spec
    old: Any
    new: Any
    why: str

    def message(self, template_ref: str) -> str:
        return (f"template {template_ref} changes spec.{self.field} of PVC {self.claim} (entry "
                f"pvcs/{self.entry}) from {show(self.old)} to {show(self.new)}: {self.why}. "
                f"The change is not applied; the claim, its data and the running server are "
                f"left as they are.")


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
                      live: Mapping[str, Any]) -> list[Refusal]:
    """Refusals for immutable fields the template sets to something else than the claim has."""
    refusals = []
    for name in IMMUTABLE_FIELDS:
        new, old = rendered.get(name), live.get(name)
        if new is None or new == old:
            continue
        refusals.append(Refusal(
            entry, claim, name, old, new,
            f"spec.{name} of an existing claim is immutable and Pulumi would have to delete "
            f"and recreate the claim under the same name, which would lose the user's data. "
            f"To apply it: set spec.{name} back to {show(old)} in the template; or give the "
            f"entry a new name (a new claim is made, the old one is kept and listed in "
            f"status.retainedPvcs) and move the data; or, if its data is not needed, delete "
            f"the claim (the server's next start makes a new one)"))
    return refusals


def size_change(entry: str, claim: str, rendered: Mapping[str, Any],
                live: Mapping[str, Any]) -> tuple[Refusal | None, Expansion | None]:
    """(refusal of a shrink, expansion request of a growth); (None, None) when unchanged or
    when either size is not a quantity (the apiserver then says what is wrong)."""
    new_text, old_text = storage_request(rendered), storage_request(live)
    new, old = quantity(new_text), quantity(old_text)
    if new is None or old is None or new == old:
        return None, None
    if new < old:
        return Refusal(entry, claim, SIZE_FIELD, old_text, new_text,
                       "a claim cannot shrink; keep the size, or give the entry a new name "
                       "for a new, smaller claim (the old one is kept and listed in "
                       "status.retainedPvcs)"), None
    return None, Expansion(entry, claim, str(old_text), str(new_text),
                           str(live.get("storageClassName") or ""))


def expansion_refusal(expansion: Expansion,
                      storage_class: Mapping[str, Any] | None) -> Refusal | None:
    """None when the claim's StorageClass allows expansion, else why not."""
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
    return Refusal(expansion.entry, expansion.claim, SIZE_FIELD, expansion.old, expansion.new,
                   why)


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
