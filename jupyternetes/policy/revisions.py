"""Template revisions (pure): every edit that changes what a template renders is one immutable,
numbered revision, kept as a `ControllerRevision` (apps/v1) owned by the template, as a
StatefulSet or a DaemonSet keeps its history.

- What renders: the template's `pods`, `pvcs` and `otherResources`. Edits of anything else
  (`allowedNamespaces`, `rollout`, labels) are no new revision.
- A revision's name is `<template>-<hash>` (of the template's uid and what renders), so the
  same content is the same object whoever records it first; its number is one more than the
  highest kept.
  Going back to earlier content (`rollout undo`) finds that revision again: its number stays.
- A revision says who made the edit and when: the managed-fields manager that last wrote the
  template's spec, and that time.
- `revisionHistoryLimit` (template `spec.rollout`, default 10): older revisions are deleted,
  never the current one nor one an instance runs or is pinned to.
- An instance may pin a revision: `spec.templateRevision: N`, or the annotation
  `jupyternetes.kadense.io/template-revision: "N"` an admin sets (`jupyternetes rollback`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from jupyternetes.crd.definitions import API_VERSION, TEMPLATE_KIND
from jupyternetes.crd.labels import LABEL_PREFIX, LABEL_TEMPLATE, MANAGED_BY, annotations_of
from jupyternetes.crd.naming import label_value

RENDERED_FIELDS = ("pods", "pvcs", "otherResources")
DEFAULT_HISTORY_LIMIT = 10
REVISION_HASH = f"{LABEL_PREFIX}/revision-hash"
EDITED_BY = f"{LABEL_PREFIX}/edited-by"
EDITED_AT = f"{LABEL_PREFIX}/edited-at"
PIN_ANNOTATION = f"{LABEL_PREFIX}/template-revision"
HASH_CHARS = 10


class RevisionError(ValueError):
    """A revision that cannot be used (a pin to a revision that does not exist)."""


def rendered_spec(tpl_obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = tpl_obj.get("spec") or {}
    return {key: copy.deepcopy(spec[key]) for key in RENDERED_FIELDS if spec.get(key)}


def spec_hash(tpl_obj: Mapping[str, Any]) -> str:
    canonical = json.dumps(rendered_spec(tpl_obj), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def revision_name(template_name: str, uid: str, digest: str) -> str:
    """`<template>-<hash of uid and content>`: a template made again under the same name
    never collides with its predecessor's revisions (deleted by the garbage collector later)."""
    base = template_name[:253 - HASH_CHARS - 1].rstrip("-.")
    suffix = hashlib.sha256(f"{uid}/{digest}".encode()).hexdigest()[:HASH_CHARS]
    return f"{base}-{suffix}"


def selector(template_name: str) -> str:
    """The label selector of one template's revisions (owner checked by uid as well)."""
    return f"{LABEL_TEMPLATE}={label_value(template_name)},{MANAGED_BY[0]}={MANAGED_BY[1]}"


def edit_of(tpl_obj: Mapping[str, Any]) -> tuple[str, str]:
    """(manager, time) of the last write of the template's spec, from its managedFields;
    ("unknown", creationTimestamp) when none says (an apiserver that drops them)."""
    meta = tpl_obj.get("metadata") or {}
    best: tuple[str, str] = ("unknown", str(meta.get("creationTimestamp") or ""))
    latest = ""
    for entry in meta.get("managedFields") or []:
        if not isinstance(entry, Mapping) or entry.get("subresource"):
            continue
        fields = entry.get("fieldsV1") or {}
        if "f:spec" not in fields:
            continue
        when = str(entry.get("time") or "")
        if when >= latest:
            latest = when
            best = (str(entry.get("manager") or "unknown"), when or best[1])
    return best


def revision_object(tpl_obj: Mapping[str, Any], number: int) -> dict[str, Any]:
    """The ControllerRevision recording what `tpl_obj` renders now, as revision `number`."""
    meta = tpl_obj.get("metadata") or {}
    name = str(meta.get("name"))
    digest = spec_hash(tpl_obj)
    manager, when = edit_of(tpl_obj)
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(name, str(meta.get("uid")), digest),
            "namespace": meta.get("namespace"),
            "labels": {LABEL_TEMPLATE: label_value(name), MANAGED_BY[0]: MANAGED_BY[1]},
            "annotations": {REVISION_HASH: digest, EDITED_BY: manager, EDITED_AT: when},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
                                 "name": name, "uid": meta.get("uid"), "controller": True,
                                 "blockOwnerDeletion": False}],
        },
        "data": {"spec": rendered_spec(tpl_obj)},
        "revision": number,
    }


def owned_by(revisions: Iterable[Mapping[str, Any]],
             tpl_obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The revisions of this template object (by owner uid: a template deleted and created
    again under the same name starts a new history), oldest first."""
    uid = (tpl_obj.get("metadata") or {}).get("uid")
    mine = [r for r in revisions
            if any(ref.get("uid") == uid for ref in (r.get("metadata") or {}).get(
                "ownerReferences") or [])]
    return sorted(mine, key=lambda r: int(r.get("revision") or 0))


def hash_of(revision: Mapping[str, Any]) -> str:
    return str(annotations_of(revision).get(REVISION_HASH) or "")


def number_of(revisions: Iterable[Mapping[str, Any]], digest: str) -> int | None:
    for revision in revisions:
        if hash_of(revision) == digest:
            return int(revision.get("revision") or 0)
    return None


def next_number(revisions: Iterable[Mapping[str, Any]]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def history_limit(tpl_obj: Mapping[str, Any]) -> int:
    rollout = (tpl_obj.get("spec") or {}).get("rollout") or {}
    limit = rollout.get("revisionHistoryLimit") if isinstance(rollout, Mapping) else None
    return limit if isinstance(limit, int) and limit >= 1 else DEFAULT_HISTORY_LIMIT


def to_prune(revisions: list[Mapping[str, Any]], limit: int, keep: Iterable[int]) -> list[str]:
    """Names of the oldest revisions beyond `limit`, skipping the numbers in `keep` (the
    current one, those instances run or are pinned to). `revisions` oldest first."""
    kept = set(keep)
    excess = len(revisions) - limit
    names = []
    for revision in revisions:
        if excess <= 0:
            break
        if int(revision.get("revision") or 0) in kept:
            continue
        names.append(str((revision.get("metadata") or {}).get("name")))
        excess -= 1
    return names


def template_at(tpl_obj: Mapping[str, Any], revision: Mapping[str, Any]) -> dict[str, Any]:
    """The template as it was at `revision`: its rendered fields from the revision, everything
    else (name, uid, allowedNamespaces, rollout) as the template is now."""
    result = copy.deepcopy(dict(tpl_obj))
    spec = {k: v for k, v in (result.get("spec") or {}).items() if k not in RENDERED_FIELDS}
    spec.update(copy.deepcopy((revision.get("data") or {}).get("spec") or {}))
    result["spec"] = spec
    return result


def pinned(instance_obj: Mapping[str, Any]) -> int | None:
    """The revision an instance is pinned to: the admin's annotation wins over spec."""
    value = annotations_of(instance_obj).get(PIN_ANNOTATION)
    if value is None:
        value = (instance_obj.get("spec") or {}).get("templateRevision")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


# ---- which revision an instance renders -------------------------------------------------------

STAGED = "staged"
# Written by the operator's staged rollout on an instance: the revision it moves to, and when.
ROLLOUT_REVISION = f"{LABEL_PREFIX}/rollout-revision"
ROLLOUT_MOVED_AT = f"{LABEL_PREFIX}/rollout-moved-at"


def _number(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def strategy_of(tpl_obj: Mapping[str, Any], default: str) -> str:
    """The template's spec.rollout.strategy, else the operator's --template-rollout."""
    rollout = (tpl_obj.get("spec") or {}).get("rollout") or {}
    strategy = rollout.get("strategy") if isinstance(rollout, Mapping) else None
    return strategy if isinstance(strategy, str) and strategy else default


def wanted(instance_obj: Mapping[str, Any], tpl_obj: Mapping[str, Any],
           strategy: str) -> tuple[int | None, str]:
    """(revision to render, why): "pinned"; under `staged` "moved" (the rollout moved it),
    "running" (it keeps the revision it runs), "stable" (a server that starts mid-rollout gets
    the last revision rolled out); (None, "current"): the template as it is now."""
    pin = pinned(instance_obj)
    if pin is not None:
        return pin, "pinned"
    if strategy != STAGED:
        return None, "current"
    moved = _number(annotations_of(instance_obj).get(ROLLOUT_REVISION))
    if moved is not None:
        return moved, "moved"
    status = instance_obj.get("status") or {}
    runs = _number(status.get("templateRevision"))
    stack = status.get("stack") or {}
    if runs is not None and (stack.get("lastUpdate") or {}).get("result") == "succeeded":
        return runs, "running"
    stable = _number(((tpl_obj.get("status") or {}).get("rollout") or {}).get("stableRevision"))
    if stable is not None:
        return stable, "stable"
    return None, "current"
