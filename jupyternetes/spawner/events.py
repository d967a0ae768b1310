"""Which Events the hub keeps, and how much of each (pure).

The hub watches the Events of its namespace only to show spawn progress. A namespace also holds
the Events of everything else that runs there (at 35,000 Events KubeSpawner's hub ran out of
memory, its issue 913), so the shared watch keeps an Event only when it is about one of the
hub's own instances or their pods (`is_ours`), keeps only the fields `progress` reads
(`slim`, message cut at MAX_MESSAGE), and forgets an object's Events when the object is deleted
(SharedCluster). What it holds is then bounded by the hub's live servers times the few distinct
Events each has within the apiserver's Event TTL (1 h by default; repeats only raise `count`),
and at most MAX_PER_OBJECT per instance or pod (`age`: the oldest go first) whatever it emits:
a pod that changes its message on every restart cannot grow the hub without bound.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from jupyternetes.crd.definitions import INSTANCE_KIND

MAX_MESSAGE = 1024
# Events kept per instance or pod: progress shows a spawn's last steps, never dozens.
MAX_PER_OBJECT = 50
# What progress.py reads (event_key, event_message, sorted_events) and the cache needs (key).
METADATA_FIELDS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
EVENT_FIELDS = ("reason", "type", "count", "lastTimestamp", "eventTime")
INVOLVED_FIELDS = ("kind", "name", "namespace", "uid")


def slim(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an Event the hub reads; idempotent."""
    meta = event.get("metadata") or {}
    out: dict[str, Any] = {"kind": "Event",
                           "metadata": {k: meta[k] for k in METADATA_FIELDS if k in meta}}
    involved = event.get("involvedObject") or {}
    out["involvedObject"] = {k: involved[k] for k in INVOLVED_FIELDS if k in involved}
    for key in EVENT_FIELDS:
        if key in event:
            out[key] = event[key]
    message = event.get("message")
    if isinstance(message, str):
        out["message"] = message if len(message) <= MAX_MESSAGE else (
            message[:MAX_MESSAGE - 3] + "...")
    return out


def involved_uid(event: Mapping[str, Any]) -> str | None:
    """The uid of the object an Event is about: Events are filed, capped and forgotten by it."""
    return (event.get("involvedObject") or {}).get("uid") or None


def age(event: Mapping[str, Any]) -> str:
    """When an Event last happened, as a string that sorts in time order: lastTimestamp (whole
    seconds) or eventTime (microseconds), else its creation; "" when it has none."""
    meta = event.get("metadata") or {}
    stamp = str(event.get("lastTimestamp") or event.get("eventTime")
                or meta.get("creationTimestamp") or "")
    if stamp.endswith("Z"):
        seconds, _, fraction = stamp[:-1].partition(".")
        stamp = f"{seconds}.{fraction.ljust(6, '0')[:6]}Z"
    return stamp


def instance_of_pod_name(pod_name: str, instance_names: Container[str]) -> str | None:
    """The instance whose object name (`<instance>-<entry>`, crd.naming.object_name) `pod_name`
    is, by its longest prefix before a `-` that is one of `instance_names`."""
    cut = pod_name.rfind("-")
    while cut > 0:
        if pod_name[:cut] in instance_names:
            return pod_name[:cut]
        cut = pod_name.rfind("-", 0, cut)
    return None


def is_ours(event: Mapping[str, Any], instance_names: Container[str],
            pod_names: Container[str]) -> bool:
    """About one of the hub's instances, or a pod of one: a pod the hub's pod cache holds, or
    (its Event can come before the pod reaches the cache) a pod named after one of them."""
    involved = event.get("involvedObject") or {}
    name = involved.get("name") or ""
    kind = involved.get("kind")
    if kind == INSTANCE_KIND:
        return name in instance_names
    if kind == "Pod":
        return name in pod_names or instance_of_pod_name(name, instance_names) is not None
    return False
