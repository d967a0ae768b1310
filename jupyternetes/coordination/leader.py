"""Leader election on a `coordination.k8s.io/v1` Lease: one operator replica drives the engine.

Only the leader watches, starts engine operations, clears stack locks and repairs state files;
other replicas stand by and take over within the lease duration when the leader dies. The
Lease algorithm (acquire, renew stamped before the request, bounded calls, the renew deadline
and its watchdog, release) is lease.py's, shared with the shards; this module is what leading
means:

- a candidate may lead once its membership Lease is written (membership.py) and no live
  replica uses another shard count; it takes the Lease when it is free (lease.py);
- `is_leader()` is False from the instant the renew deadline passes without a successful renew;
  the watchdog then calls `on_stopped` (the operator kills its engine processes and exits), so
  it has stopped writing before anyone else may acquire (locks.py relies on that). A Lease found
  held by someone else, or a live replica of another shard count, stops it the same way;
- a leader that stops on purpose releases the Lease (empty holder, 1 s duration) after its
  in-flight work finished, so a standby takes over at once instead of after a lease duration.

Why not `kubernetes.leaderelection` (checked in kubernetes 37.0.2): its LeaseLock builds
`CoordinationV1Api()` on the client's global default configuration, not on the operator's
ApiClient (--kubeconfig/--context would be ignored); a follower's `run()` blocks in `acquire()`
with no way to stop it on SIGTERM; it never releases the Lease; config errors call
`sys.exit`; it keeps no leaseTransitions; its calls go through the client's default retries.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from jupyternetes.coordination.lease import (
    JITTER,
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    LeaseConflict,
    LeaseKeeper,
    LeaseRecord,
    LeaseStore,
    Timings,
    micro_time,
    validate,
)
from jupyternetes.coordination.membership import Membership

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "jupyternetes-operator"

__all__ = ["DEFAULT_LEASE_NAME", "JITTER", "LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD",
           "LeaderElector", "LeaseConflict", "LeaseRecord", "default_identity", "micro_time",
           "validate"]


def default_identity() -> str:
    """hostname_pid: unique per process, and says where to look (two replicas may share a
    host in tests; a restarted container gets a new pid or hostname)."""
    return f"{socket.gethostname()}_{os.getpid()}"


class LeaderElector:
    """One candidate for the Lease `name` in `store`. `run(stop)` in a thread of its own;
    `on_started(since)` is called (in a new thread, so a slow start never delays a renew) with
    the Unix time the Lease was acquired; `on_stopped()` once when it is lost. After a loss
    `run` returns: a process that lost the Lease is not trusted to lead again (the operator
    exits and restarts as a standby)."""

    def __init__(self, store: LeaseStore, identity: str, name: str = DEFAULT_LEASE_NAME, *,
                 lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE, retry_period: float = RETRY_PERIOD,
                 on_started: Callable[[float], None] = lambda since: None,
                 on_stopped: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.timings = Timings(lease_duration, renew_deadline, retry_period)
        self.name = name
        self.identity = identity
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.keeper = LeaseKeeper(store, identity, self.timings, on_lost=self._lost,
                                  clock=clock, wall=wall)
        self.membership = Membership(self.keeper, name, shards=0)
        self._lock = threading.Lock()
        self._observed: LeaseRecord | None = None
        self._leading = False
        self.since: float | None = None  # Unix time this candidate acquired the Lease
        self.lost = False

    @property
    def lease_duration(self) -> float:
        return self.timings.lease_duration

    @property
    def renew_deadline(self) -> float:
        return self.timings.renew_deadline

    @property
    def retry_period(self) -> float:
        return self.timings.retry_period

    # ---- state ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Holding the Lease, renewed within the renew deadline: a leader whose renews fail
        stops starting (and writing) work at once, before its loop or watchdog has noticed."""
        return not self.lost and self.keeper.fresh(self.name)

    def status(self) -> dict[str, Any]:
        """For /readyz: who leads (as last observed) and since when."""
        with self._lock:
            observed = self._observed
        holder = (observed.holder or None) if observed else None
        return {"identity": self.identity, "leader": holder, "leading": self.is_leader(),
                "since": observed.acquire_time if observed and holder else None}

    def holder(self) -> str | None:
        with self._lock:
            return (self._observed.holder or None) if self._observed else None

    def _observe(self, record: LeaseRecord | None) -> None:
        with self._lock:
            before = self._observed.holder if self._observed else None
            self._observed = record
        holder = record.holder if record else ""
        if holder != before:
            log.info("Lease holder: %s (this candidate: %s)", holder or "nobody", self.identity)

    # ---- one attempt ------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round: renew what is held, or acquire the Lease when it is free; True when this
        candidate holds it afterwards."""
        got = self.membership.round()
        if got is None:
            return self.is_leader()
        records, established = got
        current = records.get(self.name)
        if self.keeper.held(self.name) is not None:
            self._observe(self.keeper.held(self.name).record)  # type: ignore[union-attr]
            others = self.membership.disagreeing(records)
            if others:
                self.keeper.lose(self.name, "a live replica uses another shard count")
            return self.is_leader()
        self._observe(current)
        if self.lost or not established or self.membership.disagreeing(records):
            return False
        if (current is not None and current.holder and current.holder != self.identity
                and self.keeper.live(self.name, current)):
            return False  # held by someone else, and not expired on our clock
        held = self.keeper.acquire(self.name, current)
        if held is None:
            return False
        self._observe(held.record)
        return True

    def _lost(self, name: str, reason: str) -> None:
        """The keeper lost `name` (deadline, taken, or disagreement): leadership ends."""
        if name == self.membership.name and self.keeper.held(self.name) is not None:
            self.keeper.lose(self.name, f"its membership Lease was lost ({reason})")
            return
        if name != self.name:
            return
        with self._lock:
            was_leading, self._leading = self._leading, False
            if not was_leading or self.lost:
                return
            self.lost = True
        log.error("leader election: %s lost the Lease (%s)", self.identity, reason)
        self.on_stopped()

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow until the Lease is ours, then lead until `stop` is set (the caller then
        calls `release()` once its work has stopped) or the Lease is lost."""
        log.info("leader election: %s is a candidate for Lease %s", self.identity, self.name)
        self.keeper.start_watchdog(stop)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                break
            stop.wait(self.retry_period * random.uniform(1.0, JITTER))
        if stop.is_set():
            return
        held = self.keeper.held(self.name)
        with self._lock:
            self._leading = held is not None
            self.since = held.since if held is not None else None
        if held is None:
            return
        log.info("leader election: %s acquired the Lease", self.identity)
        threading.Thread(target=self.on_started, args=(self.since,), name="leading",
                         daemon=True).start()
        while not self.lost and not stop.wait(self.retry_period):
            self.try_acquire_or_renew()

    def release(self) -> bool:
        """Give the Lease up (graceful stop, after in-flight work finished): empty holder and
        a 1 s duration, so a standby takes over at its next retry; the membership goes too."""
        with self._lock:
            self._leading = False
        released = self.keeper.held(self.name) is not None and self.keeper.release(self.name)
        self.membership.leave()
        if released:
            log.info("leader election: %s released the Lease", self.identity)
        return released
