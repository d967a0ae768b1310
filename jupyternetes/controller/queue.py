"""A work queue with client-go's semantics, for instance keys (`namespace/name`).

- A key waits in the queue at most once: any number of events for one instance coalesce.
- A key being processed is not handed to a second worker; added again meanwhile, it is marked
  dirty and re-queued when the worker calls `done` (so the newest state is always looked at).
- Failures re-queue through `add_rate_limited`: per-key exponential backoff with jitter, capped;
  `forget` resets a key's backoff after a success.
- `add_after` schedules a key for later (template not found yet, periodic checks).
- Backoff means backoff: while a failed key waits out its delay, `nudge` (an event that is no
  reason to hurry: a pod changed, a resync) is dropped, also when it arrives mid-processing and
  the processing ends in a new failure. Only `add` (the instance's spec or template changed, an
  admin asked for a retry) ends the wait early.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay after the n-th consecutive failure: base * 2**n, jittered, never above `cap`."""

    base: float = 1.0
    cap: float = 300.0
    # Jitter spreads retries of many instances that failed together (an apiserver outage) so
    # they do not come back as one burst.
    jitter: float = 0.2

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        raw = self.base * (2 ** min(failures, 62))
        jittered = raw * (1 + self.jitter * (2 * rand() - 1))
        return max(0.0, min(self.cap, jittered))


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class WorkQueue:
    def __init__(self, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._on_depth = on_depth
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        # Keys nudged while processing: re-queued at `done` unless they failed meanwhile.
        self._nudged: set[str] = set()
        # Delayed adds: (due time, sequence, key); the sequence keeps heap order stable.
        self._waiting: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}
        self._seq = itertools.count()
        self._failures: dict[str, int] = {}
        self._shutdown = False

    # ---- producers --------------------------------------------------------------------------

    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def nudge(self, key: str) -> None:
        """`add` for an event that may be news but is no reason to hurry (a pod changed, a
        resync): dropped while `key` waits out a failure backoff, so a failing instance costs
        no more engine operations than its backoff allows, however often its pods change."""
        with self._cond:
            if self._backing_off_locked(key):
                return
            if key in self._processing:
                self._nudged.add(key)
                return
            self._add_locked(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._add_after_locked(key, delay, replace=False)

    def _add_after_locked(self, key: str, delay: float, replace: bool) -> None:
        if self._shutdown:
            return
        due = self._clock() + delay
        # One pending delayed add per key, the earliest: otherwise every extra trigger of a
        # failing key would start one more retry chain. A new failure (`replace`) sets the
        # retry to its own delay: an earlier leftover must not cut the new backoff short.
        current = self._due.get(key)
        if current is not None and current <= due and not replace:
            return
        self._due[key] = due
        heapq.heappush(self._waiting, (due, next(self._seq), key))
        self._cond.notify()

    def add_rate_limited(self, key: str, floor: float = 0.0) -> float:
        """Re-queue `key` after its next backoff delay (at least `floor`); returns the delay.

        `floor` lets a caller slow a hopeless key straight down to the cap (Degraded instances).
        """
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = max(self.backoff.delay(failures), min(floor, self.backoff.cap))
            if delay <= 0:
                self._add_locked(key)
            else:
                self._add_after_locked(key, delay, replace=True)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def backing_off(self, key: str) -> bool:
        """`key` failed and its retry is scheduled for later: events must not hurry it."""
        with self._cond:
            return self._backing_off_locked(key)

    def num_requeues(self, key: str) -> int:
        """Consecutive failures of `key` since its last `forget`."""
        with self._cond:
            return self._failures.get(key, 0)

    # ---- consumers --------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> str | None:
        """Next key to process (now owned by the caller until `done`); None on timeout.

        Raises ShutDown once the queue is shut down, so workers stop taking new work while the
        ones mid-operation finish.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    raise ShutDown()
                self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    self._report_depth_locked()
                    return key
                now = self._clock()
                waits = []
                if deadline is not None:
                    if now >= deadline:
                        return None
                    waits.append(deadline - now)
                if self._waiting:
                    waits.append(max(0.0, self._waiting[0][0] - now))
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            nudged = key in self._nudged
            self._nudged.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._enqueue_locked(key)
            elif nudged and not self._backing_off_locked(key):
                self._enqueue_locked(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def processing(self) -> set[str]:
        with self._cond:
            return set(self._processing)

    def waiting(self) -> int:
        """Keys scheduled for later."""
        with self._cond:
            return len(self._due)

    def is_waiting(self, key: str) -> bool:
        """`key` has a delayed add pending (a retry with backoff is already scheduled)."""
        with self._cond:
            return key in self._due

    # ---- internals --------------------------------------------------------------------------

    def _backing_off_locked(self, key: str) -> bool:
        return self._failures.get(key, 0) > 0 and key in self._due

    def _add_locked(self, key: str) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._enqueue_locked(key)

    def _enqueue_locked(self, key: str) -> None:
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.append(key)
        self._report_depth_locked()
        self._cond.notify()

    def _promote_due_locked(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            due, _, key = heapq.heappop(self._waiting)
            if self._due.get(key) != due:
                continue  # superseded by an earlier due time for the same key
            del self._due[key]
            self._add_locked(key)

    def _report_depth_locked(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._queue))
