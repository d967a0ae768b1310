"""Deleting a server's instance and waiting for its pods to go, with or without an operator.

The operator destroys an instance's stack (its pods go, its PVCs stay) and then removes the
instance's finalizer. With no operator running (crashed, being upgraded, scaled to zero) nothing
of that happens: a stop would wait its whole `delete_timeout` while the user's pod keeps running.
So `delete_and_wait` gives the operator `pod_grace` seconds; after that the spawner deletes the
instance's remaining pods itself and returns once they are gone, leaving the instance (marked
for deletion) for the operator to finish when it is back: it destroys the stack (PVCs retained)
and drops the finalizer. A start, which must not create an instance over the old one, passes no
grace and waits for the old instance to be gone.
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
    while True:
        # Confirmed with the apiserver: the cache may lag behind a fresh deletion.
        if cluster.cached_instance(name) is None and not cluster.cached_pods(name) and (
                await cluster.call(cluster.get_instance, name) is None
                and not await cluster.call(cluster.list_pods, name)):
            return
        waited = time.monotonic() - started
        if pod_grace is not None and waited >= pod_grace:
            pods = await cluster.call(cluster.list_pods, name)
            if not pods:
                if pods_deleted:
                    log.warning("jupyternetes: the pods of %s's instance %s/%s are gone; the "
                                "instance waits for the operator to finish its deletion "
                                "(kubectl describe jni %s)", who or name, cluster.namespace,
                                name, name)
                return
            if not pods_deleted:
                log.warning("jupyternetes: no operator removed the pods of %s's instance %s/%s "
                            "within %gs of its deletion (is the operator running?); deleting "
                            "them from the hub", who or name, cluster.namespace, name,
                            pod_grace)
                for pod in live_pods(pods):
                    meta = pod["metadata"]
                    await cluster.call(cluster.delete_pod, meta["name"], meta.get("uid"))
                pods_deleted = True
        if waited > timeout:
            raise KubeError(None, f"instance or its pods still there after {timeout:g}s; see "
                            f"`kubectl describe jni {name}`",
                            f"stop {cluster.namespace}/{name}")
        await cluster.wait_change(name, RECHECK_SECONDS)
