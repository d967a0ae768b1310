"""Leader election (coordination/leader.py) against an in-memory Lease with resourceVersion checks;
the real Lease API is exercised by tests/e2e/test_ha.py."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from jupyternetes.coordination import leader
from jupyternetes.coordination.leader import LeaderElector, LeaseConflict, LeaseRecord


class MemoryLease:
    """The apiserver's semantics that matter: create once, replace only at the current rv."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.fail = False

    def get(self) -> LeaseRecord | None:
        if self.fail:
            raise RuntimeError("apiserver unreachable")
        return self.record

    def create(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._store(record)

    def replace(self, record: LeaseRecord) -> LeaseRecord:
        if self.fail:
            raise RuntimeError("apiserver unreachable")
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflict("the object has been modified")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def elector(lease: MemoryLease, identity: str, clock: Clock, **kw) -> LeaderElector:
    return LeaderElector(lease, identity, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now,
                         **kw)


def test_first_candidate_creates_and_leads_second_waits_until_expiry():
    lease, clock = MemoryLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    assert a.try_acquire_or_renew()
    assert lease.record.holder == "a" and lease.record.lease_seconds == 15
    assert not b.try_acquire_or_renew()
    assert b.status() == {"identity": "b", "leader": "a", "leading": False,
                          "since": lease.record.acquire_time}
    clock.now += 10
    assert a.try_acquire_or_renew()  # renew keeps acquireTime, no transition
    assert lease.record.transitions == 0
    clock.now += 14
    assert not b.try_acquire_or_renew()  # b sees the renew now: its own clock starts again
    clock.now += 14
    assert not b.try_acquire_or_renew()
    clock.now += 2
    assert b.try_acquire_or_renew()  # 16 s without a change seen by b: expired
    assert lease.record.holder == "b" and lease.record.transitions == 1


def test_a_released_lease_is_taken_at_once():
    lease, clock = MemoryLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a._leading = True
    assert a.release()
    assert lease.record.holder == "" and lease.record.lease_seconds == 1
    assert b.try_acquire_or_renew()
    assert not a.release()  # not leading any more: nothing to release


def test_racing_writers_one_wins():
    lease, clock = MemoryLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    assert a.try_acquire_or_renew()
    stale = lease.record
    assert a.try_acquire_or_renew()  # moves the resourceVersion on
    with pytest.raises(LeaseConflict):
        lease.replace(replace(stale, holder="b"))
    assert lease.record.holder == "a"
    assert not b.try_acquire_or_renew()


def test_is_leader_turns_false_at_the_renew_deadline_before_the_loop_notices():
    lease, clock = MemoryLease(), Clock()
    a = elector(lease, "a", clock)
    assert a.try_acquire_or_renew()
    a._leading, a._last_renew = True, clock.now
    assert a.is_leader()
    clock.now += 9.9
    assert a.is_leader()
    clock.now += 0.2
    assert not a.is_leader()


def test_run_leads_then_loses_the_lease_when_renews_fail():
    lease = MemoryLease()
    started, stopped = threading.Event(), threading.Event()
    since: list[float] = []
    a = LeaderElector(lease, "a", lease_duration=3, renew_deadline=2, retry_period=1,
                      on_started=lambda t: (since.append(t), started.set()),
                      on_stopped=stopped.set)
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,))
    thread.start()
    assert started.wait(5) and a.is_leader() and since == [a.since]
    lease.fail = True
    assert stopped.wait(6)
    thread.join(5)
    assert not thread.is_alive() and not a.is_leader() and a.lost


def test_run_loses_the_lease_at_once_when_someone_else_holds_it():
    lease = MemoryLease()
    stopped = threading.Event()
    a = LeaderElector(lease, "a", lease_duration=3, renew_deadline=2, retry_period=1,
                      on_stopped=stopped.set)
    stop = threading.Event()
    thread = threading.Thread(target=a.run, args=(stop,))
    thread.start()
    try:
        for _ in range(50):
            if a.is_leader():
                break
            threading.Event().wait(0.1)
        lease._store(replace(lease.record, holder="intruder"))
        assert stopped.wait(3)
    finally:
        stop.set()
        thread.join(5)


def test_a_follower_stops_when_asked():
    lease, clock = MemoryLease(), Clock()
    assert elector(lease, "a", clock).try_acquire_or_renew()
    b = LeaderElector(lease, "b", lease_duration=30, renew_deadline=2, retry_period=1)
    stop = threading.Event()
    thread = threading.Thread(target=b.run, args=(stop,))
    thread.start()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not b.is_leader()


def test_validate_names_the_flags():
    leader.validate(15, 10, 2)
    with pytest.raises(ValueError, match="--leader-election-renew-deadline"):
        leader.validate(10, 10, 2)
    with pytest.raises(ValueError):
        leader.validate(15, 2, 2)


def test_default_lease_name_is_shared_by_operators_on_the_same_state_and_scope():
    from jupyternetes.coordination.election import default_lease_name
    a = default_lease_name("file:///state", ["ns-b", "ns-a"])
    assert a == default_lease_name("file:///state", ["ns-a", "ns-b", "ns-a"])
    assert a != default_lease_name("file:///other", ["ns-a", "ns-b"])
    assert a != default_lease_name("file:///state", [])
    assert a.startswith("jupyternetes-operator-") and len(a) <= 63


def test_readyz_answers_json_who_leads():
    import json as _json
    import urllib.request

    from jupyternetes.app.httpserver import make_http_server, serve
    doc = {"identity": "me", "leader": "other", "leading": False, "since": "t"}
    server = make_http_server("127.0.0.1", 0, health=lambda: True,
                              ready=lambda: (True, doc), metrics=None)
    serve(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json"
            assert _json.loads(resp.read()) == doc
    finally:
        server.shutdown()
        server.server_close()


def test_lease_namespace_prefers_pod_namespace(monkeypatch, tmp_path):
    from jupyternetes.coordination import election

    # The deploy stack sets POD_NAMESPACE from the pod's fieldRef; its RBAC allows leases there.
    assert election.default_lease_namespace({"POD_NAMESPACE": "jn-op"}) == "jn-op"
    sa_file = tmp_path / "namespace"
    sa_file.write_text("from-sa\n")
    monkeypatch.setattr(election, "SERVICE_ACCOUNT_NAMESPACE", str(sa_file))
    assert election.default_lease_namespace({}) == "from-sa"
    monkeypatch.setattr(election, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "missing"))
    assert election.default_lease_namespace({}) == "default"


def test_kill_engine_processes_returns_when_the_whole_tree_is_gone():
    """A replica that lost its Lease exits only after its engine processes are dead, children
    of children included (a worker's Pulumi CLI), so no engine overlaps the next leader."""
    import json
    import subprocess
    import sys

    script = (
        "import json, subprocess, sys\n"
        "from jupyternetes.engine.runtime.procs import pid_alive\n"
        "from jupyternetes.coordination.election import kill_engine_processes\n"
        # A worker-like child with a child of its own (a CLI), in a session of its own.
        "outer = subprocess.Popen([sys.executable, '-c', 'import subprocess, time; "
        "subprocess.Popen([\"sleep\", \"300\"]); time.sleep(300)'], start_new_session=True)\n"
        "import time\n"
        "from jupyternetes.engine.runtime.procs import descendants\n"
        "import os\n"
        "while len(descendants(os.getpid())) < 2: time.sleep(0.01)\n"
        "killed = kill_engine_processes()\n"
        "print(json.dumps({'killed': killed, 'alive': [p for p in killed if pid_alive(p)]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    answer = json.loads(out)
    assert len(answer["killed"]) == 2
    assert answer["alive"] == []
