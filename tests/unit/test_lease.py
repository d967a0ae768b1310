"""The one Lease algorithm (coordination/lease.py) and what both modes build on it: the renew time
stamped before the request, every call bounded, the watchdog that stops the work at the renew
deadline before anyone may take over, the shard count in the Lease names and the membership,
and the fence every write passes. Fake clock and in-memory store (tests/unit/leasefakes.py);
the real Lease API is tests/e2e/test_ha.py and test_shards.py."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from jupyternetes.coordination import lease
from jupyternetes.coordination.fence import Fence, Fenced
from jupyternetes.coordination.leader import LeaderElector
from jupyternetes.coordination.lease import LeaseKeeper, LeaseRecord, Timings
from jupyternetes.coordination.leasestore import (
    KubeLeaseStore,
    member_lease_name,
    shard_lease_name,
)
from jupyternetes.coordination.shardleases import ShardManager
from tests.unit.leasefakes import Clock, MemoryStore

BASE = "jo"
TIMINGS = Timings(lease_duration=15, renew_deadline=10, retry_period=2)


def keeper(store: MemoryStore, clock: Clock, identity: str = "a", **kw) -> LeaseKeeper:
    return LeaseKeeper(store, identity, TIMINGS, clock=clock,
                       wall=lambda: 1_800_000_000.0 + clock.now, **kw)


def slow(store: MemoryStore, clock: Clock, verb: str, seconds: float) -> None:
    """Calls of `verb` take `seconds` of the fake clock before they answer."""
    def during(called: str) -> None:
        if called == verb:
            clock.now += seconds
    store.during = during


# ---- the renew time -------------------------------------------------------------------------


def test_the_renew_time_is_stamped_before_the_request_not_when_the_answer_arrives():
    store, clock = MemoryStore(), Clock()
    k = keeper(store, clock)
    assert k.acquire("x", None) is not None
    slow(store, clock, "replace", 7.0)  # the renew takes 7 s to answer
    sent = clock.now
    assert k.renew("x", store.records["x"])
    assert clock.now == sent + 7
    # The deadline counts from when the renew was sent: 3 s after its answer it has passed.
    clock.now = sent + TIMINGS.renew_deadline - 0.1
    assert k.fresh("x")
    clock.now = sent + TIMINGS.renew_deadline
    assert not k.fresh("x")


def test_a_leader_whose_renew_answers_late_stops_at_the_deadline_counted_from_the_send():
    """The old leader stamped its renew when the answer arrived: a renew that took 7 s moved
    its deadline 7 s past the moment the others could start counting."""
    store, clock = MemoryStore(), Clock()
    a = LeaderElector(store, "a", BASE, lease_duration=15, renew_deadline=10, retry_period=2,
                      clock=clock, wall=lambda: 1e9 + clock.now)
    assert a.try_acquire_or_renew()
    clock.now += 2
    calls: list[str] = []

    def first_renew_slow(verb: str) -> None:  # the leader's Lease is renewed first
        calls.append(verb)
        if calls.count("replace") == 1 and verb == "replace":
            clock.now += 7.0
    store.during = first_renew_slow
    sent = clock.now
    assert a.try_acquire_or_renew()
    assert clock.now == sent + 7
    clock.now = sent + 10
    assert not a.is_leader()


def test_an_observer_counts_the_lapse_from_when_its_read_returned():
    """A slow LIST must not make a record look older than it is: the observer's count starts
    after the answer (client-go's observedTime), never before its request."""
    store, clock = MemoryStore(), Clock()
    holder, observer = keeper(store, clock, "a"), keeper(store, clock, "b")
    assert holder.acquire("x", None) is not None
    slow(store, clock, "list", 5.0)
    records = observer.read()
    assert records is not None
    returned = clock.now
    clock.now = returned + TIMINGS.lease_duration - 0.1
    assert observer.live("x", records["x"])
    clock.now = returned + TIMINGS.lease_duration
    assert not observer.live("x", records["x"])


# ---- bounded calls ----------------------------------------------------------------------------


def test_every_lease_call_is_bounded_by_the_time_left_before_the_renew_deadline():
    store, clock = MemoryStore(), Clock()
    k = keeper(store, clock)
    assert k.read() is not None
    assert k.acquire("x", None) is not None
    clock.now += 8  # 2 s left before the deadline
    k.renew("x", store.records["x"])
    verbs = dict(store.timeouts)
    assert store.timeouts[0] == ("list", TIMINGS.renew_deadline)  # nothing held yet
    assert verbs["replace"] == pytest.approx(2.0)
    assert all(t is not None and t <= TIMINGS.renew_deadline for _, t in store.timeouts)
    clock.now += TIMINGS.renew_deadline - 0.05  # renewed just now: 0.05 s left
    assert k.call_timeout() == lease.MIN_CALL_TIMEOUT  # never 0 or negative


def test_the_kube_lease_store_makes_one_attempt_per_call_within_its_timeout():
    """The kubernetes client retries a failed request 3 times by default (20-40 s against a
    black-holed apiserver with a 5 s timeout): a Lease call must not."""
    from kubernetes import client

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)  # never answered: a black hole

    done = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        cfg = client.Configuration()
        cfg.host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        store = KubeLeaseStore(client.ApiClient(cfg), "ns", BASE)
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 (urllib3's timeout error, whichever)
            store.list(timeout=1.0)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        assert elapsed < 3.0, elapsed
        assert len(accepted) == 1, f"{len(accepted)} connections: the call was retried"
    finally:
        done.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


# ---- the watchdog -----------------------------------------------------------------------------


def test_the_watchdog_stops_the_work_at_the_renew_deadline_while_the_loop_is_stuck():
    """The loop is blocked in a renew that never answers; the watchdog alone sees the deadline
    pass and stops the work, before the lease duration (when others may take over)."""
    store, clock = MemoryStore(), Clock()
    lost: list[tuple[str, float]] = []
    k = keeper(store, clock, on_lost=lambda name, reason: lost.append((name, clock.now)))
    assert k.acquire("x", None) is not None
    acquired = clock.now
    blocked, release = threading.Event(), threading.Event()

    def hang(verb: str) -> None:
        if verb == "replace":
            blocked.set()
            release.wait(30)
    store.during = hang
    stop = threading.Event()
    k.start_watchdog(stop)
    loop = threading.Thread(target=k.renew, args=("x", store.records["x"]), daemon=True)
    loop.start()
    try:
        assert blocked.wait(5)
        clock.now = acquired + TIMINGS.renew_deadline - 0.5
        time.sleep(0.6)  # a few watchdog rounds
        assert lost == [] and k.fresh("x")
        clock.now = acquired + TIMINGS.renew_deadline
        assert not k.fresh("x")  # the gate is closed at the deadline, watchdog or not
        for _ in range(100):
            if lost:
                break
            time.sleep(0.05)
        assert [name for name, _ in lost] == ["x"]
        assert lost[0][1] < acquired + TIMINGS.lease_duration
        assert loop.is_alive()  # the renew is still stuck: the watchdog did it
    finally:
        release.set()
        stop.set()
        loop.join(5)
    # The late answer of the stuck renew does not bring the Lease back.
    assert not k.fresh("x") and k.held("x") is None


def test_the_margins_are_checked_renew_deadline_below_lease_duration():
    with pytest.raises(ValueError, match="--leader-election-renew-deadline"):
        Timings(lease_duration=20, renew_deadline=20, retry_period=4)
    t = Timings()
    assert t.renew_deadline < t.lease_duration and t.retry_period * lease.JITTER < \
        t.renew_deadline
    # At least 4 renew attempts before the deadline, and room to stop before a takeover.
    assert t.renew_deadline / t.retry_period >= 4
    assert t.lease_duration - t.renew_deadline >= 2 * lease.MIN_CALL_TIMEOUT + 5


# ---- the shard count ------------------------------------------------------------------------


def shard_manager(store: MemoryStore, replica: str, clock: Clock, count: int) -> ShardManager:
    m = ShardManager(store, replica, count, BASE, lease_duration=6, renew_deadline=4,
                     retry_period=1, clock=clock, wall=lambda: 1e9 + clock.now)
    m.on_acquired = lambda shard, since, takeover: m.serve(shard)
    return m


def test_the_shard_count_is_in_the_lease_names_and_the_membership():
    assert shard_lease_name(BASE, 2, 4) != shard_lease_name(BASE, 2, 6)
    store, clock = MemoryStore(), Clock()
    m = shard_manager(store, "a", clock, 4)
    m.tick()
    assert sorted(n for n in store.records if "-shard-" in n) == [
        shard_lease_name(BASE, i, 4) for i in range(4)]
    assert store.records[member_lease_name(BASE, "a")].shards == 4


@pytest.mark.parametrize("order", ["old-first", "new-first", "together"])
def test_replicas_with_different_shard_counts_never_both_work(order):
    """N -> M: while a live replica says another count, nobody works twice: a stack is hashed
    into different Leases by N and by M, so each could think it owns the stack."""
    store, clock = MemoryStore(), Clock()
    old = shard_manager(store, "old", clock, 4)
    new = shard_manager(store, "new", clock, 6)
    if order == "old-first":
        for _ in range(3):
            old.tick()
            clock.now += 1
        assert old.held_shards() == [0, 1, 2, 3]
    stacks = [f"ns.i{i}" for i in range(40)]

    def check() -> None:
        for stack in stacks:
            assert not (old.writes_stack(stack) and new.writes_stack(stack)), stack

    for _ in range(8):
        if order == "together":
            old.tick()
            new.tick()
        else:
            new.tick()
            old.tick()
        check()
        clock.now += 1
    assert new.held_shards() == []
    assert old.held_shards() == []  # it saw the other count: it released everything
    # The old replica goes (its pod is replaced): the new count takes over at once.
    old.release_all()
    for _ in range(3):
        new.tick()
        check()
        clock.now += 1
    assert new.held_shards() == list(range(6))


def test_a_killed_replica_of_the_old_count_holds_the_new_one_back_until_its_membership_lapses():
    store, clock = MemoryStore(), Clock()
    old = shard_manager(store, "old", clock, 4)
    for _ in range(2):
        old.tick()
        clock.now += 1
    new = shard_manager(store, "new", clock, 6)
    killed_at = clock.now  # old stops renewing (SIGKILL)
    for _ in range(12):
        new.tick()
        if new.held_shards():
            break
        clock.now += 1
    assert clock.now - killed_at >= 6  # not before old's membership lapsed


def test_a_leader_and_a_sharded_replica_never_both_work():
    """0 <-> N: the leader's replica keeps a membership of count 0."""
    store, clock = MemoryStore(), Clock()
    leader = LeaderElector(store, "l", BASE, lease_duration=6, renew_deadline=4,
                           retry_period=1, clock=clock, wall=lambda: 1e9 + clock.now)
    assert leader.try_acquire_or_renew() and leader.is_leader()
    sharded = shard_manager(store, "s", clock, 4)
    for _ in range(6):
        sharded.tick()
        leader.try_acquire_or_renew()
        assert not (leader.is_leader() and sharded.held_shards())
        clock.now += 1
    assert sharded.held_shards() == [] and not leader.is_leader()
    # A new leader candidate stays out while the sharded replica lives.
    other = LeaderElector(store, "l2", BASE, lease_duration=6, renew_deadline=4,
                          retry_period=1, clock=clock, wall=lambda: 1e9 + clock.now)
    for _ in range(10):
        other.try_acquire_or_renew()
        sharded.tick()
        assert not other.is_leader()
        clock.now += 1


def test_a_membership_that_cannot_be_renewed_loses_every_shard():
    store, clock = MemoryStore(), Clock()
    m = shard_manager(store, "a", clock, 3)
    lost: list[int] = []
    m.on_lost = lost.append
    m.tick()
    assert m.held_shards() == [0, 1, 2]
    m.keeper.lose(m.member_name, "test")
    assert sorted(lost) == [0, 1, 2] and m.held_shards() == []


def test_an_unannotated_live_member_counts_as_another_shard_count():
    """An operator from before the count was recorded names its shard Leases differently."""
    store, clock = MemoryStore(), Clock()
    store.create(member_lease_name(BASE, "older"), LeaseRecord("older", 6, "t", "t"))
    m = shard_manager(store, "a", clock, 2)
    for _ in range(3):
        m.tick()
        clock.now += 1
    assert m.held_shards() == []
    clock.now += 6  # it stopped renewing
    m.tick()
    assert m.held_shards() == [0, 1]


# ---- the fence --------------------------------------------------------------------------------


def test_the_fence_closes_for_every_write_at_the_renew_deadline():
    from jupyternetes.controller.edges import FencedKube
    from jupyternetes.crd.naming import stack_name

    store, clock = MemoryStore(), Clock()
    m = shard_manager(store, "a", clock, 1)
    m.tick()
    fence = Fence()
    fence.guard(m.writes_stack)

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def patch_instance_status(self, *a):
            self.calls.append("status")

        def emit_event(self, *a):
            self.calls.append("event")

        def add_finalizer(self, *a):
            self.calls.append("finalizer")

        def delete_pods(self, *a):
            self.calls.append("pods")
            return []

    kube = Recorder()
    fenced = FencedKube(kube, fence)
    inst = {"metadata": {"namespace": "ns", "name": "x"}}
    with fenced.serving("ns/x"):
        fenced.patch_instance_status("ns", "x", {})
        fenced.emit_event(inst, "Normal", "Provisioned", "ok")
        fenced.delete_pods("ns", "sel")
    assert kube.calls == ["status", "event", "pods"]
    assert fence.allows(stack_name("ns", "x"))
    clock.now += 4  # the renew deadline passed; no round, no watchdog has run
    for write in (lambda: fenced.patch_instance_status("ns", "x", {}),
                  lambda: fenced.emit_event(inst, "Warning", "ProvisionFailed", "x"),
                  lambda: fenced.add_finalizer("ns", "x")):
        with pytest.raises(Fenced):
            write()
    with fenced.serving("ns/x"), pytest.raises(Fenced):
        fenced.delete_pods("ns", "sel")
    assert kube.calls == ["status", "event", "pods"]


def test_an_engine_call_refused_by_the_gate_drops_the_key_without_a_failure_or_event():
    from jupyternetes.controller.controller import Operator
    from jupyternetes.controller.edges import run
    from jupyternetes.engine.runtime import engineprocs

    def refused() -> None:
        with engineprocs.running("ns.x", 1):
            pass

    engineprocs.set_gate(lambda stack: False)
    try:
        with pytest.raises(Fenced):  # not turned into a failed result (ProvisionFailed)
            run("up", refused, "ns/x", None)
    finally:
        engineprocs.set_gate(None)

    events: list[str] = []

    class Kube:
        def emit_event(self, obj, kind, reason, message):
            events.append(reason)

    op = Operator(kube=Kube(), engine=None, workers=1)  # type: ignore[arg-type]

    def reconcile(key: str, failures: int = 0):
        raise engineprocs.Refused("stack ns.x: not held")

    op.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    op.process("ns/x")
    assert len(op.queue) == 0 and op.queue.waiting() == 0  # dropped, not retried
    assert op.queue.num_requeues("ns/x") == 0
    assert events == []
    exposition = op.metrics.exposition()[0].decode()
    assert 'reason="exception"' not in exposition  # not counted as a failure
    assert 'result="fenced"' in exposition
