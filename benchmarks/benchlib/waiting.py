"""Waiting from outside the operator: a polled condition, and pods first seen on our own watch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubernetes import client

from benchlib.cli import BenchError
from harness.operator_process import poll
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import ADDED, KubeSource, ListWatcher, object_key


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2,
               describe: Callable[[], str] | None = None) -> Any:
    value = poll(check, timeout, interval)
    if value:
        return value
    detail = f"\n{describe()}" if describe else ""
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


class PodWatch:
    """Records when each pod of some namespaces is first seen (ADDED), by our own watch.

    One `ListWatcher` per namespace (the operator's own list+watch loop, resuming from the last
    resourceVersion and relisting on 410), so what is timed is when our watch delivers the pod,
    independent of the operator's caches."""

    def __init__(self, api: client.ApiClient, namespaces: Sequence[str]) -> None:
        kube = Kube(api)
        self.first_seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._watchers = [
            ListWatcher(f"bench-pods-{ns}", KubeSource(
                # An empty selector: every pod of the namespace, the floor's as well.
                lambda ns=ns: kube.list_pods(ns, ""),
                lambda rv, timeout, ns=ns: kube.watch_pods(ns, "", rv, timeout)),
                self._on_event, transform=_key_and_version,
                # No periodic re-delivery: only the first ADDED of each pod counts.
                resync_seconds=0,
                # A fixed short retry, no backoff: a pod created while the watch was broken
                # would otherwise be timed up to the backoff late.
                retry_seconds=0.5, max_retry_seconds=0.5)
            for ns in namespaces]

    def start(self) -> PodWatch:
        for watcher in self._watchers:
            watcher.start()
        for watcher in self._watchers:
            if not watcher.wait_synced(30):
                raise BenchError("the benchmark's own pod watch did not start within 30s")
        return self

    def stop(self) -> None:
        for watcher in self._watchers:
            watcher.stop(15)

    def _on_event(self, event_type: str, obj: dict) -> None:
        if event_type != ADDED:
            return
        seen_at = time.time()
        key = object_key(obj)
        with self._cond:
            if key not in self.first_seen:
                self.first_seen[key] = seen_at
                self._cond.notify_all()

    def wait_for(self, keys: Iterable[str], timeout: float) -> dict[str, float]:
        wanted = list(keys)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [k for k in wanted if k not in self.first_seen]
                if not missing:
                    return {k: self.first_seen[k] for k in wanted}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"timed out after {timeout:.0f}s waiting for pods "
                                     f"{', '.join(missing[:10])}"
                                     f"{' ...' if len(missing) > 10 else ''}")
                self._cond.wait(min(left, 1.0))


def _key_and_version(pod: dict) -> dict:
    """What the watch caches of a pod: its key and resourceVersion (the relist compares them),
    not the whole object, so thousands of pods cost the benchmark process little memory."""
    meta = pod.get("metadata") or {}
    return {"metadata": {"namespace": meta.get("namespace"), "name": meta.get("name"),
                         "resourceVersion": meta.get("resourceVersion")}}
