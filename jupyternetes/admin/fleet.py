"""Fleet preview, the pure part: what a template edit does to every server that uses it.

Pure, no I/O, no engine: the caller gives, per instance, the objects it runs now (the baseline)
and the objects the proposed template renders for it; this module classifies each object by the
operator's own rules (program.py):

- a pod whose `spec` changes is replaced (`replace_on_changes=["spec"]`): under
  `--template-rollout immediate` the user's kernel is lost;
- a pod whose name changes is replaced too (the name is part of the object's identity);
- any other change (labels, annotations, a Service's spec, a ConfigMap's data) is an update in
  place;
- a PVC's spec is immutable except growing `resources.requests.storage`, which the apiserver
  allows only when the claim's StorageClass has `allowVolumeExpansion: true`; every other spec
  change (and any shrink) is refused: the operator keeps the claim as it is and says so in a
  condition;
- a PVC whose name changes (a renamed entry or a variable in its name) gets a new, empty claim;
  the old claim is kept (retained, never deleted) with the user's data in it;
- an object the proposed template no longer has is deleted (a PVC is retained, not deleted).

An instance's outcome is the most severe of its objects' outcomes (OUTCOMES, least severe
first); a render error (with every missing variable and its path) is its own outcome.

The baseline is a choice the caller makes honestly (see admin/fleetpreview.py): the render of the
live
template when the instance runs its current generation, or the live objects projected onto the
fields the template sets (`project`) when it runs an older one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.policy import pvc

# Least severe first; an instance's outcome is the most severe of its objects'.
UNCHANGED = "unchanged"
UPDATE = "update"
PVC_EXPAND = "pvc-expand"
CREATE = "create"
DELETE = "delete"
PVC_NEW_CLAIM = "pvc-new-claim"
POD_REPLACED = "pod-replaced"
PVC_REFUSED = "pvc-refused"
RENDER_ERROR = "render-error"
OUTCOMES = (UNCHANGED, UPDATE, PVC_EXPAND, CREATE, DELETE, PVC_NEW_CLAIM, POD_REPLACED,
            PVC_REFUSED, RENDER_ERROR)

DESCRIPTIONS = {
    UNCHANGED: "nothing changes",
    UPDATE: "updated in place; the server keeps running",
    PVC_EXPAND: "PVC grows in place (StorageClass allows expansion)",
    CREATE: "new objects are created; the server keeps running",
    DELETE: "objects are deleted (PVCs are kept)",
    PVC_NEW_CLAIM: "PVC renamed: a new empty claim; the old one is kept with the user's data",
    POD_REPLACED: "pod replaced: under --template-rollout immediate the user's kernel is lost",
    PVC_REFUSED: "PVC change refused (immutable field, shrink, or no expansion): the operator "
                 "keeps the claim and reports it",
    RENDER_ERROR: "render error: the server cannot be updated or restarted",
}

STORAGE_PATH = "spec.resources.requests.storage"
PATH_LIMIT = 6

def changed_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """Leaf paths where `old` and `new` differ (`spec.containers[0].image`), sorted by walk."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        found: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            child = f"{path}.{key}" if path else str(key)
            if key not in new or key not in old:
                found.append(child)
            else:
                found.extend(changed_paths(old[key], new[key], child))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        found = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            found.extend(changed_paths(a, b, f"{path}[{index}]"))
        return found
    return [] if old == new else [path or "(object)"]


def project(live: Any, shape: Any) -> Any:
    """`live` keeping only what `shape` has: the fields a template sets, without the defaults
    the apiserver adds (terminationMessagePath, dnsPolicy, ...) or Pulumi's annotations. A field
    the template no longer sets is not seen this way (it is absent from `shape`)."""
    if isinstance(shape, Mapping) and isinstance(live, Mapping):
        return {k: project(live[k], v) for k, v in shape.items() if k in live}
    if isinstance(shape, list) and isinstance(live, list):
        if _named(shape) and _named(live):
            # The apiserver appends items (the service account token volume and its mount):
            # match named items by name, so an appended one is not a change of the template's.
            by_name = {item["name"]: item for item in live}
            return [project(by_name[s["name"]], s) for s in shape if s["name"] in by_name]
        if len(shape) != len(live):
            return live
        return [project(item, s) for item, s in zip(live, shape, strict=True)]
    return live


def _named(items: list) -> bool:
    return all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items)


@dataclass(frozen=True)
class ObjectChange:
    group: str
    entry: str
    kind: str
    name: str
    outcome: str
    paths: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"group": self.group, "entry": self.entry, "kind": self.kind,
                               "name": self.name, "outcome": self.outcome}
        if self.paths:
            doc["paths"] = list(self.paths)
        if self.note:
            doc["note"] = self.note
        return doc


@dataclass(frozen=True)
class InstancePlan:
    namespace: str
    name: str
    outcome: str
    objects: tuple[ObjectChange, ...] = ()
    baseline: str = "render"
    running_generation: int | None = None
    error: str = ""
    missing: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"instance": self.key, "outcome": self.outcome,
                               "baseline": self.baseline,
                               "runningGeneration": self.running_generation,
                               "objects": [o.to_dict() for o in self.objects
                                           if o.outcome != UNCHANGED]}
        if self.error:
            doc["error"] = self.error
            doc["missing"] = [{"variable": n, "path": p} for n, p in self.missing]
        return doc


def worst(outcomes: Iterable[str]) -> str:
    return max(outcomes, key=OUTCOMES.index, default=UNCHANGED)


def _metadata_view(manifest: Mapping[str, Any]) -> dict[str, Any]:
    meta = manifest.get("metadata") or {}
    return {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}


def _body(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("metadata", "status")}


def classify_pvc_spec(paths: list[str], old: Mapping[str, Any], new: Mapping[str, Any],
                      expandable: bool | None) -> tuple[str, str]:
    """(outcome, note) for a change of a PVC's spec at `paths` (prefixed `spec.`), by the
    operator's own rule (policy/pvc.py): only the storage request of an existing claim may change,
    and only upwards, on a StorageClass that allows expansion."""
    immutable = [p for p in paths if p != STORAGE_PATH]
    if immutable:
        return PVC_REFUSED, (f"{', '.join(immutable[:PATH_LIMIT])} cannot change on an existing "
                             "claim (immutable)")
    before = pvc.quantity(pvc.storage_request(old))
    after = pvc.quantity(pvc.storage_request(new))
    if before is None or after is None:
        return PVC_REFUSED, "storage request is not a valid quantity"
    shrink, growth = pvc.size_change("", "", new, old)
    if shrink is not None:
        return PVC_REFUSED, "a claim cannot shrink"
    if growth is None:
        return UPDATE, "the same size, written differently"
    if expandable is True:
        return PVC_EXPAND, "storage grows; the StorageClass allows expansion"
    if expandable is False:
        return PVC_REFUSED, "storage grows, but the StorageClass does not allow volume expansion"
    return PVC_REFUSED, ("storage grows, but the claim's StorageClass is unknown or has no "
                         "allowVolumeExpansion: true")


def classify_object(group: str, entry: str, old: Mapping[str, Any] | None,
                    new: Mapping[str, Any] | None,
                    expandable: bool | None = None) -> ObjectChange:
    """One object of one instance: `old` (what runs) -> `new` (what the proposal renders)."""
    manifest = new if new is not None else old
    assert manifest is not None, "an object is at least old or new"
    kind = str(manifest.get("kind", ""))
    name = str((manifest.get("metadata") or {}).get("name", ""))

    def change(outcome: str, paths: Iterable[str] = (), note: str = "") -> ObjectChange:
        return ObjectChange(group, entry, kind, name, outcome, tuple(paths)[:PATH_LIMIT], note)

    if old is None:
        return change(CREATE)
    if new is None:
        return change(DELETE, note="PVC is retained, not deleted" if group == "pvcs" else "")
    old_name = (old.get("metadata") or {}).get("name")
    if old_name != name:
        if group == "pvcs":
            return change(PVC_NEW_CLAIM, ["metadata.name"],
                          f"claim {old_name} is kept with its data; {name} is a new empty claim")
        return change(POD_REPLACED if group == "pods" else UPDATE, ["metadata.name"],
                      f"{old_name} is deleted, {name} created")
    body_paths = changed_paths(_body(old), _body(new))
    meta_paths = ["metadata." + p for p in changed_paths(_metadata_view(old),
                                                         _metadata_view(new))]
    spec_paths = [p for p in body_paths if p == "spec" or p.startswith("spec.")]
    if group == "pods" and spec_paths:
        return change(POD_REPLACED, spec_paths)
    if group == "pvcs" and spec_paths:
        outcome, note = classify_pvc_spec(spec_paths, old.get("spec") or {},
                                          new.get("spec") or {}, expandable)
        return change(outcome, spec_paths, note)
    if body_paths or meta_paths:
        return change(UPDATE, body_paths + meta_paths)
    return change(UNCHANGED)


def _by_entry(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(o["group"], o["entry"]): o["manifest"] for o in objects}


def storage_class_of(manifest: Mapping[str, Any]) -> str | None:
    spec = manifest.get("spec") or {}
    value = spec.get("storageClassName")
    return value if isinstance(value, str) else None


def plan_instance(namespace: str, name: str, current: Iterable[Mapping[str, Any]],
                  proposed: Iterable[Mapping[str, Any]],
                  expandable: Mapping[str | None, bool] | None = None,
                  baseline: str = "render",
                  running_generation: int | None = None) -> InstancePlan:
    """Classify every object of one instance. `current`/`proposed`: `{group, entry, manifest}`
    dicts (render.RenderedObject fields); `expandable`: StorageClass name (None = the default
    class) -> allowVolumeExpansion."""
    old, new = _by_entry(current), _by_entry(proposed)
    classes = expandable or {}
    changes = []
    for key in list(old) + [k for k in new if k not in old]:
        group, entry = key
        claim = new.get(key) or old.get(key) or {}
        allowed = classes.get(storage_class_of(claim)) if group == "pvcs" else None
        changes.append(classify_object(group, entry, old.get(key), new.get(key), allowed))
    return InstancePlan(namespace, name, worst(c.outcome for c in changes), tuple(changes),
                        baseline, running_generation)


def render_failed(namespace: str, name: str, error: str,
                  missing: Iterable[tuple[str, str]] = (), baseline: str = "render",
                  running_generation: int | None = None) -> InstancePlan:
    return InstancePlan(namespace, name, RENDER_ERROR, (), baseline, running_generation,
                        error, tuple(missing))


@dataclass
class FleetSummary:
    template: str
    plans: list[InstancePlan] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for plan in self.plans:
            counts[plan.outcome] += 1
        return counts

    def touched(self) -> dict[str, int]:
        """outcome -> instances with at least one object of that outcome (an instance counted
        as pvc-refused may lose its pod too)."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for plan in self.plans:
            found = {o.outcome for o in plan.objects} | {plan.outcome}
            for outcome in found:
                counts[outcome] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(p.outcome != UNCHANGED for p in self.plans)

    def to_dict(self) -> dict[str, Any]:
        return {"template": self.template, "instances": len(self.plans),
                "counts": self.counts(), "touched": self.touched(),
                "plans": [p.to_dict() for p in self.plans]}


def format_summary(summary: FleetSummary, show_unchanged: bool = False) -> str:
    """Human output: one line per changed instance (its objects below), then one line per
    outcome with its count."""
    lines = [f"Template {summary.template}: {len(summary.plans)} instance(s)"]
    for plan in sorted(summary.plans, key=lambda p: (-OUTCOMES.index(p.outcome), p.key)):
        if plan.outcome == UNCHANGED and not show_unchanged:
            continue
        source = ("" if plan.baseline == "render"
                  else f" (compared with its live objects: runs generation "
                       f"{plan.running_generation})" if plan.baseline == "live"
                  else f" ({plan.baseline})")
        lines.append(f"  {plan.outcome:<14} {plan.key}{source}")
        if plan.outcome == RENDER_ERROR:
            lines += ([f"      missing {name} at {path}" for name, path in plan.missing]
                      or [f"      {plan.error}"])
            continue
        for obj in plan.objects:
            if obj.outcome == UNCHANGED:
                continue
            detail = ", ".join(obj.paths)
            lines.append(f"      {obj.outcome:<14} {obj.group}/{obj.entry} {obj.kind} {obj.name}"
                         + (f": {detail}" if detail else "") + (f" ({obj.note})" if obj.note
                                                                else ""))
    lines.append("Summary (instances, by their most severe outcome):")
    for outcome, count in summary.counts().items():
        if count:
            lines.append(f"  {outcome:<14} {count:>6}  {DESCRIPTIONS[outcome]}")
    counts, touched = summary.counts(), summary.touched()
    also = [f"{outcome} {n}" for outcome, n in touched.items()
            if n != counts[outcome] and outcome != UNCHANGED]
    if also:
        lines.append("Instances with at least one object that is: " + ", ".join(also))
    return "\n".join(lines) + "\n"
