"""An in-memory Lease store with the apiserver's semantics that matter (create once, replace and
delete only at the current resourceVersion) and a fake monotonic clock, for the Lease algorithm's
unit tests (test_lease.py, test_leader.py, test_shardleases.py)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import replace

from jupyternetes.coordination.lease import LeaseConflict, LeaseRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, LeaseRecord] = {}
        self.version = 0
        self.fail = False
        self.lock = threading.Lock()
        self.timeouts: list[tuple[str, float | None]] = []  # (verb, timeout) of every call
        # Runs inside every call, before its answer (a slow apiserver: advance a fake clock).
        self.during: Callable[[str], None] = lambda verb: None

    def _call(self, verb: str, timeout: float | None) -> None:
        self.timeouts.append((verb, timeout))
        self.during(verb)
        if self.fail:
            raise RuntimeError("apiserver unreachable")

    def list(self, timeout: float | None = None) -> dict[str, LeaseRecord]:
        self._call("list", timeout)
        return dict(self.records)

    def create(self, name: str, record: LeaseRecord,
               timeout: float | None = None) -> LeaseRecord:
        self._call("create", timeout)
        if name in self.records:
            raise LeaseConflict("exists")
        return self._store(name, record)

    def replace(self, name: str, record: LeaseRecord,
                timeout: float | None = None) -> LeaseRecord:
        self._call("replace", timeout)
        current = self.records.get(name)
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("the object has been modified")
        return self._store(name, record)

    def delete(self, name: str, resource_version: str | None,
               timeout: float | None = None) -> None:
        self._call("delete", timeout)
        current = self.records.get(name)
        if current is not None and resource_version in (None, current.resource_version):
            del self.records[name]

    def _store(self, name: str, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.records[name] = replace(record, resource_version=str(self.version))
        return self.records[name]

    def holders(self) -> collections.Counter:
        return collections.Counter(r.holder for n, r in self.records.items()
                                   if "-shard-" in n)
