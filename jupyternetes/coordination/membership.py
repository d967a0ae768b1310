"""Membership Leases: every running replica, in both modes, holds `<base>-member-<hash(id)>`
annotated with its shard count (0: leader election). Its round is the start of both loops.

Why: replicas with different shard counts hash instances into different Leases (or a leader's
single Lease), so a replica of count N and one of count M could each own the same stack. A
replica therefore works only while no *live* member says another count (or says none: an
operator from before the count was recorded), and only on a LIST made after its own membership
Lease was written: of two replicas starting with different counts, the one that lists second
sees the other (the apiserver's LIST is a consistent read), and the first sees the second at its
next round and stops. The membership Lease is held like any other (renew deadline, watchdog):
a replica whose membership lapsed for the others stopped before it did.
"""

from __future__ import annotations

import logging

from jupyternetes.coordination.lease import LeaseKeeper, LeaseRecord, disagreeing
from jupyternetes.coordination.leasestore import member_lease_name, member_prefix

log = logging.getLogger(__name__)

GC_LEASE_DURATIONS = 20  # a membership Lease unchanged this many durations is removed


class Membership:
    def __init__(self, keeper: LeaseKeeper, base: str, shards: int) -> None:
        self.keeper = keeper
        self.base = base
        self.shards = shards
        self.name = member_lease_name(base, keeper.identity)
        self._said: tuple[tuple[str, int | None], ...] = ()

    def round(self) -> tuple[dict[str, LeaseRecord], bool] | None:
        """List, renew everything held (this membership included), write the membership when
        it is not held, and check the deadlines. (records, established): `established` when
        the records come from a LIST made after this replica's membership was written. None
        when the LIST failed."""
        established = self.keeper.fresh(self.name)
        records = self.keeper.read()
        if records is None:
            self.keeper.check_deadlines()
            return None
        self.keeper.renew_all(records)
        if not established:
            held = self.keeper.acquire(self.name, records.get(self.name), shards=self.shards)
            if held is not None:
                # A LIST after the write: whoever started before us is in it.
                again = self.keeper.read()
                if again is not None:
                    records, established = again, True
        self.keeper.check_deadlines()
        return records, established and self.keeper.fresh(self.name)

    def members(self, records: dict[str, LeaseRecord]) -> list[str]:
        prefix = member_prefix(self.base)
        return [name for name in records if name.startswith(prefix) and name != self.name]

    def live_members(self, records: dict[str, LeaseRecord]) -> set[str]:
        return {records[name].holder for name in self.members(records)
                if self.keeper.live(name, records[name])}

    def disagreeing(self, records: dict[str, LeaseRecord]) -> list[tuple[str, int | None]]:
        """Live replicas working with another shard count (see the module docstring); a live
        leader Lease counts as a replica of count 0 (an operator that keeps no membership)."""
        found = disagreeing(records, self.members(records), self.shards, self.keeper.live)
        leader = records.get(self.base)
        if (self.shards != 0 and leader is not None and leader.holder
                and self.keeper.live(self.base, leader)):
            found.append((leader.holder, 0))
        said = tuple(found)
        if said and said != self._said:
            log.error(
                "replica %s (--shards %d) does no work while live replicas use another shard "
                "count: %s. Every replica must run with the same --shards; a change of the "
                "count takes effect once the replicas of the old count are gone (the deploy "
                "stack rolls them; see the README, \"Changing the shard count\")",
                self.keeper.identity, self.shards,
                ", ".join(f"{holder} (--shards {'unknown' if n is None else n})"
                          for holder, n in found))
        elif not said and self._said:
            log.info("replica %s: no live replica disagrees on the shard count any more",
                     self.keeper.identity)
        self._said = said
        return found

    def collect(self, records: dict[str, LeaseRecord]) -> None:
        """Remove membership Leases nobody renewed for GC_LEASE_DURATIONS lease durations."""
        gc_after = GC_LEASE_DURATIONS * self.keeper.timings.lease_duration
        for name in self.members(records):
            unchanged = self.keeper.unchanged_for(name)
            if unchanged >= gc_after:
                record = records[name]
                self.keeper.delete(name, record)
                log.info("removed the membership Lease %s of %s (not renewed for %.0fs)",
                         name, record.holder or "nobody", unchanged)

    def leave(self, records: dict[str, LeaseRecord] | None = None) -> None:
        """Graceful stop: remove this replica's membership Lease."""
        held = self.keeper.held(self.name)
        record = (records or {}).get(self.name) or (held.record if held else None)
        self.keeper.delete(self.name, record)
