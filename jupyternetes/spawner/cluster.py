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
from jupyternetes.kube import caches
from jupyternetes.kube.client import Kube, api_client
from jupyternetes.kube.errors import KubeError, WatchExpired, api_message, to_kube_error
from jupyternetes.kube.informer import DELETED, KubeSource, ListWatcher
from jupyternetes.kube.listwatch import WatchStream, watch_kwargs
from jupyternetes.spawner import events
from jupyternetes.spawner.apicalls import FIELD_MANAGER, NamespaceCalls
from jupyternetes.spawner.manifests import SPAWNER_SELECTOR

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 240
OPTIONAL_SYNC_SECONDS = 5.0


def _instance_label(obj: dict) -> str | None:
    """The instance a pod or PVC belongs to (its label), which its index files it under."""
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_INSTANCE)


class _CachedNames:
    """`name in names`: whether a watch cache holds `<namespace>/<name>` (one dict lookup, no
    copy of the cache per Event)."""

    def __init__(self, watcher: ListWatcher, namespace: str) -> None:
        self.watcher, self.prefix = watcher, f"{namespace}/"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.watcher.get(self.prefix + name) is not None


class SharedCluster(NamespaceCalls):
    """Watch caches and API calls (`NamespaceCalls`) for the hub's instances in one namespace."""

    _shared: dict[tuple, SharedCluster] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def existing(cls, namespace: str, kubeconfig: str | None = None,
                 context: str | None = None) -> SharedCluster | None:
        """The shared cluster `get` made already, if any: no lock, no thread (a dict read,
        atomic under the GIL), for the hub's polls of every server."""
        return cls._shared.get((namespace, kubeconfig or "", context or ""))

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
        super().__init__(namespace, kube)
        self.executor = ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="jupyternetes-api")
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._start_lock = asyncio.Lock()
        ns = namespace
        # The caches keep what the spawner reads (kube/caches.py, as the operator's do): at
        # 2,000 servers the hub's memory is mostly these objects.
        self.instances = ListWatcher(
            f"hub-instances@{ns}", self._custom_source(INSTANCE_PLURAL, SPAWNER_SELECTOR),
            self._on_owner_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            transform=caches.custom_object)
        # Pods and PVCs filed by their instance's label: poll() of every server reads its pods.
        self.pods = ListWatcher(
            f"hub-pods@{ns}", self._core_source("pod", label=MANAGED_SELECTOR),
            self._on_owner_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            index=_instance_label, transform=caches.pod)
        self.pvcs = ListWatcher(
            f"hub-pvcs@{ns}",
            self._core_source("persistent_volume_claim", label=MANAGED_SELECTOR),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            index=_instance_label)
        self.instance_events = ListWatcher(
            f"hub-instance-events@{ns}",
            self._core_source("event", field=f"involvedObject.kind={INSTANCE_KIND}"),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            keep=self._event_is_ours, transform=events.slim, index=events.involved_uid,
            limit=events.MAX_PER_OBJECT, age=events.age)
        self.pod_events = ListWatcher(
            f"hub-pod-events@{ns}", self._core_source("event", field="involvedObject.kind=Pod"),
            self._on_change, resync_seconds=0, watch_timeout_seconds=WATCH_TIMEOUT,
            keep=self._event_is_ours, transform=events.slim, index=events.involved_uid,
            limit=events.MAX_PER_OBJECT, age=events.age)
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
            if uid:
                for watcher in (self.instance_events, self.pod_events):
                    watcher.forget(uid)

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

    def cached_pods(self, name: str) -> list[dict]:
        return self.pods.indexed(name)

    def cached_pvcs(self, name: str) -> list[dict]:
        return self.pvcs.indexed(name)

    def cached_events(self, name: str) -> list[dict]:
        """Events about the current instance of that name and its current pods (by uid: an
        earlier instance of the same name, or its pods, had other uids)."""
        instance = self.cached_instance(name)
        if instance is None:
            return []
        uid = (instance.get("metadata") or {}).get("uid")
        found = self.instance_events.indexed(uid) if uid else []
        for pod in self.cached_pods(name):
            if pod_uid := (pod.get("metadata") or {}).get("uid"):
                found += self.pod_events.indexed(pod_uid)
        return found

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
