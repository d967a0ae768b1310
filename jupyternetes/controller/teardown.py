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

Messages are pure functions; `force_delete` is the only I/O here, through the reconciler's
edges.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from jupyternetes.crd.labels import (
    FORCE_DELETE,
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    MANAGED_BY,
)
from jupyternetes.crd.naming import label_value
from jupyternetes.kube.errors import KubeError

log = logging.getLogger(__name__)

DESTROY_STUCK = "DestroyStuck"
DESTROY_FAILED = "DestroyFailed"
DESTROY_SKIPPED = "DestroySkipped"
FORCE_DELETED = "ForceDeleted"


class TeardownKube(Protocol):
    def delete_pods(self, namespace: str, selector: str) -> list[str]: ...


class TeardownEngine(Protocol):
    def forget(self, namespace: str, name: str) -> Any: ...


def pod_selector(namespace: str, name: str) -> str:
    """The label selector of an instance's managed pods (the contract labels, render.py)."""
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


def force_delete(kube: TeardownKube, engine: TeardownEngine, namespace: str, name: str,
                 stack: str) -> str:
    """Delete the instance's pods, remove its stack's state; the Event text saying what was
    done. Raises KubeError when the pods cannot be deleted (the caller retries)."""
    pods = kube.delete_pods(namespace, pod_selector(namespace, name))
    try:
        result = engine.forget(namespace, name)
        forgot, detail = getattr(result, "result", "") == "succeeded", getattr(
            result, "message", "")
    except KubeError:
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
