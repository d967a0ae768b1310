"""Whose object is it? The rule that keeps one user's objects (and data) away from another user.

Object names are `<instance>-<entry>`, so two instances can render the same name (`alice` +
entry `data-home` and `alice-data` + entry `home` both give `alice-data-home`). An existing
object with a rendered name is this instance's only when

- its labels `jupyternetes.kadense.io/instance` and `.../instanceNamespace` name this instance
  (the operator writes them on everything it makes; a claim retained from this instance's
  earlier server carries them), or
- it has no instance label and an admin annotated it `jupyternetes.kadense.io/adopt: <instance
  name>` (an explicit opt-in, e.g. to take over a claim made by hand or by the original system).

Anything else (another instance's object, or an unlabelled one without the annotation) is never
adopted, patched or deleted: the operator refuses before any engine call (reconcile) and again
at the engine's create (a before_create hook in the program), so an object made in between is
refused too. Used by the operator and by the stack worker's program (which read the objects with
`kube.objects.ObjectReader`), so it imports nothing from either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE, LABEL_PREFIX
from jupyternetes.crd.naming import label_value

ADOPT_ANNOTATION = f"{LABEL_PREFIX}/adopt"


@dataclass(frozen=True)
class Conflict:
    """An existing object with a rendered name that is not the instance's."""

    kind: str
    namespace: str
    name: str
    # "<namespace>/<instance>" of the instance its labels name; None when it has no owner label.
    owner: str | None
    message: str


def owner_of(live: Mapping[str, Any]) -> str | None:
    """`<namespace>/<instance>` from an object's jupyternetes labels (label values), or None."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    instance = labels.get(LABEL_INSTANCE)
    if not instance:
        return None
    namespace = labels.get(LABEL_INSTANCE_NAMESPACE) or (live.get("metadata") or {}).get(
        "namespace") or "?"
    return f"{namespace}/{instance}"


def is_owned_by(live: Mapping[str, Any], namespace: str, instance: str) -> bool:
    labels = (live.get("metadata") or {}).get("labels") or {}
    return (labels.get(LABEL_INSTANCE) == label_value(instance)
            and labels.get(LABEL_INSTANCE_NAMESPACE) == namespace)


def adoption_requested(live: Mapping[str, Any], instance: str) -> bool:
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ADOPT_ANNOTATION) == instance


def conflict(live: Mapping[str, Any] | None, namespace: str, instance: str,
             what: str = "") -> Conflict | None:
    """None when `live` (the existing object with a rendered name, or None) may be created or
    updated by instance `namespace/instance`; otherwise the Conflict, with the admin's message.
    `what` names the template entry (`pvcs/workspace`) in the message."""
    if live is None or is_owned_by(live, namespace, instance):
        return None
    meta = live.get("metadata") or {}
    kind = str(live.get("kind") or "object")
    obj_ns, name = str(meta.get("namespace") or namespace), str(meta.get("name") or "?")
    owner = owner_of(live)
    ref = f"{kind} {obj_ns}/{name}"
    entry = f" (entry {what})" if what else ""
    if owner is None and adoption_requested(live, instance):
        return None
    if owner is not None:
        message = (f"{ref}, the name this instance's{entry} object gets, already exists and "
                   f"belongs to instance {owner} (its {LABEL_INSTANCE} labels); it is not "
                   f"adopted, patched or deleted. Object names are <instance>-<entry>, so the "
                   f"two instances' names collide: rename this instance or the template entry "
                   f"(hub-made instance names never collide with each other).")
    else:
        message = (f"{ref}, the name this instance's{entry} object gets, already exists and "
                   f"belongs to no jupyternetes instance (it has no {LABEL_INSTANCE} label); it "
                   f"is not adopted, patched or deleted. If it holds this instance's data, hand "
                   f"it over: kubectl annotate {kind.lower()} -n {obj_ns} {name} "
                   f"{ADOPT_ANNOTATION}={instance}; otherwise rename or delete it.")
    return Conflict(kind, obj_ns, name, owner, message)
