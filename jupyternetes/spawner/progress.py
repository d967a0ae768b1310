"""Spawn progress steps from the instance, its PVCs, its pods and their Events (pure).

Each step is reached when the cluster says so (a condition, a phase, an Event), not by the clock.
Percentages only rise; Events arrive as messages at the current percentage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.definitions import INSTANCE_KIND
from jupyternetes.spawner.decisions import conditions_of


@dataclass(frozen=True)
class Step:
    key: str
    progress: int
    message: str


def _pod_condition(pod: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _started(pod: Mapping[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all((s.get("state") or {}).get("running") for s in statuses)


def status_steps(instance: Mapping[str, Any] | None, pvcs: Sequence[Mapping[str, Any]],
                 pods: Sequence[Mapping[str, Any]],
                 events: Sequence[Mapping[str, Any]] = ()) -> list[Step]:
    """The milestones reached so far, in order."""
    if instance is None:
        return []
    meta = instance.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    steps = [Step("created", 10, f"instance {ref} created")]
    conds = conditions_of(instance)
    provisioned = conds.get("Provisioned") or {}
    reasons = {e.get("reason") for e in events}
    if provisioned or (instance.get("status") or {}).get("stack"):
        steps.append(Step("stack", 20, provisioned.get("message") or "stack update started"))
    if provisioned.get("status") == "True":
        steps.append(Step("stack-up", 40, provisioned.get("message") or "stack is up"))
    if pvcs and all((p.get("status") or {}).get("phase") == "Bound" for p in pvcs):
        names = ", ".join(sorted((p.get("metadata") or {}).get("name", "") for p in pvcs))
        steps.append(Step("pvc-bound", 50, f"volume(s) bound: {names}"))
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if live and (all(_pod_condition(p, "PodScheduled") for p in live) or "Scheduled" in reasons):
        node = ((live[0].get("spec") or {}).get("nodeName")) or "a node"
        steps.append(Step("scheduled", 60, f"pod scheduled on {node}"))
    if "Pulling" in reasons or "Pulled" in reasons:
        steps.append(Step("pulling", 70, "pulling the image"))
    if live and (all(_started(p) for p in live) or "Started" in reasons):
        steps.append(Step("started", 80, "container started"))
    ready = conds.get("Ready") or {}
    if ready.get("status") == "True" and provisioned.get("status") == "True":
        steps.append(Step("ready", 90, "server ready; waiting for it to answer"))
    return steps


def event_key(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    return f"{meta.get('uid') or meta.get('name')}:{event.get('count') or 1}"


def event_message(event: Mapping[str, Any]) -> str:
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").replace(INSTANCE_KIND, "instance").lower()
    prefix = "warning: " if event.get("type") == "Warning" else ""
    return f"{prefix}{kind} {involved.get('name')}: {event.get('reason')}: {event.get('message')}"


def sorted_events(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    def when(e: Mapping[str, Any]) -> str:
        return (e.get("lastTimestamp") or e.get("eventTime")
                or (e.get("metadata") or {}).get("creationTimestamp") or "")
    return sorted(events, key=when)


class ProgressTracker:
    """Turns successive snapshots into new progress messages, each reported once."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.percent = 0

    def update(self, steps: Sequence[Step],
               events: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for step in steps:
            if step.key in self.seen:
                continue
            self.seen.add(step.key)
            self.percent = max(self.percent, step.progress)
            out.append({"progress": self.percent, "message": step.message})
        for event in sorted_events(events):
            key = "event:" + event_key(event)
            if key in self.seen:
                continue
            self.seen.add(key)
            out.append({"progress": self.percent, "message": event_message(event)})
        return out
