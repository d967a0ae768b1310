"""The engine's worker processes: real workers (no Pulumi CLI needed for these requests: the
objects are invalid, so every operation fails when its program is built, in the worker)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from jupyternetes.engine import StackConfigError, StackEngine, StackSettings, settings
from jupyternetes.engine.runtime import pool as engine_pool
from jupyternetes.engine.runtime import protocol
from jupyternetes.engine.runtime.procs import pid_alive

REPO = Path(__file__).resolve().parents[2]
INVALID = [{"group": "pods", "entry": "n",
            "manifest": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}}]
ENV = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)}


def engine_for(tmp_path: Path, prestart: int = 1, **env: str) -> StackEngine:
    stack_settings = StackSettings(backend_url=f"file://{tmp_path}/state", passphrase="p",
                                   kubeconfig=None, context=None, pulumi_home=None)
    return StackEngine(stack_settings, env={**ENV, **env}, timeout=60, prestart=prestart)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def fails_in_worker(engine: StackEngine, name: str = "x") -> None:
    result = engine.up("ns", name, INVALID, [])
    assert "metadata.name is missing" in result.message


def test_one_worker_serves_operation_after_operation(tmp_path):
    engine = engine_for(tmp_path)
    try:
        assert engine._pool.pids() == []  # nothing is started before it is needed
        fails_in_worker(engine)
        [pid] = engine._pool.pids()
        for _ in range(3):
            fails_in_worker(engine)
        assert engine._pool.pids() == [pid]
        assert engine._pool.idle_pids() == [pid]
    finally:
        engine.close()


def test_one_worker_serves_operations_at_once(tmp_path):
    engine = engine_for(tmp_path)
    try:
        fails_in_worker(engine)  # started; the next ones all find room in it
        [pid] = engine._pool.pids()
        threads = [threading.Thread(target=fails_in_worker, args=(engine, f"x{i}"))
                   for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert engine._pool.pids() == [pid]
    finally:
        engine.close()


def test_a_worker_is_replaced_after_its_reuse_count(tmp_path):
    engine = engine_for(tmp_path, **{settings.ENV_WORKER_REUSE: "2"})
    try:
        fails_in_worker(engine)
        [first] = engine._pool.pids()
        fails_in_worker(engine)  # its 2nd and last: then it exits, a spare takes over
        assert wait_for(lambda: not pid_alive(first))
        fails_in_worker(engine)
        [second] = engine._pool.pids()
        assert second != first
    finally:
        engine.close()


def test_one_process_per_operation_when_asked(tmp_path):
    engine = engine_for(tmp_path, **{settings.ENV_WORKER_CONCURRENCY: "1",
                                     settings.ENV_WORKER_REUSE: "1"})
    try:
        fails_in_worker(engine)
        assert wait_for(lambda: len(engine._pool.idle_pids()) == 1)  # the pre-started one
        [idle] = engine._pool.idle_pids()
        fails_in_worker(engine)
        assert wait_for(lambda: not pid_alive(idle))  # it ran that one operation and exited
    finally:
        engine.close()


def test_bad_worker_limits_name_the_variable():
    with pytest.raises(StackConfigError, match="JUPYTERNETES_WORKER_CONCURRENCY='0'"):
        settings.worker_limits({settings.ENV_WORKER_CONCURRENCY: "0"})
    with pytest.raises(StackConfigError, match="JUPYTERNETES_WORKER_REUSE='many'"):
        settings.worker_limits({settings.ENV_WORKER_REUSE: "many"})
    assert settings.worker_limits({}) == (settings.DEFAULT_WORKER_CONCURRENCY,
                                          settings.DEFAULT_WORKER_REUSE)


def test_close_stops_idle_workers_and_operations_still_run(tmp_path):
    engine = engine_for(tmp_path)
    fails_in_worker(engine)
    [idle] = engine._pool.pids()
    engine.close()
    assert wait_for(lambda: not pid_alive(idle), timeout=10)
    fails_in_worker(engine)  # in a worker of its own
    assert engine._pool.pids() == []


def test_an_idle_worker_exits_after_its_idle_time_and_is_not_replaced(tmp_path):
    pool = engine_pool.WorkerPool(ENV, 1, concurrency=4, reuse=10, idle_seconds=0.5)
    try:
        request = engine_for(tmp_path)._request("up", "ns", "x", INVALID, [])
        assert "metadata.name is missing" in pool.run(request, 60)["message"]
        [pid] = pool.pids()
        assert wait_for(lambda: not pid_alive(pid))
        time.sleep(1.0)
        assert pool.pids() == []
    finally:
        pool.close()


def test_a_worker_that_exited_idle_unread_is_replaced(tmp_path, monkeypatch):
    # A worker may expire just as a request is written to it: it exits with WORKER_IDLE_EXIT
    # without reading it, and the request goes to another worker.
    real, calls = engine_pool.start_worker, []

    def first_one_expired(env, idle_seconds=None):
        calls.append(1)
        if len(calls) == 1:
            return subprocess.Popen(["sh", "-c", f"sleep 0.3; exit {protocol.WORKER_IDLE_EXIT}"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        return real(env, idle_seconds)

    monkeypatch.setattr(engine_pool, "start_worker", first_one_expired)
    engine = engine_for(tmp_path)
    try:
        fails_in_worker(engine)
        assert len(calls) == 2
    finally:
        engine.close()


def test_a_crashed_worker_is_a_failed_operation_naming_its_exit_code(tmp_path, monkeypatch):
    def crashing(env, idle_seconds=None):
        return subprocess.Popen(["sh", "-c", "read line; echo boom >&2; exit 3"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    monkeypatch.setattr(engine_pool, "start_worker", crashing)
    engine = engine_for(tmp_path)
    try:
        result = engine.up("ns", "x", INVALID, [])
        assert result.result == "failed"
        assert "exited with code 3 without an answer" in result.message
        assert "boom" in result.message
    finally:
        engine.close()
