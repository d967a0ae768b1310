"""Sharding decisions (coordination/shards.py): stable hashing, fair quotas, and plans that never
take
a live Lease and converge to one holder per shard. The Lease I/O is tests/unit/test_shardleases.py
and, against a real apiserver, tests/e2e/test_shards.py."""

from __future__ import annotations

import collections
import math
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyternetes.coordination import shards
from jupyternetes.coordination.shards import Plan, ShardView, plan, quotas


def test_shard_of_is_the_shard_of_the_stack_name_and_stable():
    assert shards.shard_of("default", "a", 12) == shards.shard_of_stack("default.a", 12)
    assert shards.shard_of_key("default/a", 12) == shards.shard_of_stack("default.a", 12)
    # Pinned values: a change of the hash would move every instance to another replica.
    assert [shards.shard_of_stack(f"ns.i{i}", 12) for i in range(6)] == [
        shards.shard_of_stack(f"ns.i{i}", 12) for i in range(6)]
    pinned = {s: shards.shard_of_stack(s, 12) for s in ("default.a", "ns.i0", "kadense.x")}
    code = ("from jupyternetes.coordination import shards; "
            "print([shards.shard_of_stack(s, 12) for s in ('default.a', 'ns.i0', 'kadense.x')])")
    # Another interpreter (another PYTHONHASHSEED) agrees: not Python's salted hash().
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345",
                                          "PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == str(list(pinned.values()))


def test_shortened_stack_names_shard_like_their_instance():
    name = "x" * 120
    stack = shards.stack_name("ns", name)
    assert ".." in stack
    assert shards.shard_of("ns", name, 7) == shards.shard_of_stack(stack, 7)


def test_a_shard_count_below_one_is_an_error_naming_it():
    try:
        shards.shard_of_stack("a.b", 0)
    except ValueError as exc:
        assert "shard count" in str(exc)
    else:
        raise AssertionError("0 shards must be refused")


def test_hash_spreads_sixty_instances_over_twelve_shards():
    counts = collections.Counter(shards.shard_of("ns", f"inst-{i:02d}", 12) for i in range(60))
    assert len(counts) == 12 and max(counts.values()) <= 12


@given(st.integers(1, 64), st.sets(st.text("abcdef", min_size=1, max_size=4), min_size=1,
                                    max_size=9))
def test_quotas_sum_to_the_shards_and_differ_by_at_most_one(n, replicas):
    q = quotas(n, replicas)
    assert set(q) == replicas
    assert sum(q.values()) == n
    assert max(q.values()) - min(q.values()) <= 1
    assert max(q.values()) == math.ceil(n / len(replicas))


# ---- plans --------------------------------------------------------------------------------------

REPLICAS = st.lists(st.sampled_from(["r-a", "r-b", "r-c", "r-d", "r-e"]), min_size=1,
                    max_size=5, unique=True)


@st.composite
def situations(draw):
    """An arbitrary observed state: shard holders (live replicas, dead ones, nobody), each
    Lease live or lapsed, and which of them the planning replica holds itself."""
    live = draw(REPLICAS)
    n = draw(st.integers(1, 16))
    holders = st.sampled_from([*live, "dead-1", "dead-2", ""])
    views = []
    for i in range(n):
        holder = draw(holders)
        views.append(ShardView(i, holder, bool(holder) and draw(st.booleans())))
    me = draw(st.sampled_from(live))
    held = {v.index for v in views if v.holder == me and v.live and draw(st.booleans())}
    return me, views, held, live


@given(situations())
def test_a_plan_never_takes_a_live_lease_of_another_and_stays_within_the_quota(situation):
    me, views, held, live = situation
    result = plan(me, views, held, live)
    by_index = {v.index: v for v in views}
    for index in result.acquire:
        view = by_index[index]
        assert not (view.live and view.holder), f"took live shard {view} for {me}"
        assert index not in held
    assert set(result.release) <= held
    assert not (result.acquire and result.release)
    assert len(set(result.acquire)) == len(result.acquire)
    if result.release:
        assert len(held) - len(result.release) == result.quota
    else:
        assert len(held) + len(result.acquire) <= max(result.quota, len(held))
    if len(held) > result.quota:
        assert result.release
    assert result.quota == quotas(len(views), {me, *live})[me]


def simulate(views: list[ShardView], live: list[str], order: list[int], rounds: int,
             ) -> tuple[dict[int, str], int]:
    """Every live replica plans from the same snapshot each round; the writes are then applied
    one by one as the apiserver would (a shard taken by an earlier write in the round is a 409
    for the later one). Dead replicas' Leases lapse (they never renew). Returns the final
    holders and the round in which nothing changed any more."""
    holder = {v.index: v.holder for v in views}
    alive = {v.index: v.live for v in views}
    held = {r: {i for i, h in holder.items() if h == r and alive[i]} for r in live}
    for rnd in range(rounds):
        snapshot = [ShardView(i, holder[i], alive[i]) for i in sorted(holder)]
        plans = {r: plan(r, snapshot, held[r], shards.live_replicas(r, live, snapshot))
                 for r in live}
        changed = False
        for k in order:
            r = live[k % len(live)]
            p = plans[r]
            for i in p.release:
                holder[i], alive[i] = "", False
                held[r].discard(i)
                changed = True
            for i in p.acquire:
                if holder[i] and alive[i]:
                    continue  # 409: someone else wrote it first this round
                holder[i], alive[i] = r, True
                held[r].add(i)
                changed = True
        # Leases of replicas that are not live lapse.
        for i in holder:
            if holder[i] not in live:
                alive[i] = False
        if not changed and rnd > 0:
            return holder, rnd
    return holder, rounds


@settings(max_examples=300, deadline=None)
@given(situations(), st.permutations(range(5)))
def test_agreeing_replicas_end_with_one_holder_per_shard_and_fair_shares(situation, order):
    _, views, _, live = situation
    # Live Leases of dead replicas lapse in the simulation after the first round.
    holders, rounds = simulate(views, live, list(order), rounds=4 * len(views) + 4)
    assert rounds < 4 * len(views) + 4, "no convergence"
    assert all(h in live for h in holders.values()), holders
    counts = collections.Counter(holders.values())
    assert sum(counts.values()) == len(views)
    want = quotas(len(views), live)
    assert {r: counts.get(r, 0) for r in live} == want


def test_three_replicas_twelve_shards_four_each_from_scratch():
    live = ["r-a", "r-b", "r-c"]
    views = [ShardView(i, "", False) for i in range(12)]
    holders, _ = simulate(views, live, [0, 1, 2], rounds=20)
    assert collections.Counter(holders.values()) == {"r-a": 4, "r-b": 4, "r-c": 4}


def test_the_shards_of_a_dead_replica_are_taken_once_lapsed_not_before():
    views = [ShardView(i, ["r-a", "r-b", "r-c"][i % 3], True) for i in range(12)]
    held_a = {i for i in range(12) if i % 3 == 0}
    # r-c still looks live: nothing to take, quota 4 each.
    assert plan("r-a", views, held_a, {"r-a", "r-b", "r-c"}) == Plan(quota=4)
    lapsed = [ShardView(v.index, v.holder, v.holder != "r-c") for v in views]
    members = shards.live_replicas("r-a", ["r-a", "r-b"], lapsed)
    assert members == {"r-a", "r-b"}
    p = plan("r-a", lapsed, held_a, members)
    assert p.quota == 6 and len(p.acquire) == 2
    assert all(i % 3 == 2 for i in p.acquire)


def test_a_new_replica_makes_the_others_release_down_to_their_quota():
    views = [ShardView(i, ["r-a", "r-b"][i % 2], True) for i in range(12)]
    held_a = {i for i in range(12) if i % 2 == 0}
    p = plan("r-a", views, held_a, {"r-a", "r-b", "r-c"})
    assert p.quota == 4 and len(p.release) == 2 and set(p.release) <= held_a
    # The newcomer waits: every Lease is live and held.
    assert plan("r-c", views, set(), {"r-a", "r-b", "r-c"}).acquire == ()


def test_a_record_naming_this_replica_that_it_does_not_hold_must_lapse_first():
    views = [ShardView(0, "r-a", True), ShardView(1, "", False)]
    assert plan("r-a", views, set(), {"r-a"}).acquire == (1,)
    views = [ShardView(0, "r-a", False), ShardView(1, "", False)]
    assert set(plan("r-a", views, set(), {"r-a"}).acquire) == {0, 1}
