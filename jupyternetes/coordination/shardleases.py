"""Shard Leases: one `coordination.k8s.io/v1` Lease per shard, held by the replica that reconciles
the shard's instances. The decisions are shards.py (pure); the Lease algorithm (acquire, renew
stamped before the request, bounded calls, renew deadline and watchdog, release) is lease.py's,
the same as the leader's; membership.py says who is running and with which shard count.

Names (leasestore.py): `<base>-shard-<i>-of-<n>`, i = 0 .. n-1, holderIdentity = the holding
replica's id; `<base>-member-<hash(id)>` per running replica.

Each retry period the loop lists the Leases, renews the held ones (the membership too), then
follows `shards.plan`:
- acquire up to this replica's quota (free shards first, then lapsed ones: takeovers), only
  on a LIST made after its membership was written and while no live replica uses another
  shard count (then its quota is 0: everything is released after its in-flight work);
- release the excess gracefully: the shard stops taking work (`holds` is False), the loop waits
  until `busy(shard)` says its in-flight operations ended, then writes an empty holder with a 1 s
  duration, so the next holder takes it at once;
- a held shard whose renew has not succeeded for the renew deadline (shorter than the lease
  duration) is lost: `holds` is False from that instant (checked on every call, and by the
  watchdog thread that does not wait for the apiserver), and `on_lost(shard)` kills its
  in-flight engine operations, before anyone else may take the Lease (locks.py relies on it).
  A Lease found held by someone else is lost at once; a lost membership loses every shard.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from jupyternetes.coordination import shards
from jupyternetes.coordination.lease import (
    JITTER,
    LEASE_DURATION,
    RENEW_DEADLINE,
    RETRY_PERIOD,
    Held,
    LeaseKeeper,
    LeaseRecord,
    LeaseStore,
    Timings,
)
from jupyternetes.coordination.leasestore import member_lease_name, shard_lease_name
from jupyternetes.coordination.membership import GC_LEASE_DURATIONS, Membership

log = logging.getLogger(__name__)

__all__ = ["GC_LEASE_DURATIONS", "ShardManager", "member_lease_name", "shard_lease_name"]


class ShardManager:
    """Holds this replica's share of the shard Leases. `run(stop)` in a thread of its own;
    `holds(shard)` is the gate of every operation; `release_all()` after the work stopped.

    Callbacks: `on_acquired(shard, since, takeover)` in a new thread (a slow lock sweep never
    delays a renew), which calls `serve(shard)` when the shard's instances may be reconciled;
    `on_lost(shard)` synchronously (it kills engine processes: quick); `busy(shard)`: whether
    an operation of the shard is in flight."""

    def __init__(self, store: LeaseStore, replica: str, count: int, base: str, *,
                 lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE,
                 retry_period: float = RETRY_PERIOD,
                 on_acquired: Callable[[int, float, bool], None] = lambda s, t, k: None,
                 on_lost: Callable[[int], None] = lambda shard: None,
                 busy: Callable[[int], bool] = lambda shard: False,
                 on_held: Callable[[int], None] = lambda n: None,
                 on_takeover: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if count < 1:
            raise ValueError(f"--shards must be at least 1 for sharding, got {count}")
        self.timings = Timings(lease_duration, renew_deadline, retry_period)
        self.replica = replica
        self.count = count
        self.base = base
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.busy = busy
        self.on_held = on_held
        self.on_takeover = on_takeover
        self.keeper = LeaseKeeper(store, replica, self.timings, on_lost=self._lost,
                                  clock=clock, wall=wall)
        self.membership = Membership(self.keeper, base, shards=count)
        self.member_name = self.membership.name
        self._names = {shard_lease_name(base, i, count): i for i in range(count)}
        self._lock = threading.Lock()
        self._replicas: frozenset[str] = frozenset({replica})
        self._quota = 0
        self._acquiring = True
        self.takeovers = 0

    @property
    def store(self) -> LeaseStore:
        return self.keeper.store

    @store.setter
    def store(self, store: LeaseStore) -> None:
        self.keeper.store = store

    def _name(self, shard: int) -> str:
        return shard_lease_name(self.base, shard, self.count)

    def _held(self) -> dict[int, Held]:
        return {i: h for i in range(self.count)
                if (h := self.keeper.held(self._name(i))) is not None}

    # ---- the gate ---------------------------------------------------------------------------

    def holds(self, shard: int) -> bool:
        """Held, not being released, and renewed within the renew deadline."""
        held = self.keeper.held(self._name(shard))
        return held is not None and not held.draining and self.keeper.fresh(self._name(shard))

    def writes(self, shard: int) -> bool:
        """Held and renewed within the renew deadline, also while being released: in-flight
        work of a draining shard may still write its results (the fence of writes)."""
        return self.keeper.fresh(self._name(shard))

    def serves(self, shard: int) -> bool:
        """`holds`, and the acquisition's clean-up is done: its instances may be reconciled."""
        held = self.keeper.held(self._name(shard))
        return held is not None and held.serving and self.holds(shard)

    def serve(self, shard: int) -> None:
        self.keeper.update(self._name(shard), serving=True)

    def serves_key(self, key: str) -> bool:
        return self.serves(shards.shard_of_key(key, self.count))

    def holds_stack(self, stack: str) -> bool:
        return self.holds(shards.shard_of_stack(stack, self.count))

    def writes_stack(self, stack: str) -> bool:
        return self.writes(shards.shard_of_stack(stack, self.count))

    def since_for_stack(self, stack: str) -> float | None:
        """When this replica acquired the stack's shard, while it holds it; None otherwise.
        The lock rule's reference time for locks of other hosts (locks.py)."""
        name = self._name(shards.shard_of_stack(stack, self.count))
        held = self.keeper.held(name)
        return held.since if held is not None and self.keeper.fresh(name) else None

    def held_shards(self) -> list[int]:
        return sorted(i for i, h in self._held().items() if not h.draining)

    def status(self) -> dict[str, Any]:
        held = self._held()
        with self._lock:
            return {"replica": self.replica, "shardCount": self.count,
                    "shards": sorted(i for i, h in held.items() if not h.draining),
                    "releasing": sorted(i for i, h in held.items() if h.draining),
                    "quota": self._quota, "replicas": sorted(self._replicas)}

    # ---- one round --------------------------------------------------------------------------

    def tick(self) -> None:
        """List, renew, lose what could not be renewed, then release and acquire per plan."""
        got = self.membership.round()
        if got is None:
            return
        records, established = got
        views = [self._view(i, records) for i in range(self.count)]
        others = self.membership.disagreeing(records)
        replicas = shards.live_replicas(self.replica, self.membership.live_members(records),
                                        views)
        held = set(self._held())
        decided = (shards.Plan(release=tuple(sorted(held)), quota=0) if others
                   else shards.plan(self.replica, views, held, replicas))
        with self._lock:
            self._replicas, self._quota = replicas, decided.quota
        self._release(decided.release, records)
        if established and not others:
            self._acquire(decided.acquire, records)
        self.membership.collect(records)

    def _view(self, shard: int, records: dict[str, LeaseRecord]) -> shards.ShardView:
        name = self._name(shard)
        record = records.get(name)
        if record is None:
            return shards.ShardView(shard, "", False)
        return shards.ShardView(shard, record.holder, self.keeper.live(name, record))

    def check_deadlines(self) -> list[int]:
        """Lose every held shard not renewed within the renew deadline; the shards lost."""
        return [self._names[name] for name in self.keeper.check_deadlines()
                if name in self._names]

    def lose(self, shard: int, reason: str) -> None:
        self.keeper.lose(self._name(shard), reason)

    def _lost(self, name: str, reason: str) -> None:
        """The keeper lost `name`: a shard stops its work; the membership takes every shard
        with it (a replica the others do not see as live must not work)."""
        if name == self.member_name:
            for shard in sorted(self._held()):
                self.keeper.lose(self._name(shard), f"the membership Lease was lost ({reason})")
            return
        shard = self._names.get(name)
        if shard is None:
            return
        self.on_held(len(self._held()))
        self.on_lost(shard)

    def _release(self, release: tuple[int, ...], records: dict[str, LeaseRecord]) -> None:
        for shard in release:
            held = self.keeper.held(self._name(shard))
            if held is not None and not held.draining:
                self.keeper.update(self._name(shard), draining=True)
                log.info("shard %d: releasing (over this replica's share %d); waiting for "
                         "its in-flight work", shard, self._quota)
        for shard, held in sorted(self._held().items()):
            if held.draining and not self.busy(shard):
                self._give_up(shard, records.get(self._name(shard)))

    def _give_up(self, shard: int, current: LeaseRecord | None) -> bool:
        """Write an empty holder (1 s duration): the next replica takes it at once."""
        name = self._name(shard)
        if self.keeper.held(name) is None:
            return False
        released = self.keeper.release(name, current)
        self.on_held(len(self._held()))
        if released:
            log.info("shard %d released by %s", shard, self.replica)
        return released

    def stop_acquiring(self) -> None:
        """Shutting down: keep renewing what is held until `release_all`, take nothing new."""
        with self._lock:
            self._acquiring = False

    def _acquire(self, acquire: tuple[int, ...], records: dict[str, LeaseRecord]) -> None:
        with self._lock:
            if not self._acquiring:
                return
        for shard in acquire:
            name = self._name(shard)
            current = records.get(name)
            held = self.keeper.acquire(name, current)
            if held is None:
                continue  # another replica was faster, or the call failed: next round
            takeover = current is not None and bool(current.holder)
            if takeover:
                with self._lock:
                    self.takeovers += 1
            self.on_held(len(self._held()))
            if takeover:
                self.on_takeover()
            log.info("shard %d acquired by %s%s", shard, self.replica,
                     f" (taken over from {current.holder}, who stopped renewing)"
                     if takeover and current is not None else "")
            threading.Thread(target=self._started, args=(shard, held.since, takeover),
                             name=f"shard-{shard}", daemon=True).start()

    def _started(self, shard: int, since: float, takeover: bool) -> None:
        try:
            self.on_acquired(shard, since, takeover)
        except Exception:
            log.exception("starting the work of shard %d failed", shard)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info("sharding: %s takes part in %d shard Leases %s-shard-*-of-%d", self.replica,
                 self.count, self.base, self.count)
        self.keeper.start_watchdog(stop)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("shard Leases: round failed")
            stop.wait(self.timings.retry_period * random.uniform(1.0, JITTER))

    def release_all(self) -> list[int]:
        """Graceful stop, after the work stopped: release every held shard and remove this
        replica's membership Lease. Returns the shards released."""
        records = self.keeper.read() or {}
        released = [shard for shard in self.held_locally_all()
                    if self._give_up(shard, records.get(self._name(shard)))]
        self.membership.leave(records)
        log.info("sharding: %s released shards %s", self.replica, released)
        return released

    def held_locally_all(self) -> list[int]:
        return sorted(self._held())
