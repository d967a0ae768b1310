"""The fence: the one gate every write of a stack's owner passes, so that after a shard or the
leadership is lost no status patch, Event or engine call of the old owner is made.

The Lease loops (leader.py, shardleases.py) say whether this replica may write a stack now
(`guard`): held and renewed within the renew deadline, a check of the clock, so the gate closes
the instant the deadline passes, whether or not the loop or the watchdog has run yet. The kube
edge (controller/edges.FencedKube: status patches, finalizers, Events, pod deletions) and the
engine edge (engine/runtime/engineprocs: the registration of every operation) ask it right
before each write and raise `Fenced` instead of writing; the controller drops the key (the
new owner reconciles it), which is not a failure of the instance: no ProvisionFailed, no
Warning Event, no backoff. A write that passed the gate an instant before the deadline lands
within the margin between the renew deadline and the lease duration (lease.py), before any
other replica may take over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from jupyternetes.crd.naming import stack_name


class Fenced(RuntimeError):
    """This replica may not write the stack (any more): the write was not made."""


class Fence:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: Callable[[str], bool] = lambda stack: True  # no Leases: one replica

    def guard(self, writes: Callable[[str], bool]) -> None:
        """`writes(stack)`: whether this replica may write `stack` now."""
        with self._lock:
            self._writes = writes

    def allows(self, stack: str) -> bool:
        with self._lock:
            writes = self._writes
        return writes(stack)

    def allows_key(self, key: str) -> bool:
        namespace, _, name = key.partition("/")
        return self.allows(stack_name(namespace, name))

    def check_key(self, key: str, what: str) -> None:
        if not self.allows_key(key):
            raise Fenced(f"instance {key}: {what} not made, this replica does not hold the "
                         "Lease of its stack (any more); its holder reconciles it")
