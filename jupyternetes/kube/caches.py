"""What the operator's watch caches keep of each object (pure): only the fields it reads.

At 5,000 instances the caches are most of the operator's memory, and most of each object is
never read: `metadata.managedFields` (every writer's field list, larger than the status it
describes), `kubectl`'s last-applied copy, and on pods the whole spec but the ports, volumes,
images, tolerations, node and scheduling fields. client-go calls this an informer's transform;
each function here is one, applied to every listed and watched object before it is cached or
handed to a handler, and idempotent (a transformed object comes out unchanged).

What is read, and by whom (keep this list true when code starts reading a new field):
- instances: all of spec, status and metadata (reconcile.py reads the instance from the cache on
  its no-op path) except the two bookkeeping fields dropped here;
- templates: the same (the template is rendered from the cache);
- pods: podstatus.py (phase, podIP, conditions, container statuses, reason/message, the first
  container port), status.current_pods (uid), run.on_pod (labels, namespace, deletionTimestamp),
  watch.py (resourceVersion); the hub's spawner caches pods and instances through the same
  functions (spawner/cluster.py): decisions.py and stopping.py read the same fields, progress.py
  also spec.nodeName.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from jupyternetes.crd.labels import MANAGED_SELECTOR
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import KubeSource

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Strings up to this length are interned in cached objects (see `shared_strings`).
INTERN_MAX_LENGTH = 64

POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "labels",
                "deletionTimestamp", "creationTimestamp")
POD_STATUS = ("phase", "podIP", "reason", "message", "conditions", "containerStatuses",
              "initContainerStatuses")
POD_CONDITION = ("type", "status", "reason", "message")
CONTAINER_STATUS = ("name", "state", "lastState", "ready", "started")


def _pick(obj: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: obj[key] for key in keys if key in obj}


def _metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    slim = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = slim.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
        slim["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return slim


def shared_strings(value: Any) -> Any:
    """`value` rebuilt with every dict key and every string up to INTERN_MAX_LENGTH interned.

    Each watch event is decoded on its own, so every cached object holds its own copy of every
    key ("metadata", "lastTransitionTime", ...) and of every repeated value ("True", "Ready",
    the template's name, label values): at 5,000 instances the keys alone are a fifth of the
    caches' memory (benchmarks/README.md). Interned, all objects share one copy. Equal in value
    to `value` (== holds), and a fixed point."""
    if isinstance(value, dict):
        return {sys.intern(k) if isinstance(k, str) else k: shared_strings(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [shared_strings(v) for v in value]
    if isinstance(value, str) and len(value) <= INTERN_MAX_LENGTH:
        return sys.intern(value)
    return value


def custom_object(obj: dict) -> dict:
    """An instance or a template without managedFields and the last-applied annotation, its
    strings shared (`shared_strings`)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return obj
    if "managedFields" in meta or LAST_APPLIED in (meta.get("annotations") or {}):
        obj = {**obj, "metadata": _metadata(meta)}
    return shared_strings(obj)


def pod(obj: dict) -> dict:
    """The fields of a pod that the operator reads (module docstring)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    containers = [{"name": c.get("name"), "ports": [
        _pick(p, ("name", "containerPort", "protocol")) for p in c.get("ports") or []
        if isinstance(p, Mapping)]}
        for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    slim_status = _pick(status, POD_STATUS)
    if "conditions" in slim_status:
        slim_status["conditions"] = [_pick(c, POD_CONDITION) for c in status["conditions"]
                                     if isinstance(c, Mapping)]
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in slim_status:
            slim_status[key] = [_pick(c, CONTAINER_STATUS) for c in status[key]
                                if isinstance(c, Mapping)]
    slim_spec: dict[str, Any] = {"containers": containers}
    if "nodeName" in spec:
        slim_spec["nodeName"] = spec["nodeName"]
    return shared_strings({"metadata": _pick(meta, POD_METADATA), "spec": slim_spec,
                           "status": slim_status})


def name_only(obj: dict) -> dict:
    """Namespace and name: for a list that only wants to know which objects exist."""
    return {"metadata": _pick(obj.get("metadata") or {}, ("namespace", "name"))}


def instance_names(kube: Kube, scopes: Sequence[str | None]) -> list[tuple[str, str]]:
    """(namespace, name) of every instance in the served scopes, fresh from the apiserver
    (not the watch cache, which may lag an instance created a moment ago)."""
    names = []
    for ns in scopes:
        # Names only, page by page: at 5,000 instances a full list is 100+ MB of objects.
        items, _ = kube.list_instances(ns, name_only)
        names += [(i["metadata"].get("namespace", ""), i["metadata"].get("name", ""))
                  for i in items]
    return names


def instance_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_instances(namespace, custom_object),
                      lambda rv, timeout: kube.watch_instances(namespace, rv, timeout))


def template_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_templates(namespace, custom_object),
                      lambda rv, timeout: kube.watch_templates(namespace, rv, timeout))


def pod_source(kube: Kube, namespace: str | None) -> KubeSource:
    return KubeSource(lambda: kube.list_pods(namespace, MANAGED_SELECTOR, pod),
                      lambda rv, timeout: kube.watch_pods(namespace, MANAGED_SELECTOR, rv,
                                                          timeout))


def namespace_source(kube: Kube, selector: str) -> KubeSource:
    """The namespaces labelled `selector`, names only (the operator's label-selected scopes)."""
    return KubeSource(lambda: kube.list_namespaces(selector, name_only),
                      lambda rv, timeout: kube.watch_namespaces(selector, rv, timeout))
