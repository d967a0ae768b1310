"""Generic list+watch loop with a local cache (an "informer", in client-go's words).

One `ListWatcher` follows one collection (instances in a namespace or cluster-wide; managed pods):
list once, then watch from the list's resourceVersion, resuming each new watch request from the
last resourceVersion seen (objects and BOOKMARKs), relisting only when the apiserver says that
version is gone (410). A relist diffs against the cache, so objects deleted while we were not
watching still produce DELETED. A periodic resync re-delivers every cached object, which is what
turns "nothing changed" into a cheap re-check (and heals anything a lost event left behind).
An optional `transform` (client-go's SetTransform) trims every listed and watched object before
it is cached or delivered: the cache keeps only what its readers read (kube/caches.py). An
optional `index` (client-go's Indexer, one index) files every cached object under a value, so a
reader finds "the pods of instance X" without scanning the whole cache (`indexed(value)`).

The source is any object with `list() -> (items, resourceVersion)` and
`watch(resourceVersion, timeout_seconds) -> stream` (iterable of `(type, object)`, with `close()`),
so the loop logic is tested without an apiserver and used with `kube.Kube` for real.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from jupyternetes.kube.errors import WatchExpired

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED, RESYNC = "ADDED", "MODIFIED", "DELETED", "RESYNC"


class Stream(Protocol):
    def __iter__(self): ...

    def close(self) -> None: ...


class Source(Protocol):
    def list(self) -> tuple[list[dict], str]: ...

    def watch(self, resource_version: str, timeout_seconds: int) -> Stream: ...


Handler = Callable[[str, dict], None]


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _rv(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class ListWatcher:
    def __init__(self, name: str, source: Source, handler: Handler, *,
                 resync_seconds: float = 300.0, watch_timeout_seconds: int = 290,
                 retry_seconds: float = 1.0, max_retry_seconds: float = 30.0,
                 sleep: Callable[[float], bool] | None = None,
                 transform: Callable[[dict], dict] | None = None,
                 keep: Callable[[dict], bool] | None = None,
                 index: Callable[[dict], str | None] | None = None,
                 limit: int | None = None, age: Callable[[dict], Any] | None = None) -> None:
        self.name = name
        self.source = source
        self.handler = handler
        self.transform = transform
        # Objects `keep` refuses are neither cached nor handed to the handler (a filter the
        # apiserver's selectors cannot express); one it refuses later is dropped as deleted.
        self.keep = keep
        self.resync_seconds = resync_seconds
        self.watch_timeout_seconds = watch_timeout_seconds
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._stop = threading.Event()
        # Interruptible sleep; tests replace it to run the loop without waiting.
        self._sleep = sleep or self._stop.wait
        self._lock = threading.Lock()
        self._cache: dict[str, dict] = {}
        self.index = index
        # index value -> keys of the cached objects filed under it; kept with the cache, under
        # the same lock (a reader asking per object would make a hub's polls O(servers^2)).
        self._indexed: dict[str, set[str]] = {}
        # At most `limit` objects per index value: past it, the oldest by `age` is dropped from
        # the cache (a hard bound on what one busy object can make a cache hold).
        if limit is not None and (index is None or age is None or limit < 1):
            raise ValueError(f"watch {name}: a limit needs an index, an age and limit >= 1")
        self.limit = limit
        self.age = age
        self._stream: Stream | None = None
        self._synced = threading.Event()
        self.resource_version = ""
        self._threads: list[threading.Thread] = []

    # ---- cache access -----------------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._cache.get(key)

    def cached_keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._cache.values())

    def indexed(self, value: str) -> list[dict]:
        """The cached objects the `index` function files under `value`."""
        if self.index is None:
            raise ValueError(f"watch {self.name} has no index")
        with self._lock:
            return [self._cache[key] for key in self._indexed.get(value, ())]

    def _file(self, key: str, obj: dict) -> None:
        """File `key` under its index value (with the lock held); past the limit, evict."""
        value = self.index(obj) if self.index is not None else None
        if value is None:
            return
        keys = self._indexed.setdefault(value, set())
        keys.add(key)
        while self.limit is not None and len(keys) > self.limit:
            assert self.age is not None
            age = self.age
            oldest = min(keys, key=lambda k: (age(self._cache[k]), k))
            keys.discard(oldest)
            del self._cache[oldest]

    def forget(self, value: str) -> int:
        """Drop the cached objects filed under index `value` (the handler is not called); how
        many. For caches that forget what no longer matters before the apiserver deletes it."""
        with self._lock:
            keys = self._indexed.pop(value, set())
            for key in keys:
                del self._cache[key]
        return len(keys)

    def _unfile(self, key: str, obj: dict) -> None:
        value = self.index(obj) if self.index is not None else None
        keys = self._indexed.get(value) if value is not None else None
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._indexed[value]

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        # Listed once started: a stop() from another thread (SIGTERM right as the leader's
        # watches start) must never join a thread that has not started (a RuntimeError).
        loop = threading.Thread(target=self.run, name=f"watch-{self.name}", daemon=True)
        loop.start()
        self._threads.append(loop)
        if self.resync_seconds > 0:
            resync = threading.Thread(target=self._resync_loop, name=f"resync-{self.name}",
                                      daemon=True)
            resync.start()
            self._threads.append(resync)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """List, then watch from the last resourceVersion until stopped."""
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    self.relist()
                    need_list = False
                self.watch_once()
                failures = 0
            except WatchExpired as exc:
                log.info("watch %s: resourceVersion %s expired (%s); relisting", self.name,
                         self.resource_version, exc)
                need_list = True
            except Exception as exc:
                if self._stop.is_set():
                    break
                failures += 1
                delay = min(self.max_retry_seconds, self.retry_seconds * 2 ** (failures - 1))
                log.warning("watch %s failed (%s); retrying in %.1fs from resourceVersion %s",
                            self.name, exc, delay, self.resource_version or "<list>")
                self._sleep(delay)

    def relist(self) -> None:
        items, resource_version = self.source.list()
        if self.keep is not None:
            items = [obj for obj in items if self.keep(obj)]
        if self.transform is not None:
            items = [self.transform(obj) for obj in items]
        fresh = {object_key(obj): obj for obj in items}
        del items
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
            self._indexed = {}
            for key, obj in fresh.items():
                self._file(key, obj)
            self.resource_version = resource_version
        for key, obj in fresh.items():
            if key not in old:
                self._deliver(ADDED, obj)
            elif _rv(old[key]) != _rv(obj):
                self._deliver(MODIFIED, obj)
        # Deleted while we were not watching: only a relist can tell.
        for key, obj in old.items():
            if key not in fresh:
                self._deliver(DELETED, obj)
        self._synced.set()

    def watch_once(self) -> None:
        stream = self.source.watch(self.resource_version, self.watch_timeout_seconds)
        self._stream = stream
        try:
            if self._stop.is_set():
                return
            for event_type, obj in stream:
                if self._stop.is_set():
                    return
                self._apply(event_type, obj)
        finally:
            self._stream = None
            stream.close()

    def _apply(self, event_type: str, obj: dict) -> None:
        rv = _rv(obj)
        if event_type == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        if self.keep is not None and event_type != DELETED and not self.keep(obj):
            event_type = DELETED  # refused: forget any earlier copy, and say nothing
            if object_key(obj) not in self._cache:
                if rv:
                    self.resource_version = rv
                return
        if self.transform is not None:
            obj = self.transform(obj)
        key = object_key(obj)
        with self._lock:
            old = self._cache.pop(key, None) if event_type == DELETED else self._cache.get(key)
            if old is not None and self.index is not None:
                self._unfile(key, old)
            if event_type != DELETED:
                self._cache[key] = obj
                if self.index is not None:
                    self._file(key, obj)
            if rv:
                self.resource_version = rv
        self._deliver(event_type, obj)

    def resync(self) -> None:
        for obj in self.items():
            self._deliver(RESYNC, obj)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_seconds):
            if self._synced.is_set():
                self.resync()

    def _deliver(self, event_type: str, obj: dict) -> None:
        # A handler bug must not kill the watch: the next event or resync gets another chance.
        try:
            self.handler(event_type, obj)
        except Exception:
            log.exception("watch %s: handler failed on %s %s", self.name, event_type,
                          object_key(obj))


class KubeSource:
    """Adapts a `list_fn`/`watch_fn` pair (e.g. bound `Kube` methods) to `Source`."""

    def __init__(self, list_fn: Callable[[], tuple[list[dict], str]],
                 watch_fn: Callable[[str, int], Stream]) -> None:
        self.list = list_fn  # type: ignore[method-assign]
        self.watch = watch_fn  # type: ignore[method-assign]
