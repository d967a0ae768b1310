"""Whose object is it? The rule that keeps one user's objects (and data) away from another user.

Object names are `<instance>-<entry>`, so two instances can render the same name (`alice` +
entry `data-home` and `alice-data` + entry `home` both give `alice-data-home`). An existing
object with a rendered name is this instance's only when

- its labels `jupyternetes.kadense.io/instance` and `.../instanceNamespace` name this instance
  (the operator writes them on everything it makes; a claim retained from this instance's
  earlier server carries them), or
- it has no instance label and an admin annotated it `jupyternetes.kadense.io/adopt: <instance
  name>` (an explicit opt-in, e.g. to take over a claim made by hand or by the original system,
  or a claim released when its account was deleted).

and, when both the instance and the object carry the `jupyternetes.kadense.io/account` label,
the two accounts are the same. Instance names come from user names (`uuid5(user name)`), and a
user deleted and created again gets the same name, but not the same account (the spawner's
account id is made from the account's creation time, which never repeats; the hub's numeric
user id does, as sqlite reuses it). So a later account of the same name never adopts an earlier
account's object, unless an admin hands it over with the adopt annotation. An object without the
account label (made before accounts were labelled) is adopted by its instance as before, and
gets the label with that adoption's apply: once adopted, it is bound to the account.

A third way, for the move from KubeSpawner only: a claim KubeSpawner made for a hub user, when the
template's pvcs entry asks for it (its `jupyternetes.kadense.io/kubespawner-claim` annotation,
which also gives the entry KubeSpawner's claim name; render/objects.py). Such a claim has no
instance label, no `released-from` annotation and no account label, and its
`hub.jupyter.org/username` (and `servername`) annotation, which KubeSpawner writes with the raw
names, equals the instance's own (the spawner's, written from the hub's user). A claim of another
user, one released by a deleted account, or one already bound to an account, is refused like any
other. Once adopted it carries the instance and account labels like every claim of ours.

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

from jupyternetes.crd.labels import (
    ADOPT_ANNOTATION,
    HUB_SERVER_ANNOTATION,
    HUB_USER_ANNOTATION,
    KUBESPAWNER_CLAIM,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    RELEASED_FROM,
)
from jupyternetes.crd.naming import label_value

__all__ = ["ADOPT_ANNOTATION", "Conflict", "account_of", "adoption_requested", "conflict",
           "is_owned_by", "kubespawner_claim_problem", "kubespawner_request", "owner_of"]


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


def account_of(obj: Mapping[str, Any]) -> str | None:
    """The `jupyternetes.kadense.io/account` label of an object (or rendered manifest)."""
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_ACCOUNT)
    return value if isinstance(value, str) and value else None


def kubespawner_request(manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """(hub user, server) whose KubeSpawner claim a rendered claim may adopt, from the
    annotations the render put on it; None when its entry does not ask for that."""
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    user = annotations.get(HUB_USER_ANNOTATION)
    if KUBESPAWNER_CLAIM not in annotations or not isinstance(user, str) or not user:
        return None
    server = annotations.get(HUB_SERVER_ANNOTATION)
    return user, server if isinstance(server, str) else ""


def kubespawner_claim_problem(live: Mapping[str, Any], claimant: tuple[str, str]) -> str | None:
    """None when `live` is the unadopted claim KubeSpawner made for `claimant` (user,
    server); else why it is not."""
    meta = live.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    user, server = claimant
    if annotations.get(RELEASED_FROM):
        return "it was released when its account was deleted"
    if labels.get(LABEL_ACCOUNT):
        return f"it is bound to an account ({LABEL_ACCOUNT} label)"
    owner = annotations.get(HUB_USER_ANNOTATION)
    if owner != user:
        return (f"its {HUB_USER_ANNOTATION} annotation is {owner!r}, not this server's user "
                f"{user!r}" if owner is not None else
                f"it has no {HUB_USER_ANNOTATION} annotation, so it is not KubeSpawner's claim "
                f"of a hub user")
    theirs = annotations.get(HUB_SERVER_ANNOTATION) or ""
    if theirs != server:
        return (f"it is user {user!r}'s claim of server {theirs or '(default)'!r}, not of "
                f"{server or '(default)'!r}")
    return None


def conflict(live: Mapping[str, Any] | None, namespace: str, instance: str,
             what: str = "", account: str | None = None,
             claimant: tuple[str, str] | None = None) -> Conflict | None:
    """None when `live` (the existing object with a rendered name, or None) may be created or
    updated by instance `namespace/instance` of `account` (None: an instance not bound to an
    account); otherwise the Conflict, with the admin's message. `what` names the template entry
    (`pvcs/workspace`) in the message. `claimant` (kubespawner_request of the rendered claim):
    the hub user and server whose KubeSpawner claim may be adopted."""
    if live is None:
        return None
    meta = live.get("metadata") or {}
    kind = str(live.get("kind") or "object")
    obj_ns, name = str(meta.get("namespace") or namespace), str(meta.get("name") or "?")
    ref = f"{kind} {obj_ns}/{name}"
    entry = f" (entry {what})" if what else ""
    hand_over = (f"kubectl annotate {kind.lower()} -n {obj_ns} {name} "
                 f"{ADOPT_ANNOTATION}={instance}")
    if is_owned_by(live, namespace, instance):
        theirs = account_of(live)
        if (account is None or theirs is None or theirs == account
                or adoption_requested(live, instance)):
            return None
        return Conflict(kind, obj_ns, name, owner_of(live), (
            f"{ref}, the name this instance's{entry} object gets, belongs to another account "
            f"of the same name (its {LABEL_ACCOUNT} label is {theirs}, this instance's is "
            f"{account}): a user deleted and created again is a new account, and an earlier "
            f"account's data is never handed to it by name alone. It is not adopted, patched "
            f"or deleted. If this user should have it, hand it over: {hand_over} --overwrite; "
            f"otherwise move or delete it."))
    owner = owner_of(live)
    if owner is None and adoption_requested(live, instance):
        return None
    why_not_kubespawner = ""
    if owner is None and claimant is not None:
        problem = kubespawner_claim_problem(live, claimant)
        if problem is None:
            return None
        why_not_kubespawner = f" It is not adopted as KubeSpawner's claim either: {problem}."
    if owner is not None:
        message = (f"{ref}, the name this instance's{entry} object gets, already exists and "
                   f"belongs to instance {owner} (its {LABEL_INSTANCE} labels); it is not "
                   f"adopted, patched or deleted. Object names are <instance>-<entry>, so the "
                   f"two instances' names collide: rename this instance or the template entry "
                   f"(hub-made instance names never collide with each other).")
    else:
        released = (meta.get("annotations") or {}).get(RELEASED_FROM)
        origin = (f"was released when its account was deleted ({RELEASED_FROM}: {released})"
                  if released else f"belongs to no jupyternetes instance (it has no "
                  f"{LABEL_INSTANCE} label)")
        message = (f"{ref}, the name this instance's{entry} object gets, already exists and "
                   f"{origin}; it is not adopted, patched or deleted.{why_not_kubespawner} If "
                   f"it holds this instance's data, hand it over: {hand_over}; otherwise move "
                   f"or delete it.")
    return Conflict(kind, obj_ns, name, owner, message)
