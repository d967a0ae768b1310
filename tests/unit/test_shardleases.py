"""The shard Lease manager (coordination/shardleases.py) against an in-memory Lease store with the
apiserver's resourceVersion semantics and an injected clock; the real Lease API is exercised by
tests/e2e/test_shards.py."""

from __future__ import annotations

import collections
import threading
from dataclasses import replace

from jupyternetes.coordination.leader import LeaseConflict, LeaseRecord
from jupyternetes.coordination.shardleases import ShardManager, member_lease_name, shard_lease_name

BASE = "jo"


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[str, LeaseRecord] = {}
        self.version = 0
        self.fail = False
        self.lock = threading.Lock()

    def list(self) -> dict[str, LeaseRecord]:
        if self.fail:
            raise RuntimeError("apiserver unreachable")
        return dict(self.records)

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        if self.fail:
            raise RuntimeError("apiserver unreachable")
        if name in self.records:
            raise LeaseConflict("exists")
        return self._store(name, record)

    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord:
        if self.fail:
            raise RuntimeError("apiserver unreachable")
        current = self.records.get(name)
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("the object has been modified")
        return self._store(name, record)

    def delete(self, name: str, resource_version: str | None) -> None:
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


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.acquired: list[tuple[int, bool]] = []
        self.lost: list[int] = []
        self.busy: set[int] = set()
        self.done = threading.Event()


def manager(store: MemoryStore, replica: str, clock: Clock, count: int = 12,
            rec: Recorder | None = None) -> ShardManager:
    rec = rec or Recorder()

    def acquired(shard: int, since: float, takeover: bool) -> None:
        rec.acquired.append((shard, takeover))
        m.serve(shard)

    m = ShardManager(store, replica, count, BASE, lease_duration=6, renew_deadline=4,
                     retry_period=1, on_acquired=acquired, on_lost=rec.lost.append,
                     busy=lambda shard: shard in rec.busy, clock=clock,
                     wall=lambda: 1_800_000_000.0 + clock.now)
    return m


def rounds(managers: list[ShardManager], clock: Clock, n: int = 3, step: float = 1.0) -> None:
    for _ in range(n):
        for m in managers:
            m.tick()
        clock.now += step


def test_three_replicas_share_twelve_shards_four_each():
    store, clock = MemoryStore(), Clock()
    ms = [manager(store, r, clock) for r in ("a", "b", "c")]
    rounds(ms, clock, 6)
    assert store.holders() == {"a": 4, "b": 4, "c": 4}
    for m in ms:
        assert len(m.held_shards()) == 4
        assert all(m.holds(i) for i in m.held_shards())
        assert m.status()["replicas"] == ["a", "b", "c"]
    # Every shard is held by exactly one replica, as each replica sees it.
    held = [i for m in ms for i in m.held_shards()]
    assert sorted(held) == list(range(12))
    assert set(store.records) >= {member_lease_name(BASE, r) for r in "abc"}


def test_a_replica_that_stops_renewing_loses_its_shards_at_the_deadline_then_others_take_them():
    store, clock = MemoryStore(), Clock()
    recs = {r: Recorder() for r in "abc"}
    ms = {r: manager(store, r, clock, rec=recs[r]) for r in "abc"}
    rounds(list(ms.values()), clock, 6)
    c_shards = ms["c"].held_shards()
    # c is cut off from the apiserver: its renews fail. The others keep going.
    store_c = ms["c"].store
    failing = MemoryStore()
    failing.fail = True
    ms["c"].store = failing
    clock_at_cut = clock.now
    taken_at = lost_at = None
    for _ in range(12):
        ms["a"].tick()
        ms["b"].tick()
        ms["c"].tick()
        if recs["c"].lost and lost_at is None:
            lost_at = clock.now
        if store.holders().get("c", 0) == 0 and taken_at is None:
            taken_at = clock.now
        # Never two holders at once: c stops before anyone else may take its shards.
        for shard in c_shards:
            holders = [r for r, m in ms.items() if m.holds(shard)]
            assert len(holders) <= 1, (shard, holders)
        clock.now += 1
    assert sorted(recs["c"].lost) == c_shards
    # Lost at the renew deadline (+ one round), before the lease could lapse for the others.
    assert lost_at is not None and lost_at - clock_at_cut <= 4 + 1
    assert taken_at is not None and taken_at - clock_at_cut >= 6  # not before the lease lapsed
    assert store.holders() == {"a": 6, "b": 6}
    assert sorted(s for s, takeover in recs["a"].acquired + recs["b"].acquired
                  if takeover) == c_shards
    assert ms["a"].takeovers + ms["b"].takeovers == 4
    ms["c"].store = store_c


def test_holds_is_false_as_soon_as_the_renew_deadline_passes_even_before_the_loop_notices():
    store, clock = MemoryStore(), Clock()
    m = manager(store, "a", clock)
    m.tick()
    assert m.holds(0)
    clock.now += 4
    assert not m.holds(0)
    assert m.since_for_stack("ns.x") is None


def test_a_new_replica_gets_shards_released_gracefully_after_in_flight_work():
    store, clock = MemoryStore(), Clock()
    rec_a = Recorder()
    a = manager(store, "a", clock, rec=rec_a)
    rounds([a], clock, 2)
    assert store.holders() == {"a": 12}
    rec_a.busy = set(range(12))  # everything busy: nothing is released yet
    b = manager(store, "b", clock)
    rounds([b, a], clock, 3)
    assert store.holders() == {"a": 12}
    assert len(a.status()["releasing"]) == 6
    # Releasing shards take no new work, the others do.
    assert sum(1 for i in range(12) if a.holds(i)) == 6
    rec_a.busy = set()
    rounds([a, b], clock, 3)
    assert store.holders() == {"a": 6, "b": 6}
    assert not rec_a.lost  # released, not lost


def test_release_all_frees_the_shards_and_removes_the_membership():
    store, clock = MemoryStore(), Clock()
    a, b = manager(store, "a", clock), manager(store, "b", clock)
    rounds([a, b], clock, 4)
    released = a.release_all()
    assert len(released) == 6
    assert member_lease_name(BASE, "a") not in store.records
    assert store.holders()[""] == 6
    rounds([b], clock, 2)  # taken at once: a released them, no lease duration to wait
    assert store.holders() == {"b": 12}


def test_a_lease_held_live_by_a_stranger_is_not_taken_and_counts_as_a_replica():
    store, clock = MemoryStore(), Clock()
    store.create(shard_lease_name(BASE, 0), LeaseRecord("stranger", 6, "t", "t"))
    a = manager(store, "a", clock, count=2)
    a.tick()
    assert a.held_shards() == [1]
    assert a.status()["replicas"] == ["a", "stranger"]
    for _ in range(5):  # the stranger renews
        current = store.records[shard_lease_name(BASE, 0)]
        store.replace(shard_lease_name(BASE, 0), replace(current, renew_time=str(clock.now)))
        clock.now += 1
        a.tick()
    assert a.held_shards() == [1]
    clock.now += 7  # it stopped renewing
    a.tick()
    a.tick()
    assert a.held_shards() == [0, 1]


def test_a_lease_taken_by_someone_else_is_lost_at_once():
    store, clock = MemoryStore(), Clock()
    rec = Recorder()
    a = manager(store, "a", clock, count=1, rec=rec)
    a.tick()
    current = store.records[shard_lease_name(BASE, 0)]
    store.replace(shard_lease_name(BASE, 0), replace(current, holder="intruder"))
    clock.now += 1
    a.tick()
    assert rec.lost == [0] and not a.holds(0)


def test_membership_leases_of_long_dead_replicas_are_removed():
    store, clock = MemoryStore(), Clock()
    store.create(member_lease_name(BASE, "ghost"), LeaseRecord("ghost", 6, "t", "t"))
    a = manager(store, "a", clock, count=2)
    a.tick()
    assert a.status()["replicas"] == ["a", "ghost"]
    clock.now += 7
    a.tick()
    assert a.status()["replicas"] == ["a"]
    assert member_lease_name(BASE, "ghost") in store.records
    clock.now += 20 * 6
    a.tick()
    assert member_lease_name(BASE, "ghost") not in store.records


def test_instances_are_served_only_after_the_acquisition_clean_up():
    store, clock = MemoryStore(), Clock()
    gate = threading.Event()
    seen: list[tuple[bool, bool]] = []
    m: ShardManager

    def acquired(shard: int, since: float, takeover: bool) -> None:
        seen.append((m.holds(0), m.serves(0)))  # held (the clean-up may run), not served yet
        gate.wait(5)
        m.serve(shard)

    m = ShardManager(store, "a", 1, BASE, lease_duration=6, renew_deadline=4, retry_period=1,
                     on_acquired=acquired, clock=clock, wall=lambda: 1e9 + clock.now)
    m.tick()
    assert m.holds(0) and not m.serves(0) and not m.serves_key("ns/x")
    gate.set()
    for _ in range(100):
        if m.serves(0):
            break
        threading.Event().wait(0.05)
    assert m.serves(0) and m.serves_key("ns/x")
    assert seen == [(True, False)]
