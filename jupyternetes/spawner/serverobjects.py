"""A server's objects (the instance and its `<instance>-hub` token Secret): made together, removed
together, and never left behind by an interrupted spawn or a hub restart.

- `create` (blocking, one executor call): the Secret, the instance, then the instance as the
  Secret's owner. A failure after the Secret removes it again: no ownerless token Secret.
- `create_cancel_safe`: `create` awaited so that the hub cancelling the spawn (a stop while
  starting, a hub shutting down) cannot cut it in half: the creation finishes in its thread and
  what it made is removed in the background (by uid: never a later spawn's objects).
- `remove` (blocking): delete both, by uid when known.
- `remove_leftover`: what a spawn the hub restarted in the middle of left behind.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from jupyternetes.kube.errors import KubeError
from jupyternetes.spawner import manifests
from jupyternetes.spawner.cluster import SharedCluster

log = logging.getLogger(__name__)

# Background clean-ups of interrupted spawns: asyncio keeps only weak references to tasks.
_cleanups: set[asyncio.Task] = set()


@dataclass(frozen=True)
class Created:
    name: str
    secret_uid: str
    instance: dict | None = None

    @property
    def instance_uid(self) -> str:
        return ((self.instance or {}).get("metadata") or {}).get("uid") or ""


def create(cluster: SharedCluster, secret: dict, instance: dict) -> Created:
    name = instance["metadata"]["name"]
    made = cluster.replace_secret(secret)
    created = Created(name, (made.get("metadata") or {}).get("uid") or "")
    try:
        body = cluster.create_instance(instance)
        created = Created(name, created.secret_uid, body)
        cluster.patch_secret(manifests.secret_name(name),
                             manifests.owner_patch(name, created.instance_uid))
    except BaseException:
        try:
            remove(cluster, created)
        except KubeError as exc:
            log.warning("jupyternetes: could not remove the objects of a failed spawn of %s: "
                        "%s", name, exc)
        raise
    return created


def remove(cluster: SharedCluster, created: Created) -> None:
    """Delete the instance and the Secret `create` made (each only if it is still that one)."""
    if created.instance_uid:
        cluster.delete_instance(created.name, created.instance_uid)
    if created.secret_uid:
        cluster.delete_secret(manifests.secret_name(created.name), created.secret_uid)


async def create_cancel_safe(cluster: SharedCluster, secret: dict, instance: dict) -> Created:
    creation = asyncio.ensure_future(cluster.call(create, cluster, secret, instance))
    try:
        return await asyncio.shield(creation)
    except asyncio.CancelledError:
        task = asyncio.ensure_future(_remove_when_made(cluster, creation))
        _cleanups.add(task)
        task.add_done_callback(_cleanups.discard)
        raise


async def _remove_when_made(cluster: SharedCluster, creation: asyncio.Future) -> None:
    try:
        created = await creation
    except Exception:
        return  # `create` failed and removed what it made
    log.info("jupyternetes: spawn of %s interrupted; removing its instance and token Secret",
             created.name)
    try:
        await cluster.call(remove, cluster, created)
    except KubeError as exc:
        log.warning("jupyternetes: could not remove the objects of the interrupted spawn of "
                    "%s: %s", created.name, exc)


def is_servers(instance: dict | None, user_name: str, server_name: str) -> bool:
    """An instance the hub's spawner made for this user's server (by its annotations)."""
    annotations = ((instance or {}).get("metadata") or {}).get("annotations") or {}
    return (instance is not None
            and annotations.get(manifests.USER_ANNOTATION) == user_name
            and annotations.get(manifests.SERVER_ANNOTATION, "") == server_name)


async def remove_leftover(cluster: SharedCluster, name: str, user_name: str, server_name: str,
                          logger: logging.Logger | logging.LoggerAdapter = log) -> bool:
    """Delete what a spawn the hub no longer knows about left (the hub restarted in its
    middle): the instance of that name, if this server's, and its token Secret (made ownerless
    if the hub stopped before the owner patch). Whether there was one."""
    instance = cluster.cached_instance(name)
    if instance is None or not is_servers(instance, user_name, server_name):
        return False
    if (instance.get("metadata") or {}).get("deletionTimestamp"):
        return False
    logger.warning("jupyternetes: instance %s/%s of %s has no server in the hub (a spawn the hub "
                   "was restarted in the middle of); deleting it (its PVCs stay)",
                   cluster.namespace, name, f"{user_name}:{server_name}" if server_name
                   else user_name)
    uid = (instance.get("metadata") or {}).get("uid")
    await cluster.call(cluster.delete_instance, name, uid)
    await cluster.call(cluster.delete_secret, manifests.secret_name(name))
    return True
