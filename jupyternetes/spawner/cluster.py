"""The hub process's one view of the cluster: a shared client, one watch per collection, futures.

Every spawner in the hub shares one `SharedCluster` per (kubeconfig, context, namespace): one
list+watch each of the hub's instances, the managed pods and PVCs, and the Events about instances
and pods, in a handful of daemon threads (not one per user). Of the Events it keeps only those
about the hub's own instances and their pods, slimmed, and forgets them with their object
(spawner.events): a namespace's other Events never reach the hub's memory. Watch threads wake
the spawners waiting on an instance through `loop.call_soon_threadsafe`; blocking API calls run
in a small thread pool, so nothing blocks the hub's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client.exceptions import ApiException

from jupyternetes.crd.definitions import API_VERSION, GROUP, INSTANCE_KIND, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE, MANAGED_SELECTOR
from jupyternetes.kube.client import MERGE_PATCH, Kube, api_client
from jupyternetes.kube.errors import KubeError, WatchExpired, api_message, to_kube_error
from jupyternetes.kube.informer import DELETED, KubeSource, ListWatcher
from jupyternetes.kube.listwatch import WatchStream, watch_kwargs
from jupyternetes.spawner import events
from jupyternetes.spawner.manifests import SPAWNER_SELECTOR

log = logging.getLogger(__name__)

FIELD_MANAGER = "jupyternetes-spawner"
WATCH_TIMEOUT = 240
OPTIONAL_SYNC_SECONDS = 5.0


class _CachedNames:
    """`name in names`: whether a watch cache holds `<namespace>/<name>` (one dict lookup, no
    copy of the cache per Event)."""

    def __init__(self, watcher: ListWatcher, namespace: str) -> None:
        self.watcher, self.prefix = watcher, f"{namespace}/"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.watcher.get(self.prefix + name) is not None


class SharedCluster:
    """Watch caches and API calls for the hub's instances in one namespace."""

    _shared: dict[tuple, SharedCluster] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def get(cls, namespace: str, kubeconfig: str | None = None, context: str | None = None,
            workers: int = 8) -> SharedCluster:
        key = (namespace, kubeconfig or "", context or "")
        with cls._shared_lock:
            cluster = cls._shared.get(key)
            if cluster is None:
                cluster = cls(namespace, Kube(api_client(kubeconfig, context),
                                              component=FIELD_MANAGER), workers)
                cls._shared[key] = cluster
            return cluster

    def __init__(self, namespace: str, kube: Kube, workers: int = 8) -> None:
        self.namespace = namespace
        self.kube = kube
        self.executor = ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="jupyternetes-api")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._start_lock = asyncio.Lock()
        ns = namespace
        self.instances = ListWatcher(
            f"hub-instances@{ns}", self._custom_source(INSTANCE_PLURAL, SPAWNER_SELECTOR),
            self._on_owner_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT)
        self.pods = ListWatcher(
            f"hub-pods@{ns}", self._core_source("pod", label=MANAGED_SELECTOR),
            self._on_owner_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT)
        self.pvcs = ListWatcher(
            f"hub-pvcs@{ns}",
            self._core_source("persistent_volume_claim", label=MANAGED_SELECTOR),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT)
        self.instance_events = ListWatcher(
            f"hub-instance-events@{ns}",
            self._core_source("event", field=f"involvedObject.kind={INSTANCE_KIND}"),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            keep=self._event_is_ours, transform=events.slim)
        self.pod_events = ListWatcher(
            f"hub-pod-events@{ns}", self._core_source("event", field="involvedObject.kind=Pod"),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            keep=self._event_is_ours, transform=events.slim)
        self.watchers = [self.instances, self.pods, self.pvcs, self.instance_events,
                         self.pod_events]
        self._started = False
        self._owners_started = False
        self._threads_started = False

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> None:
        """Start the watches once (on the hub's loop) and wait for their first lists."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            self.loop = asyncio.get_running_loop()
            owners = (self.instances, self.pods)
            if not self._owners_started:
                for watcher in owners:
                    watcher.start()
                self._owners_started = True
            for watcher in owners:
                synced = await self.call(watcher.wait_synced, timeout)
                if not synced:
                    raise KubeError(None, f"no list of {watcher.name} after {timeout:g}s; is the "
                                    "apiserver reachable and does the hub's RBAC allow it?",
                                    watcher.name)
            if not self._threads_started:
                # After the instances and pods are listed: the Event filter asks those caches.
                for watcher in self.watchers:
                    if watcher not in owners:
                        watcher.start()
                self._threads_started = True
            # PVCs and Events only feed progress messages: without them (RBAC without
            # list/watch on persistentvolumeclaims or events) spawns work, with fewer steps.
            for watcher in (self.pvcs, self.instance_events, self.pod_events):
                if not await self.call(watcher.wait_synced, OPTIONAL_SYNC_SECONDS):
                    log.warning("%s not listed after %gs (RBAC?); progress goes on without it",
                                watcher.name, OPTIONAL_SYNC_SECONDS)
            self._started = True

    def stop(self) -> None:
        for watcher in self.watchers:
            watcher.stop(timeout=1)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ---- change notification ----------------------------------------------------------------

    def instance_of(self, obj: dict) -> str | None:
        """The instance an object is about (instance, its pods/PVCs, Events on either)."""
        kind = obj.get("kind") or ""
        if kind == "Event" or "involvedObject" in obj:
            involved = obj.get("involvedObject") or {}
            if involved.get("kind") == INSTANCE_KIND:
                return involved.get("name")
            pod = self.pods.get(f"{self.namespace}/{involved.get('name')}")
            if pod is not None:
                return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE)
            return None
        meta = obj.get("metadata") or {}
        if kind == INSTANCE_KIND or obj.get("apiVersion") == API_VERSION:
            return meta.get("name")
        return (meta.get("labels") or {}).get(LABEL_INSTANCE)

    def _on_change(self, event_type: str, obj: dict) -> None:
        name = self.instance_of(obj)
        if name and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake, name)

    def _on_owner_change(self, event_type: str, obj: dict) -> None:
        """An instance or pod changed; once deleted, its Events are forgotten with it."""
        self._on_change(event_type, obj)
        if event_type == DELETED:
            uid = (obj.get("metadata") or {}).get("uid")
            for watcher in (self.instance_events, self.pod_events):
                watcher.discard(lambda e: (e.get("involvedObject") or {}).get("uid") == uid)

    def _event_is_ours(self, event: dict) -> bool:
        return events.is_ours(event, _CachedNames(self.instances, self.namespace),
                              _CachedNames(self.pods, self.namespace))

    def _wake(self, name: str) -> None:
        for future in self._waiters.pop(name, set()):
            if not future.done():
                future.set_result(None)

    async def wait_change(self, name: str, timeout: float) -> None:
        """Return when something about instance `name` changed, or after `timeout` seconds."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, set()).add(future)
        try:
            # Not asyncio.wait_for: on Python 3.11 it returns normally when a cancel (the hub
            # interrupting a spawn) arrives together with the wake-up, and the cancel is lost.
            await asyncio.wait((future,), timeout=timeout)
        finally:
            waiting = self._waiters.get(name)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    self._waiters.pop(name, None)

    # ---- cache reads ------------------------------------------------------------------------

    def cached_instance(self, name: str) -> dict | None:
        return self.instances.get(f"{self.namespace}/{name}")

    def _labelled(self, watcher: ListWatcher, name: str) -> list[dict]:
        return [o for o in watcher.items()
                if ((o.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE) == name]

    def cached_pods(self, name: str) -> list[dict]:
        return self._labelled(self.pods, name)

    def cached_pvcs(self, name: str) -> list[dict]:
        return self._labelled(self.pvcs, name)

    def cached_events(self, name: str) -> list[dict]:
        """Events about the current instance of that name and its current pods (by uid: an
        earlier instance of the same name, or its pods, had other uids)."""
        instance = self.cached_instance(name)
        if instance is None:
            return []
        uid = (instance.get("metadata") or {}).get("uid")
        pod_uids = {(p.get("metadata") or {}).get("uid") for p in self.cached_pods(name)}
        found = [e for e in self.instance_events.items()
                 if (e.get("involvedObject") or {}).get("uid") == uid]
        found += [e for e in self.pod_events.items()
                  if (e.get("involvedObject") or {}).get("uid") in pod_uids]
        return found

    # ---- API calls (blocking; run through `call`) --------------------------------------------

    def get_instance(self, name: str) -> dict | None:
        return self.kube.get_instance(self.namespace, name)

    def create_instance(self, body: dict) -> dict:
        try:
            return self.kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_PLURAL, body,
                field_manager=FIELD_MANAGER)
        except ApiException as exc:
            raise to_kube_error(exc, f"create instance {self.namespace}/"
                                     f"{body['metadata']['name']}") from exc

    def delete_instance(self, name: str, uid: str | None = None) -> bool:
        """Delete (only the object with that `uid`, when given); False when it was not there
        (or is another object of the same name)."""
        try:
            self.kube.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_PLURAL, name,
                body=_preconditions(uid))
            return True
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False
            raise to_kube_error(exc, f"delete instance {self.namespace}/{name}") from exc

    def delete_secret(self, name: str, uid: str | None = None) -> bool:
        """Delete (only the object with that `uid`, when given); False when it was not there
        (or is another object of the same name)."""
        try:
            self.kube.core.delete_namespaced_secret(name, self.namespace,
                                                    body=_preconditions(uid))
            return True
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False
            raise to_kube_error(exc, f"delete secret {self.namespace}/{name}") from exc

    def delete_pod(self, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only the one with that `uid`, when given); False when it was gone."""
        try:
            self.kube.core.delete_namespaced_pod(name, self.namespace, body=_preconditions(uid),
                                                 _preload_content=False)
            return True
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False
            raise to_kube_error(exc, f"delete pod {self.namespace}/{name}") from exc

    def replace_secret(self, body: dict) -> dict:
        """Delete any Secret of that name (it may belong to an older instance and be garbage
        collected with it), then create this one."""
        name = body["metadata"]["name"]
        try:
            self.kube.core.delete_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"delete secret {self.namespace}/{name}") from exc
        try:
            resp = self.kube.core.create_namespaced_secret(self.namespace, body,
                                                           _preload_content=False)
            return json.loads(resp.data)
        except ApiException as exc:
            raise to_kube_error(exc, f"create secret {self.namespace}/{name}") from exc

    def patch_secret(self, name: str, patch: dict) -> None:
        try:
            self.kube.core.patch_namespaced_secret(name, self.namespace, patch,
                                                   _content_type=MERGE_PATCH,
                                                   _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"patch secret {self.namespace}/{name}") from exc

    def list_pods(self, name: str) -> list[dict]:
        items, _ = self.kube.list_pods(self.namespace, f"{LABEL_INSTANCE}={name}")
        return items

    def list_pvcs(self, selector: str) -> list[dict]:
        """The PVCs matching `selector`, read from the apiserver (not the cache)."""
        try:
            resp = self.kube.core.list_namespaced_persistent_volume_claim(
                self.namespace, label_selector=selector, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"list PVCs {selector} in {self.namespace}") from exc
        return list(json.loads(resp.data).get("items") or [])

    def delete_pvc(self, name: str) -> None:
        try:
            self.kube.core.delete_namespaced_persistent_volume_claim(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"delete PVC {self.namespace}/{name}") from exc

    def patch_pvc(self, name: str, patch: dict) -> None:
        try:
            self.kube.core.patch_namespaced_persistent_volume_claim(
                name, self.namespace, patch, _content_type=MERGE_PATCH, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"patch PVC {self.namespace}/{name}") from exc

    # ---- sources for the watches ------------------------------------------------------------

    def _custom_source(self, plural: str, selector: str) -> KubeSource:
        custom, ns = self.kube.custom, self.namespace

        def list_fn() -> tuple[list[dict], str]:
            try:
                result = custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural,
                                                              label_selector=selector)
            except ApiException as exc:
                raise to_kube_error(exc, f"list {plural} in {ns}") from exc
            return list(result.get("items") or []), str(result["metadata"]["resourceVersion"])

        def watch_fn(resource_version: str, timeout_seconds: int) -> WatchStream:
            try:
                resp = custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, plural, label_selector=selector,
                    **watch_kwargs(resource_version, timeout_seconds))
            except ApiException as exc:
                if exc.status == 410:
                    raise WatchExpired(api_message(exc)) from exc
                raise to_kube_error(exc, f"watch {plural} in {ns}") from exc
            return WatchStream(resp, f"watch {plural} in {ns}")

        return KubeSource(list_fn, watch_fn)

    def _core_source(self, kind: str, label: str | None = None,
                     field: str | None = None) -> KubeSource:
        method = getattr(self.kube.core, f"list_namespaced_{kind}")
        ns = self.namespace
        selectors: dict[str, str] = {}
        if label:
            selectors["label_selector"] = label
        if field:
            selectors["field_selector"] = field
        what = f"{kind}s ({label or field}) in {ns}"

        def list_fn() -> tuple[list[dict], str]:
            try:
                resp = method(ns, _preload_content=False, **selectors)
            except ApiException as exc:
                raise to_kube_error(exc, f"list {what}") from exc
            result = json.loads(resp.data)
            return list(result.get("items") or []), str(result["metadata"]["resourceVersion"])

        def watch_fn(resource_version: str, timeout_seconds: int) -> WatchStream:
            try:
                resp = method(ns, **selectors,
                              **watch_kwargs(resource_version, timeout_seconds))
            except ApiException as exc:
                if exc.status == 410:
                    raise WatchExpired(api_message(exc)) from exc
                raise to_kube_error(exc, f"watch {what}") from exc
            return WatchStream(resp, f"watch {what}")

        return KubeSource(list_fn, watch_fn)


def _preconditions(uid: str | None) -> dict | None:
    """DeleteOptions that make a delete miss (409) any other object of the same name."""
    return {"apiVersion": "v1", "kind": "DeleteOptions",
            "preconditions": {"uid": uid}} if uid else None
