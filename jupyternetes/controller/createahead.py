"""Create ahead: a new server's claims and pods exist before its stack's first `up` has run.

A spawn waits for its pod. The first `up` (a CLI process, its provider plugin, the passphrase
key derivation, the create guard's reads) takes 0.6-1.3 s on a quiet machine and several
seconds on a busy one, all of it before the pod exists, where KubeSpawner creates the pod at
once. So on the first `up` of an instance the operator applies the PVCs and pods the preflight
found absent itself: the very objects the stack declares (engine/applied.py), with the stack's
own server-side-apply field manager. The `up` that follows takes them over: its create is a
server-side apply of the same object by the same manager (nothing changes), and its create
guard finds the instance's own object. The stack owns them from then on, as if it had made
them.

When (`worth_it`): on the first `up` of an instance object (no `status.stack.lastUpdate`),
and only while no other instance waits for a reconcile worker. With a backlog the machine is
busy with `up`s, which is what every waiting user needs next; a pod started a few `up`s early
then competes with them for the CPU without shortening anyone's wait (measured: bursts of 20 on
two cores used ~8 % more control-side CPU with it). A single start, the common case, gains the
whole `up` (benchmarks/README.md).

What it never does:
- an update, a replacement or a drift repair: those are the engine's alone;
- apply over an existing object: each object is read right before its apply, and one that
  exists is left to the `up` (the window between that read and the apply is the one the
  engine's create guard has between its read and the provider's apply). One that is not the
  instance's own (policy/ownership.py, the rule of the preflight and the guard) stops the
  create-ahead there: the `up`'s guard refuses it with the admin's message;
- create a pod when one of its instance's claims could not be applied (the pod would mount
  nothing, or wait);
- other kinds (Services, RBAC, ...): the stack alone makes them;
- fail the reconcile: an apply that fails is logged and left to the `up`, which makes the object
  or reports why it cannot. Only the fence stops it (a replica that may not write, writes
  nothing).

Leftovers: when the instance is deleted before any `up` of it succeeded, teardown deletes the
instance's pods by label after the destroy; its claims stay, as every claim does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from jupyternetes.crd.model import Instance
from jupyternetes.engine.applied import FIELD_MANAGER, applied_manifest
from jupyternetes.kube.errors import KubeError
from jupyternetes.policy import ownership
from jupyternetes.render.objects import Rendered, RenderedObject

log = logging.getLogger(__name__)


class ApplyPort(Protocol):
    def get_object(self, api_version: str, kind: str, namespace: str | None,
                   name: str) -> dict | None: ...
    def apply_object(self, manifest: dict, field_manager: str) -> dict: ...


def worth_it(enabled: bool, first_up: bool, drift: bool, waiting: int) -> bool:
    """Create ahead for this `up`? `waiting`: instances queued for a reconcile worker now."""
    return enabled and first_up and not drift and waiting == 0


def wanted(rendered: Rendered, absent: Collection[tuple[str, str]]) -> list[RenderedObject]:
    """The claims, then the pods, of `rendered` whose (group, entry) the preflight read as
    absent."""
    return [obj for obj in (*rendered.pvcs, *rendered.pods)
            if (obj.group, obj.entry) in absent]


def without_nulls(value: Any) -> Any:
    """`value` without null mapping values: the engine drops them from what it applies, so the
    object applied ahead must not hold them either (a field set only here would be removed by
    the `up`'s apply of the same manager)."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def body(obj: RenderedObject) -> dict:
    """What is applied for `obj`: exactly what the stack's program declares for it."""
    return without_nulls(applied_manifest(obj.group, obj.manifest))


def create(kube: ApplyPort, objects: Iterable[RenderedObject], instance: Instance,
           key: str) -> list[str]:
    """Apply `objects` (from `wanted`) in order, each only if it is still absent; returns
    `<Kind> <namespace>/<name>` of each one applied. A claim that fails keeps every pod back;
    an object of another instance or account stops it all."""
    done: list[str] = []
    claim_failed = False
    for obj in objects:
        what = f"{obj.kind} {obj.namespace}/{obj.name}"
        if obj.group == "pods" and claim_failed:
            log.info("instance %s: %s not created ahead (a claim could not be); the up makes it",
                     key, what, extra={"instance": key})
            continue
        try:
            live = kube.get_object(obj.api_version, obj.kind, obj.namespace, obj.name)
            if live is not None:
                if ownership.conflict(live, instance.namespace, instance.name,
                                      f"{obj.group}/{obj.entry}", instance.account,
                                      ownership.kubespawner_request(obj.manifest)) is not None:
                    log.info("instance %s: %s appeared and is not this instance's; nothing "
                             "more is created ahead (the up refuses it)", key, what,
                             extra={"instance": key})
                    return done
                continue  # the instance's own: the up takes it over as it is
            kube.apply_object(body(obj), FIELD_MANAGER)
        except KubeError as exc:
            claim_failed = claim_failed or obj.group == "pvcs"
            log.info("instance %s: creating %s ahead of the up failed (%s); the up makes it",
                     key, what, exc, extra={"instance": key})
            continue
        done.append(what)
    return done
