"""Work queue semantics (client-go's): dedup, one worker per key, dirty re-queue, backoff."""

from __future__ import annotations

import threading
import time

import pytest

from jupyternetes.controller.queue import Backoff, ShutDown, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_queued_at_most_once():
    q = WorkQueue()
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert len(q) == 2
    assert q.get(timeout=0) == "ns/a"
    assert q.get(timeout=0) == "ns/b"
    assert q.get(timeout=0) is None


def test_key_added_while_processing_is_requeued_after_done_not_before():
    q = WorkQueue()
    q.add("ns/a")
    key = q.get(timeout=0)
    q.add("ns/a")
    q.add("ns/a")
    # Not handed to a second worker while the first still holds it.
    assert q.get(timeout=0) is None
    q.done(key)
    assert q.get(timeout=0) == "ns/a"
    q.done("ns/a")
    assert q.get(timeout=0) is None


def test_done_without_new_add_does_not_requeue():
    q = WorkQueue()
    q.add("k")
    q.done(q.get(timeout=0))
    assert len(q) == 0


def test_backoff_grows_exponentially_and_is_capped():
    b = Backoff(base=1.0, cap=30.0, jitter=0.0)
    assert [b.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.delay(10_000) == 30


def test_backoff_jitter_stays_within_bounds():
    b = Backoff(base=10.0, cap=1000.0, jitter=0.2)
    assert b.delay(0, rand=lambda: 0.0) == pytest.approx(8.0)
    assert b.delay(0, rand=lambda: 1.0) == pytest.approx(12.0)
    assert b.delay(0, rand=lambda: 0.5) == pytest.approx(10.0)


def test_rate_limited_requeue_uses_per_key_failures_and_forget_resets():
    clock = FakeClock()
    q = WorkQueue(Backoff(base=1.0, cap=100.0, jitter=0.0), clock=clock)
    assert q.add_rate_limited("a") == 1
    assert q.add_rate_limited("a") == 2
    assert q.add_rate_limited("a") == 4
    assert q.add_rate_limited("b") == 1  # other keys have their own count
    assert q.num_requeues("a") == 3
    q.forget("a")
    assert q.num_requeues("a") == 0
    assert q.add_rate_limited("a") == 1


def test_rate_limited_floor_jumps_to_cap():
    q = WorkQueue(Backoff(base=1.0, cap=60.0, jitter=0.0))
    assert q.add_rate_limited("a", floor=60.0) == 60.0
    assert q.add_rate_limited("a", floor=1e9) == 60.0  # never above the cap


def test_delayed_key_becomes_available_only_when_due():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 5.0)
    assert q.get(timeout=0) is None
    clock.now += 4.9
    assert q.get(timeout=0) is None
    clock.now += 0.2
    assert q.get(timeout=0) == "a"


def test_delayed_add_coalesces_with_an_immediate_add():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add("a")
    q.add_after("a", 1.0)
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now += 2
    assert q.get(timeout=0) == "a"  # the delayed add still fires later
    q.done("a")
    assert q.get(timeout=0) is None


def test_get_blocks_until_a_delayed_key_is_due_in_real_time():
    q = WorkQueue()
    q.add_after("a", 0.2)
    started = time.monotonic()
    assert q.get(timeout=5) == "a"
    assert time.monotonic() - started >= 0.15


def test_shutdown_wakes_blocked_workers():
    q = WorkQueue()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            q.get()
        except ShutDown as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    q.shutdown()
    for t in threads:
        t.join(2)
    assert len(errors) == 3
    q.add("x")  # ignored after shutdown
    with pytest.raises(ShutDown):
        q.get(timeout=0)


def test_many_workers_never_process_one_key_concurrently():
    q = WorkQueue()
    active: dict[str, int] = {}
    max_seen: dict[str, int] = {}
    processed: list[str] = []
    lock = threading.Lock()
    keys = [f"ns/k{i}" for i in range(5)]

    def worker() -> None:
        while True:
            try:
                key = q.get(timeout=0.5)
            except ShutDown:
                return
            if key is None:
                return
            with lock:
                active[key] = active.get(key, 0) + 1
                max_seen[key] = max(max_seen.get(key, 0), active[key])
                processed.append(key)
            time.sleep(0.002)
            with lock:
                active[key] -= 1
            q.done(key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(40):
        for key in keys:
            q.add(key)
        time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert set(max_seen) == set(keys)
    assert max(max_seen.values()) == 1
    # Coalescing: far fewer runs than the 200 adds, but every key ran at least once.
    assert len(processed) < 200


def test_depth_callback_reports_queue_length():
    depths: list[int] = []
    q = WorkQueue(on_depth=depths.append)
    q.add("a")
    q.add("b")
    q.get(timeout=0)
    assert depths == [1, 2, 1]


def test_delayed_adds_of_one_key_keep_only_the_earliest():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10.0)
    q.add_after("a", 20.0)  # later: ignored
    q.add_after("a", 5.0)  # earlier: wins
    assert q.waiting() == 1 and q.is_waiting("a")
    clock.now += 5
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now += 100
    # The superseded entries (10 s, 20 s) must not fire as extra runs.
    assert q.get(timeout=0) is None
    assert not q.is_waiting("a")



# ---- backoff means backoff: nudges wait, adds do not ---------------------------------------


def failing_key(clock: FakeClock, delay: float = 10.0) -> WorkQueue:
    """A queue whose key `a` just failed and waits `delay` seconds for its retry."""
    q = WorkQueue(Backoff(base=delay, cap=300.0, jitter=0.0), clock=clock)
    q.add("a")
    assert q.get(timeout=0) == "a"
    assert q.add_rate_limited("a") == delay
    q.done("a")
    return q


def test_nudges_of_a_key_waiting_out_its_backoff_are_dropped():
    clock = FakeClock()
    q = failing_key(clock)
    assert q.backing_off("a")
    for _ in range(50):  # a pod event every 0.1 s
        q.nudge("a")
        clock.now += 0.1
        assert q.get(timeout=0) is None
    clock.now += 5.0
    assert q.get(timeout=0) == "a"  # the retry, when the backoff says


def test_add_ends_the_wait_early():
    clock = FakeClock()
    q = failing_key(clock)
    q.add("a")  # spec or template changed, or an admin asked for a retry
    assert q.get(timeout=0) == "a"


def test_a_nudge_during_a_failing_run_does_not_rerun_it_at_done():
    clock = FakeClock()
    q = failing_key(clock)
    clock.now += 10
    assert q.get(timeout=0) == "a"  # the retry runs...
    q.nudge("a")  # ...its own `up` touches the pod: an event arrives meanwhile
    assert q.add_rate_limited("a") == 20  # ...and fails again
    q.done("a")
    assert q.get(timeout=0) is None
    clock.now += 19.9
    assert q.get(timeout=0) is None
    clock.now += 0.2
    assert q.get(timeout=0) == "a"


def test_a_nudge_during_a_successful_run_reruns_it_at_done():
    q = WorkQueue()
    q.add("a")
    q.get(timeout=0)
    q.nudge("a")
    q.forget("a")
    q.done("a")
    assert q.get(timeout=0) == "a"


def test_nudge_of_a_healthy_key_is_an_add():
    q = WorkQueue()
    q.nudge("a")
    q.nudge("a")
    assert len(q) == 1 and q.get(timeout=0) == "a"


def test_a_new_failure_replaces_an_earlier_pending_retry():
    clock = FakeClock()
    q = failing_key(clock, delay=10.0)
    q.add("a")  # an urgent run while the 10 s retry is pending
    assert q.get(timeout=0) == "a"
    assert q.add_rate_limited("a") == 20  # fails: the retry is now 20 s away, not 10
    q.done("a")
    clock.now += 15
    assert q.get(timeout=0) is None
    clock.now += 5
    assert q.get(timeout=0) == "a"


def test_a_success_ends_the_backoff_for_nudges():
    clock = FakeClock()
    q = failing_key(clock)
    q.add("a")
    q.get(timeout=0)
    q.forget("a")  # it worked
    q.done("a")
    assert not q.backing_off("a")
    q.nudge("a")
    assert q.get(timeout=0) == "a"
