"""Deleting a server's instance and waiting for its pods to go, with or without an operator.

The operator destroys an instance's stack (its pods go, its PVCs stay) and then removes the
instance's finalizer. With no operator running (crashed, being upgraded, scaled to zero) nothing
of that happens: a stop would wait its whole `delete_timeout` while the user's pod keeps running.
So `delete_and_wait` gives the operator `pod_grace` seconds; when by then not one of the
instance's pods is gone or terminating (an operator at work deletes them with the stack), the
spawner deletes them itself and returns once they are gone, leaving the instance (marked for
deletion) for the operator to finish when it is back: it destroys the stack (PVCs retained) and
drops the finalizer. An operator that is at work is waited for, up to `timeout`. A start, which
must not create an instance over the old one, passes no grace and waits for the old instance to
be gone.
"""

from __future__ import annotations

import logging
import time

from jupyternetes.kube.errors import KubeError
from jupyternetes.spawner.cluster import SharedCluster

log = logging.getLogger(__name__)

RECHECK_SECONDS = 2.0


def live_pods(pods: list[dict]) -> list[dict]:
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]


async def delete_and_wait(cluster: SharedCluster, name: str, timeout: float,
                          pod_grace: float | None = None, who: str = "") -> None:
    """Delete the instance (if any); return once it and its pods are gone, or, after
    `pod_grace` seconds (None: never), once its pods are gone (deleted here if still there).
    Raises KubeError after `timeout` seconds."""
    started = time.monotonic()
    deleted = await cluster.call(cluster.delete_instance, name)
    if not deleted and not cluster.cached_pods(name):
        return
    pods_deleted = False
    before = {p["metadata"]["name"] for p in cluster.cached_pods(name)}
    while True:
        # Confirmed with the apiserver: the cache may lag behind a fresh deletion.
        if cluster.cached_instance(name) is None and not cluster.cached_pods(name) and (
                await cluster.call(cluster.get_instance, name) is None
                and not await cluster.call(cluster.list_pods, name)):
            return
        waited = time.monotonic() - started
        if pod_grace is not None and waited >= pod_grace:
            pods = await cluster.call(cluster.list_pods, name)
            if pods_deleted and not pods:
                log.warning("jupyternetes: the pods of %s's instance %s/%s are gone; the "
                            "instance waits for the operator to finish its deletion "
                            "(kubectl describe jni %s)", who or name, cluster.namespace,
                            name, name)
                return
            untouched = len(live_pods(pods)) == len(pods) and before <= {
                p["metadata"]["name"] for p in pods}
            if not pods_deleted and pods and untouched:
                # Not one pod touched since the deletion: no operator is at work on it.
                # (Pods gone or terminating mean one is: then wait for it to finish.)
                log.warning("jupyternetes: no operator removed the pods of %s's instance %s/%s "
                            "within %gs of its deletion (is the operator running?); deleting "
                            "them from the hub", who or name, cluster.namespace, name,
                            pod_grace)
                for pod in pods:
                    meta = pod["metadata"]
                    await cluster.call(cluster.delete_pod, meta["name"], meta.get("uid"))
                pods_deleted = True
        if waited > timeout:
            raise KubeError(None, f"instance or its pods still there after {timeout:g}s; see "
                            f"`kubectl describe jni {name}`",
                            f"stop {cluster.namespace}/{name}")
        await cluster.wait_change(name, RECHECK_SECONDS)
