"""Pod -> `status.pods[entry]` mirror (pure).

The stack's `up` returns as soon as objects exist (skipAwait); what a user waits for (image pull,
start, readiness) is read from the pod itself and mirrored here. Values are what `kubectl get pod`
would show, condensed to the fields of the status contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Reasons that only say "starting normally"; anything else is worth showing to an admin.
BENIGN_WAITING = frozenset({"ContainerCreating", "PodInitializing"})


def is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's `Ready` condition is True (all containers ready and readiness gates passed)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def first_port(pod: Mapping[str, Any]) -> int | None:
    """The first container's first port: the notebook server the hub proxies to."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                return port["containerPort"]
    return None


def _container_statuses(status: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    # Init containers first: while one of them is stuck, that is the reason the pod is not up.
    yield from status.get("initContainerStatuses") or []
    yield from status.get("containerStatuses") or []


def problem(pod: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(reason, message) explaining why the pod is not (or no longer) running normally."""
    status = pod.get("status") or {}
    for cs in _container_statuses(status):
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason not in BENIGN_WAITING:
            message = waiting.get("message")
            last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
            if last and last != "Completed":
                # CrashLoopBackOff alone hides why it crashed; OOMKilled is the usual answer.
                reason = f"{reason} ({last})"
                message = message or f"container {cs.get('name')} last terminated: {last}"
            return reason, message
        terminated = state.get("terminated") or {}
        if terminated.get("reason") and terminated.get("reason") != "Completed":
            return terminated["reason"], terminated.get("message") or (
                f"container {cs.get('name')} terminated with exit code "
                f"{terminated.get('exitCode')}")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message")
    if status.get("reason"):  # Evicted, NodeLost, ...
        return status["reason"], status.get("message")
    return None, None


def pod_fields(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The mirrored part of `status.pods[entry]` for a live pod.

    None values are meaningful: in a merge patch they clear a reason that no longer applies.
    `state` stays in the provisioning vocabulary: the object exists (Completed) unless the pod
    itself failed.
    """
    status = pod.get("status") or {}
    phase = status.get("phase")
    reason, message = problem(pod)
    return {
        "resourceName": (pod.get("metadata") or {}).get("name"),
        "phase": phase,
        "podAddress": status.get("podIP") or None,
        "portNumber": first_port(pod),
        "ready": is_ready(pod),
        "reason": reason,
        "errorMessage": message,
        "state": "Failed" if phase == "Failed" else "Completed",
    }


def missing_pod_fields(name: str) -> dict[str, Any]:
    """`status.pods[entry]` for a pod the stack declared but that does not exist (yet)."""
    return {"resourceName": name, "phase": None, "podAddress": None, "ready": False,
            "reason": "PodMissing", "errorMessage": f"pod {name} does not exist"}


def changed_fields(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of `wanted` that differs from `current` (None vs absent counts as equal)."""
    current = current or {}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def readiness_summary(expected: Iterable[str],
                      pods: Mapping[str, Mapping[str, Any] | None]) -> tuple[bool, str, str]:
    """(ready, reason, message) for the instance's Ready condition."""
    names = list(expected)
    if not names:
        return True, "NoPods", "the template declares no pods"
    not_ready = []
    for name in names:
        pod = pods.get(name)
        if pod is None:
            not_ready.append(f"{name}: missing")
        elif not is_ready(pod):
            reason, _ = problem(pod)
            phase = (pod.get("status") or {}).get("phase") or "Unknown"
            not_ready.append(f"{name}: {phase}" + (f" ({reason})" if reason else ""))
    if not not_ready:
        return True, "PodsReady", f"all {len(names)} pod(s) ready"
    return False, "PodsNotReady", "not ready: " + "; ".join(not_ready)
