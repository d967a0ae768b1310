"""Pre-started stack workers: real worker processes (no Pulumi CLI needed for these requests)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from jupyternetes.engine import StackEngine, StackSettings
from jupyternetes.engine import pool as engine_pool
from jupyternetes.engine.procs import pid_alive

REPO = Path(__file__).resolve().parents[2]
INVALID = [{"group": "pods", "entry": "n",
            "manifest": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}}]


def engine_for(tmp_path: Path, prestart: int = 1) -> StackEngine:
    settings = StackSettings(backend_url=f"file://{tmp_path}/state", passphrase="p",
                             kubeconfig=None, context=None, pulumi_home=None)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    return StackEngine(settings, env=env, timeout=60, prestart=prestart)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_prestarted_worker_serves_exactly_one_operation(tmp_path):
    engine = engine_for(tmp_path)
    try:
        assert engine._pool.idle_pids() == []  # nothing is started before it is needed
        first = engine.up("ns", "x", INVALID, [])
        assert "metadata.name is missing" in first.message
        assert wait_for(lambda: len(engine._pool.idle_pids()) == 1)
        [idle] = engine._pool.idle_pids()
        second = engine.up("ns", "x", INVALID, [])
        assert "metadata.name is missing" in second.message
        assert not pid_alive(idle)  # it ran the operation and exited
        assert wait_for(lambda: len(engine._pool.idle_pids()) == 1)
        assert engine._pool.idle_pids() != [idle]  # a fresh one for the next operation
    finally:
        engine.close()


def test_close_stops_idle_workers(tmp_path):
    engine = engine_for(tmp_path)
    engine.up("ns", "x", INVALID, [])
    assert wait_for(lambda: len(engine._pool.idle_pids()) == 1)
    [idle] = engine._pool.idle_pids()
    engine.close()
    assert wait_for(lambda: not pid_alive(idle), timeout=10)
    engine.up("ns", "x", INVALID, [])  # still works, without a pool
    assert engine._pool.idle_pids() == []


def test_no_pool_with_prestart_zero(tmp_path):
    engine = engine_for(tmp_path, prestart=0)
    engine.up("ns", "x", INVALID, [])
    time.sleep(1.0)
    assert engine._pool.idle_pids() == []


def test_an_idle_worker_exits_after_its_idle_time(tmp_path):
    pool = engine_pool.WorkerPool({"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}, 1,
                                 idle_seconds=0.5)
    try:
        pool.done(None)
        assert wait_for(lambda: len(pool._idle) == 1)
        proc = pool._idle[0]
        assert proc.wait(30) == engine_pool.WORKER_IDLE_EXIT
        assert pool.take() is None
    finally:
        pool.close()


class ExpiredPool:
    """A pool whose worker exits idle just as it is handed out (the race run_worker handles)."""

    def __init__(self) -> None:
        self.done_with: list[object] = []

    def take(self) -> subprocess.Popen:
        proc = subprocess.Popen(["sh", "-c", f"exit {engine_pool.WORKER_IDLE_EXIT}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.wait()
        return proc

    def done(self, proc: object) -> None:
        self.done_with.append(proc)


def test_a_worker_that_expired_when_taken_is_replaced_by_a_new_one(tmp_path):
    engine = engine_for(tmp_path, prestart=0)
    pool = ExpiredPool()
    request = engine._request("up", "ns", "x", INVALID, [])
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}
    answer = engine_pool.run_worker(request, env, 60, pool)  # type: ignore[arg-type]
    assert "metadata.name is missing" in answer["message"]
    assert len(pool.done_with) == 1
