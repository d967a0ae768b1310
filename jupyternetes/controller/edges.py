"""The reconciler's edges: the Kubernetes and stack-engine calls it is written against, as
protocols, so its decisions are unit-tested with recorders and run with `Kube` and `StackEngine`;
the `Result` it answers the controller with; `run`, one engine call made safe; and `FencedKube`,
the kube edge behind the fence (coordination/fence.py)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.status import summary_text
from jupyternetes.coordination.fence import Fence, Fenced
from jupyternetes.crd.conditions import FAILED
from jupyternetes.kube.errors import KubeError
from jupyternetes.render.objects import Rendered


@dataclass(frozen=True)
class Result:
    """What one reconcile did, for the controller's queue (retry, come back later) and logs."""

    action: str
    requeue_after: float | None = None
    failed: bool = False
    degraded: bool = False
    message: str = ""


class KubePort(Protocol):
    def get_instance(self, namespace: str, name: str) -> dict | None: ...
    def get_template(self, namespace: str, name: str) -> dict | None: ...
    def get_pod(self, namespace: str, name: str) -> dict | None: ...
    def get_secret(self, namespace: str, name: str) -> dict | None: ...
    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None: ...
    def add_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def remove_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def namespace_terminating(self, namespace: str) -> bool: ...
    def delete_pods(self, namespace: str, selector: str) -> list[str]: ...
    def apply_object(self, manifest: dict, field_manager: str) -> dict: ...
    def emit_event(self, instance: dict, event_type: str, reason: str, message: str) -> None: ...
    def get_object(self, api_version: str, kind: str, namespace: str | None,
                   name: str) -> dict | None: ...
    def list_pvcs(self, namespace: str, selector: str) -> list[dict]: ...


class OperationResultLike(Protocol):
    operation: str
    result: str
    started_at: str
    finished_at: str
    change_summary: dict[str, int]
    outputs: dict
    message: str
    engine_seconds: float


class EnginePort(Protocol):
    def up(self, namespace: str, name: str, rendered: Rendered, secret_values: Any,
           refresh: bool = False) -> OperationResultLike: ...
    def destroy(self, namespace: str, name: str) -> OperationResultLike: ...
    def forget(self, namespace: str, name: str) -> OperationResultLike: ...


log = logging.getLogger("jupyternetes.operator.reconcile")


@dataclass
class RaisedResult:
    """The failed result of an engine call that raised."""

    operation: str
    message: str
    result: str = FAILED
    started_at: str | None = None
    finished_at: str | None = None
    change_summary: dict[str, int] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    engine_seconds: float = 0.0


def run(operation: str, call: Callable[[], Any], key: str, metrics: Metrics | None) -> Any:
    """`call()`'s result (an OperationResult-like object), or a RaisedResult."""
    started = time.monotonic()
    log.info("instance %s: %s starting", key, operation, extra={"instance": key})
    try:
        result = call()
    except (KubeError, Fenced):  # Fenced: not this replica's stack (any more); dropped
        raise
    except Exception as exc:
        log.exception("instance %s: %s raised", key, operation, extra={"instance": key})
        result = RaisedResult(operation, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    if metrics:
        metrics.observe_engine(operation, result.result, seconds)
    log.info("instance %s: %s %s in %.2fs (%s)", key, operation, result.result, seconds,
             summary_text(result.change_summary or {}), extra={"instance": key})
    return result


class FencedKube:
    """The kube port, every write behind the fence: a status patch, a finalizer change, an
    Event or a pod deletion is made only while this replica may write the instance's stack,
    asked right before the write; otherwise `Fenced` is raised and nothing is written. Writes
    that name no instance (a pod selector) are fenced by the instance being reconciled on this
    thread (`serving`)."""

    def __init__(self, kube: Any, fence: Fence) -> None:
        self._kube = kube
        self._fence = fence
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    @contextlib.contextmanager
    def serving(self, key: str) -> Iterator[None]:
        self._local.key = key
        try:
            yield
        finally:
            self._local.key = None

    def _check(self, key: str | None, what: str) -> None:
        key = key or getattr(self._local, "key", None)
        if key is not None:
            self._fence.check_key(key, what)

    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None:
        self._check(f"{namespace}/{name}", "status patch")
        return self._kube.patch_instance_status(namespace, name, status)

    def add_finalizer(self, namespace: str, name: str, *args: Any) -> dict | None:
        self._check(f"{namespace}/{name}", "finalizer")
        return self._kube.add_finalizer(namespace, name, *args)

    def remove_finalizer(self, namespace: str, name: str, *args: Any) -> dict | None:
        self._check(f"{namespace}/{name}", "finalizer removal")
        return self._kube.remove_finalizer(namespace, name, *args)

    def apply_object(self, manifest: dict, field_manager: str) -> dict:
        meta = manifest.get("metadata") or {}
        self._check(None, f"apply of {manifest.get('kind')} {meta.get('namespace')}/"
                          f"{meta.get('name')}")
        return self._kube.apply_object(manifest, field_manager)

    def delete_pods(self, namespace: str, selector: str) -> list[str]:
        self._check(None, f"deletion of pods {selector}")
        return self._kube.delete_pods(namespace, selector)

    def emit_event(self, instance: dict, event_type: str, reason: str, message: str) -> None:
        meta = instance.get("metadata") or {}
        self._check(f"{meta.get('namespace')}/{meta.get('name')}", f"{reason} Event")
        self._kube.emit_event(instance, event_type, reason, message)
