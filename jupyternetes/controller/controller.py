"""The operator's controller: watches feed the work queue, workers drain it through the reconciler.

RBAC: instances and pods are watched in the `--namespace` scopes (all namespaces by default), or
in the namespaces whose labels match `--namespace-selector` (controller/namespacescope.py: a
list+watch of those namespaces only, which needs list/watch on namespaces);
templates are watched cluster-wide unless `--template-namespace` restricts them, because an
instance may use a template from another namespace (the hub's). So even a `--namespace`-scoped
operator needs a ClusterRole with get/list/watch on jupyternotebooktemplates.kadense.io, or a
Role in each `--template-namespace`. Before each `up` it reads the objects the template names, the
instance's PVCs (list) and the StorageClass of a claim that would grow (get on
storageclasses.storage.k8s.io, cluster-wide): see controller/preflight.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.edges import EnginePort, FencedKube
from jupyternetes.controller.namespacescope import NamespaceScope
from jupyternetes.controller.noop import DriftFlags
from jupyternetes.controller.orphans import OrphanCollector
from jupyternetes.controller.queue import Backoff, ShutDown, WorkQueue
from jupyternetes.controller.reconcile import ReconcileConfig, Reconciler
from jupyternetes.controller.templatefleet import TemplateFleet
from jupyternetes.coordination.fence import Fence, Fenced
from jupyternetes.crd.labels import (
    LABEL_INSTANCE,
    LABEL_INSTANCE_NAMESPACE,
    annotations_of,
    force_delete_requested,
    retry_request,
)
from jupyternetes.crd.naming import label_value
from jupyternetes.engine.masking import OPERATOR_LOG_MASK
from jupyternetes.kube import caches
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import ADDED, DELETED, RESYNC, ListWatcher, object_key
from jupyternetes.policy import revisions

log = logging.getLogger("jupyternetes.operator")

# How long workers wait for the watches' first lists before working without them.
CACHE_SYNC_TIMEOUT = 60.0


class Operator:
    """One operator process: watches feed the queue, workers drain it through the reconciler."""

    def __init__(self, kube: Kube, engine: EnginePort, *, namespaces: Sequence[str] = (),
                 template_namespaces: Sequence[str] = (), workers: int = 4,
                 resync_seconds: float = 300.0,
                 config: ReconcileConfig | None = None, metrics: Metrics | None = None,
                 backoff: Backoff | None = None, shutdown_grace: float = 30.0,
                 watch_timeout_seconds: int = 290,
                 template_status_seconds: float = 2.0, orphan_seconds: float = 600.0,
                 namespace_selector: str = "") -> None:
        self.kube = kube
        self.engine = engine
        self.metrics = metrics or Metrics()
        self.workers = max(1, workers)
        self.shutdown_grace = shutdown_grace
        self.queue = WorkQueue(backoff or Backoff(), on_depth=self.metrics.set_queue_depth)
        self.drift = DriftFlags()
        # Every write of the reconciler passes the fence (coordination/fence.py): the Lease
        # loops guard it; without Leases it is open.
        self.fence = Fence()
        self.fenced_kube = FencedKube(kube, self.fence)
        config = config or ReconcileConfig()
        # Templates: their watches, the instances of each, revisions, staged rollouts and the
        # status counts (templatefleet.py).
        self.templates = TemplateFleet(
            kube, config, self.metrics, namespaces=template_namespaces, instance=self._instance,
            requeue=lambda key, hurry: (self.queue.add if hurry else self.queue.nudge)(key),
            singleton=lambda: self.singleton(), watch_timeout_seconds=watch_timeout_seconds,
            status_seconds=template_status_seconds)
        self.reconciler = Reconciler(self.fenced_kube, engine, config, pod_lookup=self.lookup_pod,
                                     drift=self.drift, metrics=self.metrics,
                                     instance_lookup=self._instance,
                                     template_lookup=self.templates.template,
                                     revisions=self.templates.revisions,
                                     waiting=lambda: len(self.queue))
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._seen_lock = threading.Lock()
        self._resync_seconds = resync_seconds
        self._watch_timeout = watch_timeout_seconds
        # Label-selected mode (--namespace-selector): the scopes are the namespaces whose labels
        # match, as a watch of those namespaces finds them (namespacescope.py); else the fixed
        # --namespace list, or every namespace.
        self.namespace_scope = (NamespaceScope(kube, namespace_selector, self._add_scope,
                                               self._remove_scope, watch_timeout_seconds)
                                if namespace_selector else None)
        scopes: list[str | None] = ([] if namespace_selector
                                    else list(dict.fromkeys(namespaces)) or [None])
        self.instance_watchers: list[ListWatcher] = []
        self.pod_watchers: list[ListWatcher] = []
        self._scope_lock = threading.Lock()
        self._watching = False  # set by start(): scopes found later start their watches at once
        for ns in scopes:
            self._add_scope(ns)
        # Stacks whose instance vanished without a destroy (orphans.py); at start, then
        # every orphan_seconds (0: at start only). Engines that cannot list stacks: none.
        # Label-selected: only the stacks of the namespaces selected now are judged (served()),
        # and none before the namespace watch has listed them.
        served = self.namespace_scope.served if self.namespace_scope is not None else None
        self.orphans = (OrphanCollector(
            engine, lambda: caches.instance_names(kube, served() if served else scopes),
            namespaces=[ns for ns in scopes if ns], interval=orphan_seconds,
            observe=self.metrics.observe_engine,
            recheck=lambda ns: caches.instance_names(kube, [ns]), served=served)
            if hasattr(engine, "list_stacks") else None)
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._busy: dict[str, float] = {}
        self._busy_lock = threading.Lock()
        # Leader election (run.py wires it): no operation starts unless `leading()` says so,
        # and stale locks are judged with the time the Lease was acquired (locks.py).
        self.leading: Callable[[], bool] = lambda: True
        self.leader_since: float | None = None
        # Sharding (sharding.py wires it; None: not sharded): whether this replica holds the
        # shard of an instance key / a stack now, and whether it does the singleton duties.
        self.owns: Callable[[str], bool] | None = None
        self.stack_filter: Callable[[str], bool] | None = None
        self.singleton: Callable[[], bool] = lambda: True

    # ---- scopes -----------------------------------------------------------------------------

    def _add_scope(self, ns: str | None) -> None:
        """Watch instances and pods of `ns` (None: every namespace). The watcher lists are
        replaced, never changed in place: readers iterate them without the lock."""
        instances = ListWatcher(f"instances@{ns or '*'}", caches.instance_source(self.kube, ns),
                                self.on_instance, resync_seconds=self._resync_seconds,
                                transform=caches.custom_object,
                                watch_timeout_seconds=self._watch_timeout)
        # Pods live in their instance's namespace, so the same scopes cover them. No resync:
        # the instance resync already re-checks every pod through reconcile.
        pods = ListWatcher(f"pods@{ns or '*'}", caches.pod_source(self.kube, ns), self.on_pod,
                           resync_seconds=0, watch_timeout_seconds=self._watch_timeout,
                           transform=caches.pod)
        with self._scope_lock:
            if any(w.name == instances.name for w in self.instance_watchers):
                return
            self.instance_watchers = [*self.instance_watchers, instances]
            self.pod_watchers = [*self.pod_watchers, pods]
            if self._watching:
                pods.start()
                instances.start()
        if self._watching:
            log.info("watching namespace %s", ns)

    def _remove_scope(self, ns: str) -> None:
        """Stop watching `ns` (its namespace is gone, or no longer selected)."""
        with self._scope_lock:
            gone = [w for w in self.instance_watchers + self.pod_watchers
                    if w.name in (f"instances@{ns}", f"pods@{ns}")]
            self.instance_watchers = [w for w in self.instance_watchers if w not in gone]
            self.pod_watchers = [w for w in self.pod_watchers if w not in gone]
        for watcher in gone:
            watcher.stop(timeout=2.0)
        if gone:
            log.info("stopped watching namespace %s", ns)

    # ---- event handlers ---------------------------------------------------------------------

    def on_instance(self, event_type: str, obj: dict) -> None:
        key = object_key(obj)
        self.reconciler.own_writes.seen(key, obj)  # the cache now holds this version
        meta = obj.get("metadata") or {}
        # Our own status patches come back as MODIFIED events; only spec (generation),
        # lifecycle and admin-annotation changes need a reconcile. Resync and ADDED do too.
        urgent = (meta.get("generation"), meta.get("deletionTimestamp"),
                  retry_request(obj), force_delete_requested(obj), revisions.pinned(obj),
                  annotations_of(obj).get(revisions.ROLLOUT_REVISION))
        fingerprint = (urgent, tuple(meta.get("finalizers") or ()))
        with self._seen_lock:
            previous = self._seen.get(key)
            if event_type == DELETED:
                self._seen.pop(key, None)
            else:
                self._seen[key] = fingerprint
        if event_type == DELETED:
            # Gone: its values leave the log mask, which stays as large as the live
            # instances' secrets (masking.MaskingFilter).
            OPERATOR_LOG_MASK.drop(key)
        self.templates.on_instance(event_type, key, obj)
        if event_type == RESYNC and self.queue.is_waiting(key):
            return  # a later check is already scheduled; a resync must not hurry it
        if event_type == DELETED or previous is None or previous[0] != urgent:
            self.queue.add(key)  # news that ends a backoff wait (see queue.nudge)
        elif event_type in (ADDED, RESYNC) or previous != fingerprint:
            self.queue.nudge(key)  # no reason to hurry an instance waiting out a backoff

    def on_template(self, event_type: str, template: dict) -> None:
        self.templates.on_template(event_type, template)

    def mark_all_templates(self) -> None:
        self.templates.mark_all()

    def on_pod(self, event_type: str, pod: dict) -> None:
        key = self.instance_key_of_pod(pod)
        if key is None:
            return
        if event_type == DELETED:
            instance = self._instance(key)
            if instance is not None and not (instance.get("metadata") or {}).get(
                    "deletionTimestamp"):
                log.info("pod %s of instance %s deleted; re-queueing with drift",
                         object_key(pod), key, extra={"instance": key})
                self.drift.flag(key)
        # Pods of a failing instance change all the time (its own `up` touches them): never a
        # reason to cut its backoff short. A deleted pod is repaired at the next attempt.
        self.queue.nudge(key)

    def instance_key_of_pod(self, pod: dict) -> str | None:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        namespace = labels.get(LABEL_INSTANCE_NAMESPACE) or (pod.get("metadata") or {}).get(
            "namespace")
        label = labels.get(LABEL_INSTANCE)
        if not namespace or not label:
            return None
        direct = f"{namespace}/{label}"
        if self._instance(direct) is not None:
            return direct
        # Long instance names are hashed in labels; find the instance whose label matches.
        for watcher in self.instance_watchers:
            for key in watcher.cached_keys():
                ns, _, name = key.partition("/")
                if ns == namespace and label_value(name) == label:
                    return key
        return direct

    def _instance(self, key: str) -> dict | None:
        for watcher in self.instance_watchers:
            obj = watcher.get(key)
            if obj is not None:
                return obj
        return None

    def lookup_pod(self, namespace: str, name: str) -> dict | None:
        for watcher in self.pod_watchers:
            if watcher.has_synced:
                pod = watcher.get(f"{namespace}/{name}")
                if pod is not None:
                    return pod
        return None

    # ---- workers ----------------------------------------------------------------------------

    def worker(self) -> None:
        self.wait_for_caches()
        while True:
            try:
                key = self.queue.get()
            except ShutDown:
                return
            if key is None:
                continue
            try:
                self.process(key)
            finally:
                self.queue.done(key)

    def wait_for_caches(self, timeout: float = CACHE_SYNC_TIMEOUT) -> bool:
        """Until every watch has its first list (controller-runtime's WaitForCacheSync): the
        no-op path answers from the caches, so a worker starting before them would ask the
        apiserver about every instance. A watch that cannot list (RBAC) holds the workers back
        at most `timeout` seconds; then they work without its cache."""
        deadline = time.monotonic() + timeout
        for watcher in self.all_watchers():
            while not watcher.wait_synced(0.5):
                if self._stopping.is_set():
                    return False
                if time.monotonic() > deadline:
                    log.warning("watch %s has no list after %.0fs; working without its cache",
                                watcher.name, timeout)
                    return False
        return True

    def process(self, key: str) -> None:
        if not self.leading():
            # The Lease is not (or no longer) ours: start nothing. The elector stops this
            # process; the key is kept for the case it was only a slow renew.
            self.queue.add_after(key, 1.0)
            return
        if self.owns is not None and not self.owns(key):
            # Another replica's shard (or one being released): dropped here, enqueued by the
            # replica that holds or acquires the shard.
            return
        started = time.monotonic()
        with self._busy_lock:
            self._busy[key] = started
        self.metrics.in_flight.inc()
        outcome = "error"
        try:
            with self.fenced_kube.serving(key):
                result = self.reconciler.reconcile(key, failures=self.queue.num_requeues(key))
            outcome = result.action
            if result.failed:
                floor = self.queue.backoff.cap if result.degraded else 0.0
                delay = self.queue.add_rate_limited(key, floor=floor)
                log.warning("instance %s: %s; retry in %.1fs", key, result.message, delay,
                            extra={"instance": key})
            else:
                self.queue.forget(key)
                if result.requeue_after:
                    self.queue.add_after(key, result.requeue_after)
        except Fenced as exc:
            # The stack's Lease was lost (or is being handed over) mid-reconcile: nothing more
            # is written; the new holder reconciles the key. Not a failure of the instance.
            outcome = "fenced"
            self.queue.forget(key)
            log.info("instance %s: dropped, %s", key, exc, extra={"instance": key})
        except Exception as exc:
            delay = self.queue.add_rate_limited(key)
            self.metrics.failure("exception")
            log.exception("instance %s: reconcile raised %s; retry in %.1fs", key,
                          type(exc).__name__, delay, extra={"instance": key})
        finally:
            seconds = time.monotonic() - started
            self.metrics.in_flight.dec()
            self.metrics.observe_reconcile(outcome, seconds)
            with self._busy_lock:
                self._busy.pop(key, None)
            # Held-back template changes are re-checked on every pod event: not log news.
            if outcome not in ("unchanged", "gone", "template-pending"):
                log.info("instance %s: %s in %.2fs", key, outcome, seconds,
                         extra={"instance": key})

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        # The watches only fill caches and the queue: their first lists (seconds at 5,000
        # instances) overlap the stale-lock clean-up, which must end before any worker starts.
        with self._scope_lock:
            self._watching = True
            for watcher in self.pod_watchers + self.templates.watchers + self.instance_watchers:
                watcher.start()
        if self.namespace_scope is not None:
            self.namespace_scope.start()
        cleared = self.engine_clear_locks()
        if cleared:
            log.info("cleared stale stack locks: %s", cleared)
            self.metrics.locks_cleared.inc(
                sum(1 for line in cleared if str(line).startswith("removed stale lock")))
        self.templates.status.start()
        for index in range(self.workers):
            # Daemon: an engine operation that ignores shutdown must not keep the process alive
            # past the grace period (its stack lock is cleared at the next start).
            thread = threading.Thread(target=self.worker, name=f"worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.orphans is not None:
            self.orphans.start()
        self._started.set()
        log.info("operator started: %d worker(s), watching %s; template rollout %s",
                 self.workers, ", ".join(w.name for w in self.instance_watchers
                                         + self.templates.watchers),
                 self.reconciler.config.template_rollout)

    def engine_clear_locks(self, stacks: Callable[[str], bool] | None = None) -> Any:
        """`stacks`: only those stacks (default: all, or the held shards' when sharded)."""
        clear = getattr(self.engine, "clear_stale_locks", None)
        if clear is None:
            return None
        stacks = stacks or self.stack_filter
        try:
            if stacks is not None:
                return clear(self.leader_since, stacks=stacks)
            return clear() if self.leader_since is None else clear(self.leader_since)
        except Exception:
            log.exception("clearing stale stack locks failed; continuing")
            return None

    def healthy(self) -> bool:
        """Alive: not shutting down and no watch or worker thread died. True while starting
        (clearing stale locks may repair stacks for a while; that is not a reason to restart)."""
        if self._stopping.is_set():
            return False
        if not self._started.is_set():
            return True
        watchers = self.all_watchers()
        return (all(w.alive() for w in watchers) and all(t.is_alive() for t in self._threads)
                and self.templates.status.alive())

    def ready(self) -> bool:
        return (self._started.is_set() and self.healthy()
                and all(w.has_synced for w in self.all_watchers()))

    def all_watchers(self) -> list[ListWatcher]:
        scope = [self.namespace_scope.watcher] if self.namespace_scope is not None else []
        return scope + self.instance_watchers + self.pod_watchers + self.templates.watchers

    def in_flight(self) -> list[str]:
        with self._busy_lock:
            return sorted(self._busy)

    def stop(self) -> list[str]:
        """Stop watching, let in-flight operations finish within the grace period.

        Returns the keys abandoned mid-operation (their stacks may hold a lock; the next start
        clears stale locks and re-runs `up`, which converges).
        """
        self._stopping.set()
        if self.orphans is not None:
            self.orphans.stop()
        for watcher in self.all_watchers():
            watcher.stop(timeout=2.0)
        self.queue.shutdown()
        self.templates.status.stop()
        deadline = time.monotonic() + self.shutdown_grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        abandoned = self.in_flight()
        if abandoned:
            log.warning("shutdown grace period over; abandoning in-flight operations: %s",
                        ", ".join(abandoned))
        return abandoned

