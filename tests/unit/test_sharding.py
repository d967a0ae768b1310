"""Sharded replicas' wiring (coordination/sharding.py, engineprocs.py, the operator's gate): flags,
the per-stack kill of a lost shard and the gate that refuses to start an operation of a shard not
held. Real processes for the kill (no mocks); the Lease I/O is test_shardleases.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from jupyternetes.coordination import election, sharding
from jupyternetes.coordination.shards import shard_of_key
from jupyternetes.engine.runtime import engineprocs
from jupyternetes.engine.runtime.procs import pid_alive


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--namespace", action="append", default=[])
    election.add_arguments(parser)
    sharding.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_default_to_no_sharding_and_replica_id_from_pod_name():
    args = parse()
    assert args.shards == 0 and sharding.config_error(args) is None
    assert sharding.replica_id(args, {"POD_NAME": "op-7d9-x"}) == "op-7d9-x"
    assert "_" in sharding.replica_id(args, {})  # hostname_pid
    assert sharding.replica_id(parse("--replica-id", "r1"), {"POD_NAME": "p"}) == "r1"


@pytest.mark.parametrize("argv, words", [
    (("--shards", "-1"), "--shards must be 0"),
    (("--shards", "4", "--no-leader-elect"), "drop --no-leader-elect"),
    (("--shards", "4", "--leader-election-lease-duration", "2"), "lease-duration"),
])
def test_bad_sharding_flags_are_refused_naming_the_flag(argv, words):
    assert words in (sharding.config_error(parse(*argv)) or "")


def tree() -> subprocess.Popen:
    """A worker stand-in with a child of its own (like a worker and its Pulumi CLI)."""
    return subprocess.Popen([sys.executable, "-c",
                             "import subprocess, time; subprocess.Popen(['sleep', '60']); "
                             "time.sleep(60)"], start_new_session=True)


def test_kill_stops_only_the_selected_stacks_workers_and_their_children():
    a, b = tree(), tree()
    try:
        time.sleep(0.5)  # let the children start
        with engineprocs.running("ns.a", a.pid), engineprocs.running("ns.b", b.pid):
            assert engineprocs.stacks() == ["ns.a", "ns.b"]
            from jupyternetes.engine.runtime.procs import descendants
            child_a = descendants(a.pid)
            assert child_a
            killed = engineprocs.kill(lambda stack: stack == "ns.a")
            assert set(killed) == {a.pid, *child_a}
            a.wait(5)
            assert a.returncode == -9
            assert b.poll() is None
            for pid in child_a:
                deadline = time.monotonic() + 5
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert not pid_alive(pid)
        assert engineprocs.stacks() == []
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()
        engineprocs.kill(lambda stack: True)


def test_a_long_lived_worker_running_two_stacks_is_killed_whole_when_one_shard_is_lost():
    """One worker runs several stacks' operations at once (pool.py): each operation is its own
    entry, and losing either stack's shard kills that worker's whole process group."""
    a, b = tree(), tree()
    try:
        time.sleep(0.5)
        with engineprocs.running("ns.x", a.pid, 1), engineprocs.running("ns.y", a.pid, 2), \
                engineprocs.running("ns.z", b.pid, 3):
            assert engineprocs.stacks() == ["ns.x", "ns.y", "ns.z"]
            from jupyternetes.engine.runtime.procs import descendants
            child_a = descendants(a.pid)
            killed = engineprocs.kill(lambda stack: stack == "ns.y")
            assert set(killed) == {a.pid, *child_a}
            assert all(not pid_alive(pid) for pid in child_a)  # kill waits until they are gone
            a.wait(5)
            assert b.poll() is None
        assert engineprocs.stacks() == []
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()


def test_the_gate_refuses_an_operation_of_a_shard_not_held():
    engineprocs.set_gate(lambda stack: stack == "ns.mine")
    try:
        with engineprocs.running("ns.mine", 1):
            pass
        with pytest.raises(engineprocs.Refused, match="does not hold"), \
                engineprocs.running("ns.other", 2):
            pass
        assert engineprocs.stacks() == []
    finally:
        engineprocs.set_gate(None)


def test_an_operator_starts_nothing_for_an_instance_of_a_shard_it_does_not_hold():
    from jupyternetes.controller.controller import Operator

    class NoEngine:
        def up(self, *args, **kw):
            raise AssertionError("no engine call expected")

        def destroy(self, *args, **kw):
            raise AssertionError("no engine call expected")

    op = Operator(kube=None, engine=NoEngine(), workers=1)  # type: ignore[arg-type]
    from jupyternetes.controller.edges import Result

    reconciled = []

    def reconcile(key: str, failures: int = 0) -> Result:
        reconciled.append(key)
        return Result("unchanged")

    op.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    mine = {k for k in (f"ns/i{i}" for i in range(20)) if shard_of_key(k, 4) == 0}
    op.owns = lambda key: key in mine
    for i in range(20):
        op.process(f"ns/i{i}")
    assert set(reconciled) == mine
    # Others' keys are dropped, not retried: their shard's holder has them.
    assert len(op.queue) == 0 and op.queue.waiting() == 0
