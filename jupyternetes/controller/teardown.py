"""Deletion always ends: what happens when an instance's `destroy` cannot succeed.

The reconciler destroys the stack (PVCs retained) and drops its finalizer. When that keeps
failing, the instance (and its namespace) would be held forever, so:

- after `degraded_after` failed attempts the status (`Degraded`, reason `DestroyStuck`) and a
  Warning Event say why, and name the way out; retries continue with the slowest backoff;
- the way out is the `jupyternetes.kadense.io/force-delete: "true"` annotation (admin.py): the
  instance's pods are deleted with the plain client (never its PVCs), the stack's state is
  removed (`pulumi stack rm --force`; when even that fails, the orphan collector destroys the
  stack later, and a new server of the same name refreshes before its first `up`), and the
  finalizer is dropped;
- in a namespace being deleted a failed destroy is not retried: the namespace controller
  deletes every object there anyway, so the finalizer is dropped at once and the stack left to
  the orphan collector.

`delete` is the reconciler's deletion path; messages are pure functions; all I/O goes through
the reconciler's edges.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from jupyternetes.app.metrics import Metrics
from jupyternetes.controller import edges
from jupyternetes.controller.edges import EnginePort, KubePort, Result
from jupyternetes.controller.status import destroy_failed_patch, summary_text
from jupyternetes.coordination.fence import Fenced
from jupyternetes.crd import labels
from jupyternetes.crd.conditions import SUCCEEDED, stack_is_up
from jupyternetes.crd.labels import (
    FINALIZER,
    FORCE_DELETE,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    MANAGED_BY,
)
from jupyternetes.crd.model import Instance
from jupyternetes.crd.naming import label_value, stack_name
from jupyternetes.engine.masking import OPERATOR_LOG_MASK
from jupyternetes.kube.errors import KubeError
from jupyternetes.render import secretvars
from jupyternetes.render.secretvars import secret_values

log = logging.getLogger(__name__)

DESTROY_STUCK = "DestroyStuck"
DESTROY_FAILED = "DestroyFailed"
DESTROY_SKIPPED = "DestroySkipped"
FORCE_DELETED = "ForceDeleted"


def pod_selector(namespace: str, name: str) -> str:
    """The label selector of an instance's managed pods (the contract labels, render/objects.py)."""
    return (f"{LABEL_INSTANCE}={label_value(name)},{LABEL_INSTANCE_NAMESPACE}={namespace},"
            f"{MANAGED_BY[0]}={MANAGED_BY[1]}")


def force_delete_hint(namespace: str, name: str) -> str:
    return (f"kubectl annotate jni -n {namespace} {name} {FORCE_DELETE}=true (deletes its pods "
            "with the plain client, keeps its PVCs, removes the stack's state and releases the "
            "finalizer)")


def destroy_failed_message(stack: str, engine_message: str, attempts: int, stuck: bool,
                           namespace: str, name: str) -> str:
    why = engine_message or "no error message from the engine"
    if not stuck:
        return (f"destroying stack {stack} failed (attempt {attempts}); retrying with backoff: "
                f"{why}")
    return (f"destroying stack {stack} failed {attempts} times; the instance is held by its "
            f"finalizer until a destroy succeeds (retrying slowly). Fix the cause, or release "
            f"it: {force_delete_hint(namespace, name)}. Last error: {why}")


def destroy_skipped_message(stack: str, engine_message: str, namespace: str) -> str:
    return (f"destroying stack {stack} failed while namespace {namespace} is being deleted; the "
            f"finalizer is released without it (the namespace controller deletes the objects, "
            f"the orphan collector removes the stack): {engine_message}")


def force_delete(kube: KubePort, engine: EnginePort, namespace: str, name: str,
                 stack: str) -> str:
    """Delete the instance's pods, remove its stack's state; the Event text saying what was
    done. Raises KubeError when the pods cannot be deleted (the caller retries)."""
    pods = kube.delete_pods(namespace, pod_selector(namespace, name))
    try:
        result = engine.forget(namespace, name)
        forgot, detail = getattr(result, "result", "") == "succeeded", getattr(
            result, "message", "")
    except (KubeError, Fenced):  # Fenced: not this replica's stack (any more)
        raise
    except Exception as exc:  # the finalizer must still go: that is the point of force-delete
        log.exception("force-delete %s/%s: removing stack %s raised", namespace, name, stack)
        forgot, detail = False, f"{type(exc).__name__}: {exc}"
    deleted = f"pods {', '.join(pods)} deleted" if pods else "no pods left"
    state = (f"stack {stack} removed" if forgot else
             f"stack {stack} could not be removed ({detail}); the orphan collector destroys "
             "it once it can, and a new server of this name refreshes it before its first up")
    return (f"{FORCE_DELETE}: {deleted}, PVCs kept, {state}; finalizer released without a "
            "successful destroy")


def delete(kube: KubePort, engine: EnginePort, obj: dict, instance: Instance, *, failures: int,
           degraded_after: int, secret_variables: Iterable[str], metrics: Metrics | None,
           clock: Callable[[], str]) -> Result:
    """An instance being deleted: destroy its stack (PVCs retained by the program) and drop the
    finalizer; or force-delete, or skip in a namespace being deleted, as the module says."""
    key = f"{instance.namespace}/{instance.name}"
    if FINALIZER not in instance.finalizers:
        return Result("deleting")  # someone else's finalizer holds it; not our business
    stack = stack_name(instance.namespace, instance.name)
    # After a restart the values of an instance being deleted were never seen: mask them in
    # whatever the destroy logs (its Secrets are still there: they are owned by it).
    OPERATOR_LOG_MASK.set(key, [*secret_values(instance, secret_variables), *(
        secretvars.readable_values(instance, kube.get_secret) if instance.secret_refs else ())])
    if labels.force_delete_requested(obj):  # the documented way out (force_delete)
        message = force_delete(kube, engine, instance.namespace, instance.name, stack)
        kube.emit_event(obj, "Warning", FORCE_DELETED, message)
        kube.remove_finalizer(instance.namespace, instance.name)
        return Result("force-deleted", message=message)
    result = edges.run("destroy", lambda: engine.destroy(instance.namespace, instance.name),
                       key, metrics)
    if result.result != SUCCEEDED:
        if kube.namespace_terminating(instance.namespace):
            message = destroy_skipped_message(stack, result.message, instance.namespace)
            kube.emit_event(obj, "Warning", DESTROY_SKIPPED, message)
            kube.remove_finalizer(instance.namespace, instance.name)
            return Result("destroy-skipped", message=message)
        attempts = failures + 1
        stuck = attempts >= degraded_after
        message = destroy_failed_message(stack, result.message, attempts, stuck,
                                         instance.namespace, instance.name)
        patch = destroy_failed_patch(
            obj.get("status") or {}, result, stack=stack, message=message, stuck=stuck,
            stuck_reason=DESTROY_STUCK, generation=instance.generation, now=clock())
        kube.patch_instance_status(instance.namespace, instance.name, patch)
        kube.emit_event(obj, "Warning", DESTROY_STUCK if stuck else DESTROY_FAILED, message)
        return Result("destroy-failed", failed=True, degraded=stuck, message=message)
    leftovers = []
    if not stack_is_up(obj.get("status") or {}):
        # Pods created ahead of an `up` that never succeeded are not in the stack, so the
        # destroy did not see them (createahead.py); the instance's labels name them.
        leftovers = kube.delete_pods(instance.namespace,
                                     pod_selector(instance.namespace, instance.name))
    kube.remove_finalizer(instance.namespace, instance.name)
    kube.emit_event(obj, "Normal", "Destroyed",
                    f"stack {stack} destroyed ({summary_text(result.change_summary)}"
                    + (f"; pods {', '.join(leftovers)} not in the stack deleted"
                       if leftovers else "")
                    + "); PVCs are kept for the next server of this instance name")
    return Result("destroyed")
