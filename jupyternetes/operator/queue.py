"""A work queue with client-go's semantics, for instance keys (`namespace/name`).

- A key waits in the queue at most once: any number of events for one instance coalesce.
- A key being processed is not handed to a second worker; added again meanwhile, it is marked
  dirty and re-queued when the worker calls `done` (so the newest state is always looked at).
- Failures re-queue through `add_rate_limited`: per-key exponential backoff with jitter, capped;
  `forget` resets a key's backoff after a success.
- `add_after` schedules a key for later (template not found yet, periodic checks).
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

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            due = self._clock() + delay
            # One pending delayed add per key, the earliest: otherwise every extra trigger of
            # a failing key (a resync, an event) would start one more retry chain.
            current = self._due.get(key)
            if current is not None and current <= due:
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
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

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
            if key in self._dirty:
                self._dirty.discard(key)
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
