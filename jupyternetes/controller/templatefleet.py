"""The operator's side of templates: what it watches and keeps about each template.

For each template: the instances rendered from it (templates.TemplateIndex), its generation last
seen (so a status-only edit or a relist re-queues nobody), its history (revisions.RevisionStore),
its staged rollout (rollouts.RolloutDriver) and the counts written to its status
(templates.TemplateStatusWriter). The controller feeds it the instance events and reads templates
through it; it hands instance keys back to the controller's queue.

Templates often live in the hub's namespace, not the instances' (seed: template in `kadense`,
instance in `default`): they are watched cluster-wide unless `--template-namespace` restricts
them, whatever `--namespace` says. No resync: the instance resync re-reads every template anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.reconcile import ReconcileConfig
from jupyternetes.controller.revisions import RevisionStore
from jupyternetes.controller.rollouts import RolloutDriver, pending_preview
from jupyternetes.controller.templates import (
    TemplateIndex,
    TemplateStatusWriter,
    template_key_of,
    template_status,
)
from jupyternetes.crd.labels import annotations_of
from jupyternetes.kube import caches
from jupyternetes.kube.client import Kube, now_rfc3339
from jupyternetes.kube.informer import ADDED, DELETED, MODIFIED, RESYNC, ListWatcher, object_key
from jupyternetes.policy import revisions
from jupyternetes.policy.revisions import STAGED

log = logging.getLogger("jupyternetes.operator")


class TemplateFleet:
    """Templates, the instances that use them, and each template's revisions, rollout and
    status counts."""

    def __init__(self, kube: Kube, config: ReconcileConfig, metrics: Metrics, *,
                 namespaces: Sequence[str], instance: Callable[[str], dict | None],
                 requeue: Callable[[str, bool], None], singleton: Callable[[], bool],
                 watch_timeout_seconds: int, status_seconds: float) -> None:
        """`instance(key)` reads an instance from the controller's cache; `requeue(key, hurry)`
        queues it (hurry: at once, else without cutting a backoff short); `singleton()` says
        whether this replica writes template status and drives rollouts (sharding.py)."""
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self._instance = instance
        self._requeue = requeue
        self._singleton = singleton
        self.index = TemplateIndex()
        self._generations: dict[str, Any] = {}
        self._rolling: set[str] = set()
        self._lock = threading.Lock()
        self.revisions = RevisionStore(kube, in_use=self.revisions_in_use)
        self.rollouts = RolloutDriver(self._move_instance, preview=self._pending_preview)
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) or [None]
        self.watchers = [
            ListWatcher(f"templates@{ns or '*'}", caches.template_source(kube, ns),
                        self.on_template,
                        resync_seconds=0, watch_timeout_seconds=watch_timeout_seconds,
                        transform=caches.custom_object)
            for ns in scopes]
        # Instance counts on each template, written at most once per interval per template.
        self.status = TemplateStatusWriter(self._counts, self._write_status,
                                           interval=status_seconds, tick=max(1.0, status_seconds),
                                           periodic=self._rolling_now)

    # ---- events -----------------------------------------------------------------------------

    def on_instance(self, event_type: str, key: str, obj: dict) -> None:
        """An instance event: it may have moved to another template, and its status moves the
        counts of the template it uses (templateGeneration, objects)."""
        previous = self.index.template_of(key)
        template = None if event_type == DELETED else template_key_of(obj)
        self.index.update(key, template)
        self.mark(previous)
        self.mark(template)

    def on_template(self, event_type: str, template: dict) -> None:
        """A template was created, edited or deleted: re-check every instance rendered from it
        (the reconciler decides, by --template-rollout, whether running servers change)."""
        key = object_key(template)
        generation = (template.get("metadata") or {}).get("generation")
        with self._lock:
            previous = self._generations.get(key)
            if event_type == DELETED:
                self._generations.pop(key, None)
            else:
                self._generations[key] = generation
        # Label/annotation/status edits do not bump generation and change no render; they may
        # steer a staged rollout (rollouts.py annotations): the status thread takes a look.
        if event_type == MODIFIED and previous == generation:
            self.mark(key)
            return
        if event_type == RESYNC:
            return
        self.mark(key)
        instances = self.index.instances_of(key)
        if instances and event_type != ADDED:
            log.info("template %s %s (generation %s); re-checking %d instance(s)", key,
                     event_type.lower(), generation, len(instances))
        # A relist's ADDED of a template we already know at this generation is no news.
        hurry = not (event_type == ADDED and previous == generation)
        for instance_key in instances:
            self._requeue(instance_key, hurry)

    # ---- reads ------------------------------------------------------------------------------

    def template(self, key: str) -> dict | None:
        for watcher in self.watchers:
            obj = watcher.get(key)
            if obj is not None:
                return obj
        return None

    def _instances_of(self, key: str) -> list[dict]:
        return [obj for obj in map(self._instance, self.index.instances_of(key))
                if obj is not None]

    def revisions_in_use(self, template_key: str) -> set[int]:
        """Revision numbers the instances of a template run, are pinned or moved to."""
        used: set[int] = set()
        for obj in self._instances_of(template_key):
            for number in (revisions.pinned(obj),
                           (obj.get("status") or {}).get("templateRevision"),
                           annotations_of(obj).get(revisions.ROLLOUT_REVISION)):
                if isinstance(number, int) or (isinstance(number, str) and number.isdigit()):
                    used.add(int(number))
        return used

    # ---- status and rollouts ----------------------------------------------------------------

    def mark(self, key: str | None) -> None:
        """The counts of template `key` may have changed: the status writer takes a look."""
        if key:
            self.metrics.template_status_events.inc()
            self.status.mark(key)

    def mark_all(self) -> None:
        """Every known template (a replica that just took over the singleton duties)."""
        with self._lock:
            keys = list(self._generations)
        for key in keys:
            self.status.mark(key)

    def _rolling_now(self) -> list[str]:
        with self._lock:
            return sorted(self._rolling)

    def _counts(self, key: str) -> tuple[dict, dict | None] | None:
        template = self.template(key)
        if template is None:
            return None
        instances = self._instances_of(key)
        generation = (template.get("metadata") or {}).get("generation")
        current = self.revisions.current(template)
        status = template_status(instances, generation if isinstance(generation, int) else None,
                                 current)
        rolling = False
        if revisions.strategy_of(template, self.config.template_rollout) == STAGED:
            if self._singleton():
                status.update(self.rollouts.step(template, current, instances, now_rfc3339()))
                rolling = self.rollouts.under_way({"status": status})
        elif (template.get("status") or {}).get("rollout"):
            status["rollout"] = None  # no longer staged
        with self._lock:
            (self._rolling.add if rolling else self._rolling.discard)(key)
        return status, template.get("status")

    def _write_status(self, key: str, status: dict) -> None:
        if not self._singleton():  # asked right before the write: the singleton's fence
            return  # another replica writes the counts (sharding.py)
        namespace, _, name = key.partition("/")
        self.kube.patch_template_status(namespace, name, status)
        self.metrics.template_status_writes.inc()

    def _move_instance(self, namespace: str, name: str, annotations: dict) -> None:
        if self._singleton():  # the replica that writes template status drives rollouts
            self.kube.patch_instance(namespace, name, {"metadata": {"annotations": annotations}})

    def _pending_preview(self, template: dict, revision: int) -> dict | None:
        """The fleet preview summary of a revision waiting for approval (rollouts.py)."""
        key = object_key(template)
        try:
            return pending_preview(template, self.revisions, revision, self._instances_of(key),
                                   self.kube.get_secret, self.config.trust_policy)
        except Exception as exc:  # informative only: the approval does not depend on it
            log.warning("template %s: no fleet preview of revision %d: %s", key, revision, exc)
            return None
