"""Shard Leases: one `coordination.k8s.io/v1` Lease per shard, held by the replica that reconciles
the shard's instances; one membership Lease per replica, so that a replica holding nothing yet
is counted when the shards are shared out. The decisions are shards.py (pure); this is the I/O.

Names, in the leader-election namespace (`--leader-election-namespace`), with `<base>` the
leader-election Lease name (`--leader-election-name`, default jupyternetes-operator-<hash>):
  `<base>-shard-<i>`          i = 0 .. --shards-1; holderIdentity = the holding replica's id
  `<base>-member-<hash(id)>`  one per running replica; holderIdentity = its --replica-id

RBAC (apiGroup coordination.k8s.io, resource leases, in that namespace), exactly the verbs used:
  list    one LIST per retry period: every shard and membership Lease at once
  create  a shard Lease acquired for the first time; this replica's membership Lease
  update  acquire (take over), renew and release a Lease (a PUT carrying the resourceVersion)
  delete  this replica's membership Lease on a graceful stop, and membership Leases nobody
          renewed for GC_LEASE_DURATIONS lease durations (replicas killed long ago)
(no get, no watch, no patch.)

The algorithm per Lease is client-go's, as in leader.py: a Lease may be taken when it has no
holder or when its record has not changed for its lease duration on this replica's own clock;
every write carries the resourceVersion read, so of two racing replicas one gets 409. Each
retry period the loop lists the Leases, renews the held ones, then follows `shards.plan`:
- acquire up to this replica's quota (free shards first, then lapsed ones: takeovers);
- release the excess gracefully: the shard stops taking work (`holds` is False), the loop waits
  until `busy(shard)` says its in-flight operations ended, then writes an empty holder with a 1 s
  duration, so the next holder takes it at once;
- a held shard whose renew has not succeeded for the renew deadline (shorter than the lease
  duration) is lost: `holds` is False from that instant (checked on every call, and by a
  watchdog thread that does not wait for the apiserver), and `on_lost(shard)` kills its
  in-flight engine operations, before anyone else may take the Lease (locks.py relies on it).
  A Lease found held by someone else is lost at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from jupyternetes.coordination import leader, shards
from jupyternetes.coordination.leader import LeaseConflict, LeaseRecord, micro_time
from jupyternetes.coordination.leasestore import LeaseStore, member_lease_name, shard_lease_name

log = logging.getLogger(__name__)

GC_LEASE_DURATIONS = 20  # a membership Lease unchanged this many durations is removed


@dataclass
class Held:
    since: float  # Unix time this replica acquired the shard (the lock rule's reference)
    last_renew: float  # monotonic
    record: LeaseRecord
    draining: bool = False
    # Its instances are served (enqueued, reconciled) once the acquisition's clean-up is done
    # (`serve`): the stale locks and pending operations of a takeover are cleared first.
    serving: bool = False


class ShardManager:
    """Holds this replica's share of the shard Leases. `run(stop)` in a thread of its own;
    `holds(shard)` is the gate of every operation; `release_all()` after the work stopped.

    Callbacks: `on_acquired(shard, since, takeover)` in a new thread (a slow lock sweep never
    delays a renew), which calls `serve(shard)` when the shard's instances may be reconciled;
    `on_lost(shard)` synchronously (it kills engine processes: quick); `busy(shard)`: whether
    an operation of the shard is in flight."""

    def __init__(self, store: LeaseStore, replica: str, count: int, base: str, *,
                 lease_duration: float = leader.LEASE_DURATION,
                 renew_deadline: float = leader.RENEW_DEADLINE,
                 retry_period: float = leader.RETRY_PERIOD,
                 on_acquired: Callable[[int, float, bool], None] = lambda s, t, k: None,
                 on_lost: Callable[[int], None] = lambda shard: None,
                 busy: Callable[[int], bool] = lambda shard: False,
                 on_held: Callable[[int], None] = lambda n: None,
                 on_takeover: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        leader.validate(lease_duration, renew_deadline, retry_period)
        if count < 1:
            raise ValueError(f"--shards must be at least 1 for sharding, got {count}")
        self.store = store
        self.replica = replica
        self.count = count
        self.base = base
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.busy = busy
        self.on_held = on_held
        self.on_takeover = on_takeover
        self.clock = clock
        self.wall = wall
        self.member_name = member_lease_name(base, replica)
        self._lock = threading.Lock()
        self._held: dict[int, Held] = {}
        # name -> ((holder, renewTime, resourceVersion), monotonic time it was first seen)
        self._seen: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._member: LeaseRecord | None = None
        self._replicas: frozenset[str] = frozenset({replica})
        self._quota = 0
        self._acquiring = True
        self.takeovers = 0

    # ---- the gate ---------------------------------------------------------------------------

    def holds(self, shard: int) -> bool:
        """Held, not being released, and renewed within the renew deadline."""
        with self._lock:
            held = self._held.get(shard)
            return (held is not None and not held.draining
                    and self.clock() - held.last_renew < self.renew_deadline)

    def serves(self, shard: int) -> bool:
        """`holds`, and the acquisition's clean-up is done: its instances may be reconciled."""
        with self._lock:
            held = self._held.get(shard)
            serving = held is not None and held.serving
        return serving and self.holds(shard)

    def serve(self, shard: int) -> None:
        with self._lock:
            if shard in self._held:
                self._held[shard].serving = True

    def serves_key(self, key: str) -> bool:
        return self.serves(shards.shard_of_key(key, self.count))

    def holds_stack(self, stack: str) -> bool:
        return self.holds(shards.shard_of_stack(stack, self.count))

    def since_for_stack(self, stack: str) -> float | None:
        """When this replica acquired the stack's shard, while it holds it; None otherwise.
        The lock rule's reference time for locks of other hosts (locks.py)."""
        shard = shards.shard_of_stack(stack, self.count)
        with self._lock:
            held = self._held.get(shard)
            fresh = held is not None and self.clock() - held.last_renew < self.renew_deadline
            return held.since if fresh and held is not None else None

    def held_shards(self) -> list[int]:
        with self._lock:
            return sorted(i for i, h in self._held.items() if not h.draining)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"replica": self.replica, "shardCount": self.count,
                    "shards": sorted(i for i, h in self._held.items() if not h.draining),
                    "releasing": sorted(i for i, h in self._held.items() if h.draining),
                    "quota": self._quota, "replicas": sorted(self._replicas)}

    # ---- one round --------------------------------------------------------------------------

    def _live(self, name: str, record: LeaseRecord, now: float) -> bool:
        if not record.holder:
            return False
        seen = self._seen.get(name)
        since = seen[1] if seen else now
        return now - since < (record.lease_seconds or self.lease_duration)

    def _observe(self, records: dict[str, LeaseRecord], now: float) -> None:
        for name, record in records.items():
            key = (record.holder, record.renew_time, record.resource_version)
            seen = self._seen.get(name)
            if seen is None or seen[0] != key:
                self._seen[name] = (key, now)
        for name in set(self._seen) - set(records):
            del self._seen[name]

    def tick(self) -> None:
        """List, renew, lose what could not be renewed, then release and acquire per plan."""
        now, now_unix = self.clock(), self.wall()
        try:
            records = self.store.list()
        except Exception as exc:
            log.warning("shard Leases (%s): %s", self.replica, exc)
            self.check_deadlines()
            return
        self._observe(records, now)
        self._renew(records, now, now_unix)
        self._renew_member(records, now_unix)
        self.check_deadlines()
        views = [self._view(i, records, now) for i in range(self.count)]
        members = {r.holder for n, r in records.items()
                   if n.startswith(f"{self.base}-member-") and self._live(n, r, now)}
        replicas = shards.live_replicas(self.replica, members, views)
        with self._lock:
            held = set(self._held)
        decided = shards.plan(self.replica, views, held, replicas)
        with self._lock:
            self._replicas, self._quota = replicas, decided.quota
        self._release(decided.release, records, now_unix)
        self._acquire(decided.acquire, records, now, now_unix)
        self._collect_members(records, now)

    def _view(self, shard: int, records: dict[str, LeaseRecord], now: float) -> shards.ShardView:
        name = shard_lease_name(self.base, shard)
        record = records.get(name)
        if record is None:
            return shards.ShardView(shard, "", False)
        return shards.ShardView(shard, record.holder, self._live(name, record, now))

    def _renew(self, records: dict[str, LeaseRecord], now: float, now_unix: float) -> None:
        with self._lock:
            mine = sorted(self._held)
        for shard in mine:
            name = shard_lease_name(self.base, shard)
            current = records.get(name)
            if current is None or current.holder != self.replica:
                self.lose(shard, f"its Lease is now held by {current.holder or 'nobody'}"
                          if current is not None else "its Lease was deleted")
                continue
            try:
                renewed = self.store.replace(name, replace(
                    current, lease_seconds=int(self.lease_duration),
                    renew_time=micro_time(now_unix)))
            except Exception as exc:  # one failed renew; the deadline decides
                log.warning("shard %d: renew failed (%s)", shard, exc)
                continue
            records[name] = renewed
            with self._lock:
                if shard in self._held:
                    # The time before the request: conservative for the deadline.
                    self._held[shard].last_renew = now
                    self._held[shard].record = renewed

    def _renew_member(self, records: dict[str, LeaseRecord], now_unix: float) -> None:
        current = records.get(self.member_name)
        stamp = micro_time(now_unix)
        try:
            if current is None:
                self._member = self.store.create(self.member_name, LeaseRecord(
                    self.replica, int(self.lease_duration), stamp, stamp))
            else:
                self._member = self.store.replace(self.member_name, replace(
                    current, holder=self.replica, lease_seconds=int(self.lease_duration),
                    renew_time=stamp))
            records[self.member_name] = self._member
        except Exception as exc:
            log.warning("membership Lease %s: %s", self.member_name, exc)

    def check_deadlines(self) -> list[int]:
        """Lose every held shard not renewed within the renew deadline; the shards lost."""
        now = self.clock()
        with self._lock:
            overdue = [i for i, h in self._held.items()
                       if now - h.last_renew >= self.renew_deadline]
        for shard in overdue:
            self.lose(shard, f"no renew for {self.renew_deadline:g}s")
        return overdue

    def lose(self, shard: int, reason: str) -> None:
        with self._lock:
            if self._held.pop(shard, None) is None:
                return
            count = len(self._held)
        log.error("shard %d lost by %s (%s): stopping its work", shard, self.replica, reason)
        self.on_held(count)
        try:
            self.on_lost(shard)
        except Exception:
            log.exception("stopping the work of lost shard %d failed", shard)

    def _release(self, release: tuple[int, ...], records: dict[str, LeaseRecord],
                 now_unix: float) -> None:
        with self._lock:
            for shard in release:
                if shard in self._held and not self._held[shard].draining:
                    self._held[shard].draining = True
                    log.info("shard %d: releasing (over this replica's share %d); waiting for "
                             "its in-flight work", shard, self._quota)
            draining = [i for i, h in self._held.items() if h.draining]
        for shard in draining:
            if self.busy(shard):
                continue
            self._give_up(shard, records.get(shard_lease_name(self.base, shard)), now_unix)

    def _give_up(self, shard: int, current: LeaseRecord | None, now_unix: float) -> bool:
        """Write an empty holder (1 s duration): the next replica takes it at once."""
        name = shard_lease_name(self.base, shard)
        with self._lock:
            held = self._held.pop(shard, None)
            count = len(self._held)
        if held is None:
            return False
        self.on_held(count)
        current = current or held.record
        if current.holder != self.replica:
            return False
        try:
            self.store.replace(name, replace(current, holder="", lease_seconds=1,
                                             renew_time=micro_time(now_unix)))
        except Exception as exc:
            log.warning("shard %d: release failed (%s); it lapses after its lease duration",
                        shard, exc)
            return False
        log.info("shard %d released by %s", shard, self.replica)
        return True

    def stop_acquiring(self) -> None:
        """Shutting down: keep renewing what is held until `release_all`, take nothing new."""
        with self._lock:
            self._acquiring = False

    def _acquire(self, acquire: tuple[int, ...], records: dict[str, LeaseRecord], now: float,
                 now_unix: float) -> None:
        with self._lock:
            if not self._acquiring:
                return
        for shard in acquire:
            name = shard_lease_name(self.base, shard)
            current = records.get(name)
            stamp = micro_time(now_unix)
            try:
                if current is None:
                    record = self.store.create(name, LeaseRecord(
                        self.replica, int(self.lease_duration), stamp, stamp))
                else:
                    record = self.store.replace(name, replace(
                        current, holder=self.replica, lease_seconds=int(self.lease_duration),
                        acquire_time=stamp, renew_time=stamp,
                        transitions=current.transitions + 1))
            except LeaseConflict:
                continue  # another replica was faster; the next round decides again
            except Exception as exc:
                log.warning("shard %d: acquire failed (%s)", shard, exc)
                continue
            takeover = current is not None and bool(current.holder)
            with self._lock:
                self._held[shard] = Held(since=now_unix, last_renew=now, record=record)
                count = len(self._held)
                if takeover:
                    self.takeovers += 1
            self.on_held(count)
            if takeover:
                self.on_takeover()
            log.info("shard %d acquired by %s%s", shard, self.replica,
                     f" (taken over from {current.holder}, who stopped renewing)"
                     if takeover and current is not None else "")
            threading.Thread(target=self._started, args=(shard, now_unix, takeover),
                             name=f"shard-{shard}", daemon=True).start()

    def _started(self, shard: int, since: float, takeover: bool) -> None:
        try:
            self.on_acquired(shard, since, takeover)
        except Exception:
            log.exception("starting the work of shard %d failed", shard)

    def _collect_members(self, records: dict[str, LeaseRecord], now: float) -> None:
        gc_after = GC_LEASE_DURATIONS * self.lease_duration
        for name, record in records.items():
            if not name.startswith(f"{self.base}-member-") or name == self.member_name:
                continue
            seen = self._seen.get(name)
            if seen is not None and now - seen[1] >= gc_after:
                try:
                    self.store.delete(name, record.resource_version)
                    log.info("removed the membership Lease %s of %s (not renewed for %.0fs)",
                             name, record.holder or "nobody", now - seen[1])
                except Exception as exc:
                    log.warning("membership Lease %s: %s", name, exc)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("sharding: %s takes part in %d shard Leases %s-shard-*", self.replica,
                 self.count, self.base)
        watchdog = threading.Thread(target=self._watchdog, args=(stop,), name="shard-deadlines",
                                    daemon=True)
        watchdog.start()
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("shard Leases: round failed")
            stop.wait(self.retry_period * random.uniform(1.0, leader.JITTER))

    def _watchdog(self, stop: threading.Event) -> None:
        """Deadlines are checked here too: a loop stuck in a slow apiserver call must not keep
        engine operations running past the renew deadline."""
        interval = min(0.5, self.retry_period / 2)
        while not stop.wait(interval):
            self.check_deadlines()

    def release_all(self) -> list[int]:
        """Graceful stop, after the work stopped: release every held shard and remove this
        replica's membership Lease. Returns the shards released."""
        try:
            records = self.store.list()
        except Exception as exc:
            log.warning("shard Leases: cannot list them to release (%s); they lapse after "
                        "their lease duration", exc)
            records = {}
        now_unix = self.wall()
        released = [shard for shard in sorted(self.held_locally_all())
                    if self._give_up(shard, records.get(shard_lease_name(self.base, shard)),
                                     now_unix)]
        member = records.get(self.member_name) or self._member
        try:
            self.store.delete(self.member_name, member.resource_version if member else None)
        except Exception as exc:
            log.warning("membership Lease %s: %s", self.member_name, exc)
        log.info("sharding: %s released shards %s", self.replica, released)
        return released

    def held_locally_all(self) -> list[int]:
        with self._lock:
            return sorted(self._held)
