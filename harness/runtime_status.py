"""Pod status written by the harness's container runtime (pure): what a kubelet reports when
containers start, cannot be configured, or exit. Used by `harness.podrunner`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PID_SCHEME = "pid://"  # containerStatuses[].containerID of a running process: pid://<pid>


def exit_code(returncode: int) -> int:
    """Popen's returncode as a kubelet reports it: a signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def terminated_status(pod: Mapping[str, Any], exits: Mapping[str, tuple[int, str, str]],
                      now: str) -> dict[str, Any]:
    """Pod status once its processes ended: `exits` maps container name -> (exit code,
    startedAt, containerID). Failed if any container failed, else Succeeded (no restarts)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    failed = any(code != 0 for code, _, _ in exits.values())
    statuses = []
    for c in containers:
        code, started, container_id = exits.get(c["name"], (137, now, ""))
        statuses.append({
            "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
            "restartCount": 0, "started": False, "containerID": container_id,
            "state": {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed",
                                     "startedAt": started, "finishedAt": now,
                                     "containerID": container_id}},
        })
    not_ready = {"status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
    return {"phase": "Failed" if failed else "Succeeded", "containerStatuses": statuses,
            "conditions": [{"type": "Ready", **not_ready},
                           {"type": "ContainersReady", **not_ready}]}


def started_status(pod: Mapping[str, Any], started: Mapping[str, str],
                   container_ids: Mapping[str, str], now: str) -> dict[str, Any]:
    """Pod status once its processes run: each container running (its containerID names the
    pid) and ready (no probes are played), the pod Ready."""
    statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                 "restartCount": 0, "started": True,
                 "containerID": container_ids.get(c["name"], ""),
                 "state": {"running": {"startedAt": started.get(c["name"], now)}}}
                for c in (pod.get("spec") or {}).get("containers") or []]
    ready = {"status": "True", "lastTransitionTime": now}
    return {"phase": "Running", "containerStatuses": statuses,
            "conditions": [{"type": "Ready", **ready}, {"type": "ContainersReady", **ready}]}


def config_error_status(pod: Mapping[str, Any], message: str, now: str) -> dict[str, Any]:
    """Pod status when a container cannot be configured (missing Secret/ConfigMap/key)."""
    statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                 "restartCount": 0, "started": False,
                 "state": {"waiting": {"reason": "CreateContainerConfigError",
                                       "message": message}}}
                for c in (pod.get("spec") or {}).get("containers") or []]
    not_ready = {"status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now,
                 "message": message}
    return {"containerStatuses": statuses,
            "conditions": [{"type": "Ready", **not_ready},
                           {"type": "ContainersReady", **not_ready}]}
