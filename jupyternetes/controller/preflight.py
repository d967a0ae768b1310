"""The checks right before a stack `up`: whose objects the names are, and what a PVC change does.

Reads the live objects the render names (one GET each), the StorageClass of a claim that would
grow, and the instance's own claims (one list); the decisions are jupyternetes.policy.ownership and
jupyternetes.policy.pvc (pure). A refusal means: no engine call at all. The same ownership rule
is enforced again at the engine's create (program.create_guard_hook), for objects made between
this read and the `up`. An existing claim that differs from the template is not a refusal: the
`up` gets the claim's own values for those fields (`Preflight.rendered`) and the `PVCsKept`
condition says what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from jupyternetes.crd import conditions
from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE
from jupyternetes.crd.model import Instance
from jupyternetes.crd.naming import label_value
from jupyternetes.kube.errors import KubeError
from jupyternetes.policy import ownership, pvc
from jupyternetes.render.objects import Rendered, RenderedObject

OWNERSHIP_CONFLICT = conditions.OWNERSHIP_CONFLICT
FORBIDDEN = conditions.PREFLIGHT_FORBIDDEN


class ObjectsPort(Protocol):
    def get_object(self, api_version: str, kind: str, namespace: str | None,
                   name: str) -> dict | None: ...
    def list_pvcs(self, namespace: str, selector: str) -> list[dict]: ...


@dataclass(frozen=True)
class Preflight:
    # None: go ahead with `up`; else the condition reason of the refusal.
    refused: str | None = None
    message: str = ""
    # status.retainedPvcs for this `up` (see pvc.retained_claims).
    retained: list[dict] = field(default_factory=list)
    # Expansion requests this `up` makes, for the Event.
    notes: Sequence[str] = ()
    # What to `up` (the render with existing claims' kept fields), None when refused.
    rendered: Rendered | None = None
    # One message per kept field of an existing claim (the PVCsKept condition).
    kept: Sequence[str] = ()
    # (group, entry) of the rendered objects that do not exist yet (createahead.py).
    absent: frozenset[tuple[str, str]] = frozenset()


def check(kube: ObjectsPort, instance: Instance, rendered: Rendered,
          template_ref: str) -> Preflight:
    """Preflight of one `up`. A read the operator's RBAC forbids is a refusal that says which
    permission is missing (other apiserver errors propagate: the queue retries with backoff)."""
    try:
        return _check(kube, instance, rendered, template_ref)
    except KubeError as exc:
        if exc.status != 403:
            raise
        return Preflight(FORBIDDEN, f"{exc}. Before it creates or changes anything the operator "
                                    "reads the objects the template names, lists the instance's "
                                    "PVCs and reads the StorageClass of a claim that would grow: "
                                    "grant it get on those kinds, list on "
                                    "persistentvolumeclaims and get on "
                                    "storageclasses.storage.k8s.io.")


def _check(kube: ObjectsPort, instance: Instance, rendered: Rendered,
           template_ref: str) -> Preflight:
    live: dict[tuple[str, str], dict | None] = {}
    conflicts: list[str] = []
    for obj in rendered.objects():
        found = kube.get_object(obj.api_version, obj.kind, obj.namespace, obj.name)
        live[(obj.group, obj.entry)] = found
        bad = ownership.conflict(found, instance.namespace, instance.name,
                                 f"{obj.group}/{obj.entry}", instance.account,
                                 ownership.kubespawner_request(obj.manifest))
        if bad is not None:
            conflicts.append(bad.message)
    if conflicts:
        return Preflight(OWNERSHIP_CONFLICT, " ".join(conflicts))

    kept: list[str] = []
    notes: list[str] = []
    claims: list[RenderedObject] = []
    for obj in rendered.pvcs:
        claim = live.get((obj.group, obj.entry))
        if claim is None:
            claims.append(obj)
            continue
        ref = f"{obj.namespace}/{obj.name}"
        wanted, has = obj.manifest.get("spec") or {}, claim.get("spec") or {}
        differences = pvc.immutable_changes(obj.entry, ref, wanted, has)
        larger, growth = pvc.size_change(obj.entry, ref, wanted, has)
        if larger is not None:
            differences.append(larger)
        if growth is not None:
            storage_class = kube.get_object("storage.k8s.io/v1", "StorageClass", None,
                                            growth.storage_class) if growth.storage_class else None
            cannot = pvc.expansion_refusal(growth, storage_class)
            if cannot is not None:
                differences.append(cannot)
            else:
                notes.append(f"expansion of PVC {ref} requested ({growth.old} -> {growth.new})")
        kept += [d.message(template_ref) for d in differences]
        claims.append(replace(obj, manifest={**obj.manifest,
                                             "spec": pvc.as_is(wanted, differences)})
                      if differences else obj)

    selector = (f"{LABEL_INSTANCE}={label_value(instance.name)},"
                f"{LABEL_INSTANCE_NAMESPACE}={instance.namespace}")
    retained = pvc.retained_claims(
        kube.list_pvcs(instance.namespace, selector), instance.namespace, instance.name,
        [o.name for o in rendered.pvcs], template_ref)
    return Preflight(retained=retained, notes=notes, kept=kept,
                     rendered=replace(rendered, pvcs=tuple(claims)),
                     absent=frozenset(where for where, found in live.items() if found is None))
