"""The one Lease algorithm: acquire, renew and release `coordination.k8s.io/v1` Leases for one
replica, with a watchdog. Leader election (leader.py) and shards (shardleases.py) are both built
on `LeaseKeeper`; neither has a copy of its own.

The algorithm is client-go's (k8s.io/client-go/tools/leaderelection/leaderelection.go):

- a Lease may be taken when it has no holder, or when its record has not changed for its
  `leaseDurationSeconds` on this replica's *own* monotonic clock, counted from the moment the
  read that showed the record *returned* (as client-go's observedTime: the record certainly
  existed then, so the count never starts before the holder's write);
- every write is a replace carrying the resourceVersion read: of two racing replicas one gets
  409 and stays out;
- the holder's renew time is stamped *before* the request is sent: a write that succeeded after
  a slow round trip counts from when it was sent, never from when the answer arrived (the
  holder's deadline then ends no later than the others' view of the lapse starts);
- every Lease call is bounded (`timeout`, the time left before the earliest renew deadline, at
  most the renew deadline) and the store retries nothing by itself (KubeLeaseStore: no urllib3
  retries), so one stuck call cannot hold the loop past a deadline;
- a held Lease whose last successful renew is older than the renew deadline is lost: `fresh`
  is False from that instant (every gate asks it), and the watchdog thread, which never waits
  for the apiserver, calls `on_lost` so the replica's work stops (engine processes killed,
  writes fenced) before any other replica may take the Lease.

Margins (renew deadline < lease duration, checked by `validate`): with the defaults 30 / 20 / 4 s
a holder has 5 renew attempts before its deadline; between its deadline (it stops) and the
earliest moment another replica may take over (lease duration after it *saw* the last renew)
are 10 s for the watchdog to kill the engine processes (KILL_WAIT_SECONDS) and for the two
clocks to drift. On a starved node (load far above the CPU count) raise all three together,
keeping the ratios: see the README ("Lease timings").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Twice client-go's 15 / 10 / 2 s: a renew that waits for CPU or a slow apiserver on a busy node
# does not cost the Lease (the test suite's shard test flapped at 6 / 4 / 1 on a loaded machine).
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 30.0, 20.0, 4.0
JITTER = 1.2
MIN_CALL_TIMEOUT = 1.0  # shorter is no use; the watchdog, not the call, enforces the deadline
RELEASED_SECONDS = 1  # a released Lease: empty holder, lapses at once


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (HTTP 409): re-read and decide again."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    lease_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int = 0
    resource_version: str | None = None
    # The writer's shard count (0: leader election), on membership Leases; None: not said
    # (an operator from before the count was recorded).
    shards: int | None = None


class LeaseStore(Protocol):
    """Leases by name: one LIST for all of a replica's Leases, single-Lease writes. `timeout`
    bounds each call (seconds); a store retries nothing by itself."""

    def list(self, timeout: float | None = None) -> dict[str, LeaseRecord]: ...
    def create(self, name: str, record: LeaseRecord,
               timeout: float | None = None) -> LeaseRecord: ...
    def replace(self, name: str, record: LeaseRecord,
                timeout: float | None = None) -> LeaseRecord: ...
    def delete(self, name: str, resource_version: str | None,
               timeout: float | None = None) -> None: ...


def micro_time(unix: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """client-go's checks, as one error naming the flags to change."""
    if not 0 < retry_period * JITTER < renew_deadline < lease_duration:
        raise ValueError(
            f"leader election needs --leader-election-lease-duration ({lease_duration:g}s) > "
            f"--leader-election-renew-deadline ({renew_deadline:g}s) > {JITTER} x "
            f"--leader-election-retry-period ({retry_period:g}s) > 0")


@dataclass(frozen=True)
class Timings:
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        validate(self.lease_duration, self.renew_deadline, self.retry_period)


@dataclass
class Held:
    """A Lease this replica holds."""

    since: float  # Unix time it was acquired (the lock rule's reference, locks.py)
    renewed: float  # monotonic time the last successful write was *sent*
    record: LeaseRecord
    draining: bool = False  # being released: no new work, in-flight work finishes
    serving: bool = False  # its work may start (the acquisition's clean-up is done)


class LeaseKeeper:
    """The Leases one replica (`identity`) holds in `store`: observation of everyone's records
    on this replica's clock, acquire / renew / release, the renew deadline and its watchdog.

    `on_lost(name, reason)` runs once per lost Lease, synchronously, from whichever thread saw
    the loss first (the loop, or the watchdog): it must be quick (kill, close a gate)."""

    def __init__(self, store: LeaseStore, identity: str, timings: Timings, *,
                 on_lost: Callable[[str, str], None] = lambda name, reason: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.identity = identity
        self.timings = timings
        self.on_lost = on_lost
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        # name -> ((holder, renewTime, resourceVersion), monotonic time the change was seen)
        self._seen: dict[str, tuple[tuple[Any, ...], float]] = {}

    # ---- what is held -------------------------------------------------------------------------

    def fresh(self, name: str) -> bool:
        """Held and renewed within the renew deadline (draining or not)."""
        with self._lock:
            held = self._held.get(name)
            return held is not None and self._fresh(held)

    def _fresh(self, held: Held) -> bool:
        return self.clock() - held.renewed < self.timings.renew_deadline

    def held(self, name: str) -> Held | None:
        with self._lock:
            return self._held.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def update(self, name: str, **changes: Any) -> None:
        with self._lock:
            if name in self._held:
                for attr, value in changes.items():
                    setattr(self._held[name], attr, value)

    def call_timeout(self) -> float:
        """The bound of the next Lease call: the time left before the earliest renew deadline
        of what is held (the renew deadline when nothing is), at least MIN_CALL_TIMEOUT."""
        now = self.clock()
        with self._lock:
            left = [held.renewed + self.timings.renew_deadline - now
                    for held in self._held.values()]
        return max(MIN_CALL_TIMEOUT, min([self.timings.renew_deadline, *left]))

    # ---- observing ----------------------------------------------------------------------------

    def read(self) -> dict[str, LeaseRecord] | None:
        """One bounded LIST; every record observed at the time it returned. None on failure
        (a failed read is one failed attempt; the deadlines decide)."""
        try:
            records = self.store.list(timeout=self.call_timeout())
        except Exception as exc:
            log.warning("Leases (%s): %s", self.identity, exc)
            return None
        self.observe(records, self.clock(), complete=True)
        return records

    def observe(self, records: dict[str, LeaseRecord], now: float,
                complete: bool = False) -> None:
        """Remember when each record was first seen as it is; `complete`: `records` is every
        Lease there is (a LIST), so those not in it are gone."""
        with self._lock:
            for name, record in records.items():
                key = (record.holder, record.renew_time, record.resource_version)
                seen = self._seen.get(name)
                if seen is None or seen[0] != key:
                    self._seen[name] = (key, now)
            if complete:
                for name in set(self._seen) - set(records):
                    del self._seen[name]

    def live(self, name: str, record: LeaseRecord) -> bool:
        """Held by someone (anyone), and changed within its lease duration on our clock."""
        if not record.holder:
            return False
        with self._lock:
            seen = self._seen.get(name)
        if seen is None:
            return True  # never observed: assume live (never take what we have not watched)
        return self.clock() - seen[1] < (record.lease_seconds or self.timings.lease_duration)

    def unchanged_for(self, name: str) -> float:
        with self._lock:
            seen = self._seen.get(name)
        return 0.0 if seen is None else self.clock() - seen[1]

    # ---- writing ------------------------------------------------------------------------------

    def acquire(self, name: str, current: LeaseRecord | None, *,
                shards: int | None = None) -> Held | None:
        """Take `name` (create it, or replace the record read); the Held, or None when another
        replica was faster (409) or the call failed. The caller decided it is free."""
        stamp_unix, sent = self.wall(), self.clock()  # before the request
        stamp = micro_time(stamp_unix)
        duration = int(self.timings.lease_duration)
        try:
            if current is None:
                record = self.store.create(name, LeaseRecord(
                    self.identity, duration, stamp, stamp, shards=shards),
                    timeout=self.call_timeout())
            else:
                mine = current.holder == self.identity
                record = self.store.replace(name, replace(
                    current, holder=self.identity, lease_seconds=duration,
                    acquire_time=stamp, renew_time=stamp, shards=shards,
                    transitions=current.transitions + (0 if mine else 1)),
                    timeout=self.call_timeout())
        except LeaseConflict:
            return None
        except Exception as exc:
            log.warning("Lease %s: acquire failed (%s)", name, exc)
            return None
        held = Held(since=stamp_unix, renewed=sent, record=record)
        with self._lock:
            self._held[name] = held
        self.observe({name: record}, self.clock())
        return held

    def renew(self, name: str, current: LeaseRecord | None) -> bool:
        """Renew a held Lease from the record just read. Found held by someone else (or
        deleted): lost at once. A failed call: False, the deadline decides."""
        with self._lock:
            held = self._held.get(name)
        if held is None:
            return False
        if current is None or current.holder != self.identity:
            self.lose(name, f"its Lease is now held by {current.holder or 'nobody'}"
                      if current is not None else "its Lease was deleted")
            return False
        sent = self.clock()  # before the request: conservative for the deadline
        try:
            record = self.store.replace(name, replace(
                current, lease_seconds=int(self.timings.lease_duration),
                renew_time=micro_time(self.wall())), timeout=self.call_timeout())
        except Exception as exc:
            log.warning("Lease %s: renew failed (%s)", name, exc)
            return False
        with self._lock:
            held = self._held.get(name)
            if held is None:
                return False  # lost meanwhile (the watchdog): a late success changes nothing
            held.renewed, held.record = sent, record
        self.observe({name: record}, self.clock())
        return True

    def renew_all(self, records: dict[str, LeaseRecord]) -> None:
        for name in self.names():
            if self.renew(name, records.get(name)) and (held := self.held(name)) is not None:
                records[name] = held.record

    def release(self, name: str, current: LeaseRecord | None = None) -> bool:
        """Give `name` up: empty holder, RELEASED_SECONDS duration, so the next replica takes
        it at once. Forgotten here first (no work may use it any more)."""
        with self._lock:
            held = self._held.pop(name, None)
        if held is None:
            return False
        current = current or held.record
        if current.holder != self.identity:
            return False
        try:
            self.store.replace(name, replace(current, holder="", lease_seconds=RELEASED_SECONDS,
                                             renew_time=micro_time(self.wall())),
                               timeout=self.call_timeout())
        except Exception as exc:
            log.warning("Lease %s: release failed (%s); it lapses after its lease duration",
                        name, exc)
            return False
        return True

    def delete(self, name: str, record: LeaseRecord | None) -> None:
        with self._lock:
            self._held.pop(name, None)
        try:
            self.store.delete(name, record.resource_version if record else None,
                              timeout=self.call_timeout())
        except Exception as exc:
            log.warning("Lease %s: delete failed (%s)", name, exc)

    # ---- the deadline -------------------------------------------------------------------------

    def lose(self, name: str, reason: str) -> bool:
        with self._lock:
            if self._held.pop(name, None) is None:
                return False
        log.error("Lease %s lost by %s (%s): stopping its work", name, self.identity, reason)
        try:
            self.on_lost(name, reason)
        except Exception:
            log.exception("stopping the work of Lease %s failed", name)
        return True

    def check_deadlines(self) -> list[str]:
        """Lose every held Lease not renewed within the renew deadline; the names lost."""
        now = self.clock()
        with self._lock:
            overdue = sorted(name for name, held in self._held.items()
                             if now - held.renewed >= self.timings.renew_deadline)
        return [name for name in overdue
                if self.lose(name, f"no renew for {self.timings.renew_deadline:g}s")]

    def watchdog(self, stop: threading.Event) -> None:
        """Deadlines checked by a thread of their own: a loop stuck in a slow apiserver call,
        or starved of CPU, must not keep work running past the renew deadline."""
        interval = min(0.5, self.timings.retry_period / 2)
        while not stop.wait(interval):
            try:
                self.check_deadlines()
            except Exception:
                log.exception("Lease watchdog")

    def start_watchdog(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.watchdog, args=(stop,), name="lease-watchdog",
                                  daemon=True)
        thread.start()
        return thread


def disagreeing(records: dict[str, LeaseRecord], members: Iterable[str], shards: int,
                live: Callable[[str, LeaseRecord], bool]) -> list[tuple[str, int | None]]:
    """(holder, shard count) of every live membership Lease among `members` whose shard count
    is not `shards` (None: an operator that does not say): such replicas hash instances into
    other Leases, so while one lives this replica must not work (one owner per stack)."""
    return sorted(((r.holder, r.shards) for n in members if (r := records.get(n)) is not None
                   and r.shards != shards and live(n, r)), key=str)
