"""Drift flags: instances whose managed objects changed behind the stack's back (a pod deleted),
set by the controller's pod events and taken by the reconciler, which then refreshes the stack."""

from __future__ import annotations

import threading


class DriftFlags:
    """Instances whose managed objects changed behind the stack's back (a pod deleted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def flag(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def take(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.discard(key)
                return True
            return False

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys
