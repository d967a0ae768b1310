"""Waiting from outside the operator: a polled condition, and pods first seen on our own watch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from benchlib.cli import BenchError, log
from harness.operator_process import poll


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2,
               describe: Callable[[], str] | None = None) -> Any:
    value = poll(check, timeout, interval)
    if value:
        return value
    detail = f"\n{describe()}" if describe else ""
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


class PodWatch:
    """Records when each pod of some namespaces is first seen (ADDED), by our own watch."""

    def __init__(self, api: client.ApiClient, namespaces: Sequence[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.namespaces = list(namespaces)
        self.first_seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._synced: list[threading.Event] = []

    def start(self) -> PodWatch:
        for ns in self.namespaces:
            synced = threading.Event()
            thread = threading.Thread(target=self._run, args=(ns, synced), daemon=True,
                                      name=f"podwatch-{ns}")
            thread.start()
            self._threads.append(thread)
            self._synced.append(synced)
        for synced in self._synced:
            if not synced.wait(30):
                raise BenchError("the benchmark's own pod watch did not start within 30s")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _record(self, obj: dict, seen_at: float) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._cond:
            if key not in self.first_seen:
                self.first_seen[key] = seen_at
                self._cond.notify_all()

    def _run(self, namespace: str, synced: threading.Event) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    resp = self.core.list_namespaced_pod(namespace, _preload_content=False)
                    listing = json.loads(resp.data)
                    now = time.time()
                    for item in listing.get("items") or []:
                        self._record(item, now)
                    rv = listing["metadata"]["resourceVersion"]
                    synced.set()
                # Short server-side timeout: the loop notices stop() within seconds.
                resp = self.core.list_namespaced_pod(
                    namespace, watch=True, resource_version=rv, timeout_seconds=5,
                    allow_watch_bookmarks=True, _preload_content=False)
                try:
                    for line in iter_resp_lines(resp):
                        seen_at = time.time()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            rv = ""  # 410 Gone: relist
                            break
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if event.get("type") == "ADDED":
                            self._record(obj, seen_at)
                finally:
                    resp.release_conn()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log(f"pod watch on {namespace} failed ({exc}); retrying")
                time.sleep(0.5)

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

