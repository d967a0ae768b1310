"""End to end: one writer per state (leader election, stale-lock rule), status writes that cannot
clobber, aggregated Events, and bounded chaos (the operator's whole process tree SIGKILLed).

Real apiserver, real Pulumi engine, the operator as a subprocess (tests/e2e/test_operator.py
explains the harness); what is checked is what exists in the cluster, the backend folder and the
operators' logs.
"""

# The fixtures of test_operator.py are imported by name, which pytest needs and ruff flags.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client

from harness.operator_process import OperatorProcess, poll
from harness.tcpproxy import PausableProxy, proxied_kubeconfig, upstream_of
from jupyternetes.coordination.lease import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD
from jupyternetes.crd.conditions import condition as make_condition
from jupyternetes.crd.conditions import merge_conditions
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine import settings
from jupyternetes.engine.runtime.procs import pid_alive
from jupyternetes.engine.state import locks, statedirs
from jupyternetes.kube import eventkey
from jupyternetes.kube.client import Kube
from tests.e2e.test_operator import (  # noqa: F401  (fixtures)
    Cluster,
    hub,
    provisioned,
    start_operator,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.e2e

PROJECT = settings.PROJECT
# LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD: the operator's defaults (coordination/lease.py)
REMOVED = re.compile(r"removed stale lock (\S+) \(pid=(\S+) host=(\S+)\): (.*)")


def readyz(op: OperatorProcess) -> dict | None:
    """/readyz's JSON (also when it answers 503: a leader whose watches have not synced yet);
    None while nothing listens."""
    op.http("/healthz")  # raises, with the log tail, when the operator exited
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.port}/readyz", timeout=5) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return None
    return json.loads(body)


def leading(op: OperatorProcess) -> dict | None:
    doc = readyz(op)
    return doc if doc and doc.get("leading") else None


def lock_files(op: OperatorProcess) -> list[Path]:
    """Lock files, and tmp files of lock writes that never finished (they block too)."""
    found: list[Path] = []
    for folder in statedirs.backend_dirs(op.backend_dir):  # the root and every bucket
        root = locks.lock_dir(folder, PROJECT)
        found += [*root.glob("*/*.json"), *root.glob("*/*.json.*.tmp")]
    return sorted(found)


def removed_locks(op: OperatorProcess) -> list[tuple[str, str, str, str]]:
    """(stack/lock, pid, host, reason) of every lock the operator's log says it removed."""
    return [m.groups() for line in op.log_text().splitlines() if (m := REMOVED.search(line))]


def managed(hub: Cluster, ns: str, kind: str) -> list[str]:
    selector = "app.kubernetes.io/managed-by=jupyternetes"
    if kind == "pods":
        items = hub.core.list_namespaced_pod(ns, label_selector=selector).items
    else:
        items = hub.core.list_namespaced_persistent_volume_claim(ns,
                                                                 label_selector=selector).items
    return sorted(i.metadata.name for i in items)


def converged(hub: Cluster, ns: str, names: list[str], op: OperatorProcess) -> None:
    """Every instance Completed with exactly one pod and one PVC; nothing without its
    instance (pods, PVCs, stacks); no stack lock left."""
    for name in names:
        wait_for(f"{name} Completed", provisioned(hub, ns, name), timeout=400,
                 describe=lambda name=name: hub.describe(ns, name) + "\n" + op.log_tail())
    for name in names:
        assert len(hub.pods(ns, name)) == 1, f"pods of {name}: {hub.pods(ns, name)}"
        assert len(hub.pvcs(ns, name)) == 1, f"PVCs of {name}"
    assert managed(hub, ns, "pods") == sorted(f"{n}-notebook" for n in names)
    assert managed(hub, ns, "pvcs") == sorted(f"{n}-workspace" for n in names)
    stacks_left = sorted(p.name.removesuffix(".json") for p in op.stack_files()
                         if p.name.startswith(f"{ns}."))
    assert stacks_left == sorted(stack_name(ns, n) for n in names)
    wait_for("no stack lock left", lambda: not lock_files(op), timeout=60,
             describe=lambda: str(lock_files(op)))


# ---- item 5: one writer per state ---------------------------------------------------------


def test_two_operators_one_leads_the_other_takes_over_when_the_leader_is_killed(
        hub, namespace, volumes, start_operator):
    ns = namespace
    names = [f"ha-{i}" for i in range(10)]
    for name in names:
        volumes.provide(ns, name)
    first = start_operator([ns], workers=4)
    lead = wait_for("the first operator leading", lambda: leading(first), timeout=60,
                    describe=first.log_tail)
    second = start_operator([ns], workers=4)
    standby = wait_for("the second operator standing by", lambda: (
        (d := readyz(second)) and d.get("leader") == lead["identity"] and d), timeout=60,
        describe=second.log_tail)
    assert standby["leading"] is False and standby["identity"] != lead["identity"]
    assert standby["since"] == lead["since"]
    print(f"\nleader {lead['identity']} since {lead['since']}; standby {standby['identity']}")

    for name in names:
        hub.create_instance(ns, name)
    wait_for("an `up` of the leader holding a stack lock", lambda: lock_files(first),
             timeout=120)
    # A burst is under way: the standby did nothing with it.
    snapshot = second.metrics()
    assert snapshot.engine_operations == 0 and snapshot.reconciles == 0
    assert not removed_locks(second)
    held = lock_files(first)
    killed = set(first.kill_tree())
    killed_at = time.monotonic()
    print(f"SIGKILL of the leader's {len(killed)} processes with {len(held)} lock(s) held")

    # Within the lease duration (+ retry periods, + slack for a loaded machine).
    took_over = wait_for("the standby leading", lambda: leading(second),
                         timeout=LEASE_DURATION + 2 * RETRY_PERIOD + 10,
                         describe=second.log_tail)
    takeover = time.monotonic() - killed_at
    print(f"standby took over {takeover:.1f}s after the kill (lease {LEASE_DURATION:g}s)")
    assert took_over["identity"] == standby["identity"]

    converged(hub, ns, names, second)
    # Every lock the new leader removed was held by a process of the killed tree, on this host.
    removed = removed_locks(second)
    print("removed:", removed)
    for lock, pid, host, reason in removed:
        assert host == socket.gethostname() and int(pid) in killed, (lock, pid, host, reason)
        assert "is gone" in reason
    assert second.metrics().value("jupyternetes_stale_locks_cleared_total") == len(removed)


def test_a_leader_that_loses_its_lease_stops_at_once(hub, namespace, volumes, start_operator,
                                                     pulumi_env):
    ns = namespace
    names = ["lost-a", "lost-b", "lost-c"]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=3)
    lead = wait_for("leading", lambda: leading(op), timeout=60, describe=op.log_tail)
    for name in names:
        hub.create_instance(ns, name)
    wait_for("an `up` holding a stack lock", lambda: lock_files(op), timeout=120)
    tree = op.tree()
    # Someone else takes the Lease (as a replica would after a partition).
    from jupyternetes.coordination.election import default_lease_name
    coordination = client.CoordinationV1Api(hub.api)
    lease_name = default_lease_name(pulumi_env.backend_url, [ns])
    lease = coordination.read_namespaced_lease(lease_name, "default")
    assert lease.spec.holder_identity == lead["identity"]
    lease.spec.holder_identity = "intruder_1"
    coordination.replace_namespaced_lease(lease_name, "default", lease)
    taken = time.monotonic()
    # Its next renew sees the Lease taken: one retry period (+ the kill of its engines).
    code = op.proc.wait(2 * RETRY_PERIOD + 10)
    print(f"\nleader exited {time.monotonic() - taken:.1f}s after losing the Lease, "
          f"code {code}")
    assert code == 1 and "lost the Lease" in op.log_text()
    # It took its engine processes (workers, Pulumi CLIs, providers) with it.
    assert not [pid for pid in tree if pid_alive(pid)]
    # The intruder goes away; a new operator takes over and finishes the work.
    coordination.delete_namespaced_lease(lease_name, "default")
    op.start()
    wait_for("leading again", lambda: leading(op), timeout=60, describe=op.log_tail)
    converged(hub, ns, names, op)


def test_a_leader_cut_off_from_the_apiserver_stops_every_write_before_its_lease_can_be_taken(
        cluster, hub, namespace, volumes, start_operator, tmp_path):
    """The leader's apiserver connection is black-holed (a paused TCP proxy: no answer, no
    error) while its `up`s run. Its renews then neither succeed nor fail; the watchdog must stop
    its work (engine processes killed, the process gone) at the renew deadline, before the
    standby may take the Lease (the lease duration after it saw the last renew); the standby
    then finishes the work, removing only the dead leader's locks.

    Before the one Lease loop, a renew blocked in the kubernetes client's retries (4 attempts of
    5 s each) with no watchdog: the standby led while the old leader's engines still ran."""
    ns = namespace
    names = [f"cut-{i}" for i in range(6)]
    for name in names:
        volumes.provide(ns, name)
    proxy = PausableProxy(upstream_of(cluster.kubeconfig))
    try:
        kubeconfig = proxied_kubeconfig(cluster.kubeconfig, proxy.port,
                                        tmp_path / "proxied-kubeconfig")
        first = start_operator([ns], workers=4, extra=("--kubeconfig", str(kubeconfig)))
        lead = wait_for("the proxied operator leading", lambda: leading(first), timeout=90,
                        describe=first.log_tail)
        second = start_operator([ns], workers=4)
        wait_for("the second operator standing by", lambda: (
            (d := readyz(second)) and d.get("leader") == lead["identity"] and d), timeout=90,
            describe=second.log_tail)
        for name in names:
            hub.create_instance(ns, name)
        wait_for("an `up` of the leader holding a stack lock", lambda: lock_files(first),
                 timeout=180, describe=first.log_tail)
        tree = set(first.tree())
        proxy.pause()
        cut = time.monotonic()
        print(f"\nleader {lead['identity']} cut off with {len(lock_files(first))} lock(s) held "
              f"and {len(tree)} processes")

        leader_gone_at = standby_leads_at = None
        deadline = cut + LEASE_DURATION + RENEW_DEADLINE + 60
        while time.monotonic() < deadline and standby_leads_at is None:
            now = time.monotonic()
            tree |= set(first.tree())  # processes it starts meanwhile count too
            if leader_gone_at is None and not [p for p in tree if pid_alive(p)]:
                leader_gone_at = now
            if leading(second):
                standby_leads_at = now
            time.sleep(0.1)
        assert standby_leads_at is not None, second.log_tail()
        gone = "not" if leader_gone_at is None else f"{leader_gone_at - cut:.1f}s after the cut"
        print(f"leader's processes all gone: {gone}; the standby led "
              f"{standby_leads_at - cut:.1f}s after the cut (renew deadline "
              f"{RENEW_DEADLINE:g}s, lease {LEASE_DURATION:g}s)")
        # Every process of the cut-off leader (workers, Pulumi CLIs, providers) was dead
        # before the standby could lead: no two writers of a stack at any moment.
        assert leader_gone_at is not None and leader_gone_at < standby_leads_at, \
            first.log_tail()
        assert first.proc.wait(10) == 1
        assert "lost the Lease" in first.log_text()
        assert standby_leads_at - cut >= LEASE_DURATION - RENEW_DEADLINE  # not before a lapse

        converged(hub, ns, names, second)
        # The new leader removed only locks of the dead leader's processes.
        for lock, pid, host, reason in removed_locks(second):
            assert host == socket.gethostname() and int(pid) in tree, (lock, pid, reason)
            assert "is gone" in reason, (lock, reason)
        # Nothing of the old leader landed after the takeover: its status writes, Events and
        # stack updates all stopped with it (the last update of every stack is the new
        # leader's, or one that ended before the cut).
        for name in names:
            update = hub.instance(ns, name)["status"]["stack"]["lastUpdate"]
            assert update["result"] == "succeeded", (name, update)
    finally:
        proxy.close()


def write_lock(backend: Path, stack: str, pid: int, host: str, written: float) -> Path:
    path = (locks.lock_dir(statedirs.stack_dir(backend, PROJECT, stack), PROJECT) / stack
            / f"{host}-{pid}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromtimestamp(written, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path.write_text(json.dumps({"pid": pid, "username": "root", "hostname": host,
                                "timestamp": stamp}))
    os.utime(path, (written, written))
    return path


def test_a_standby_removes_no_lock_and_the_new_leader_only_provably_stale_ones(
        hub, namespace, start_operator, pulumi_env):
    ns = namespace
    lease_name = "ha-operator"
    coordination = client.CoordinationV1Api(hub.api)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # A live replica on another host holds the Lease (renewed just now, for an hour). In the
    # test's namespace, so that it goes with it.
    coordination.create_namespaced_lease(ns, {
        "metadata": {"name": lease_name},
        "spec": {"holderIdentity": "other-host_1", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now}})
    backend = Path(pulumi_env.backend_url.removeprefix("file://"))
    written = time.time() - 60
    foreign = write_lock(backend, f"{ns}.far", 4242, "other-host", written)
    live_here = write_lock(backend, f"{ns}.here", os.getpid(), socket.gethostname(),
                           written)
    dead_here = write_lock(backend, f"{ns}.gone", 999_999_999, socket.gethostname(),
                           written)

    op = start_operator([ns], extra=("--leader-election-name", lease_name,
                                     "--leader-election-namespace", ns))
    doc = wait_for("standing by", lambda: (d := readyz(op)) and d.get("leader") and d,
                   timeout=60, describe=op.log_tail)
    assert doc["leader"] == "other-host_1" and doc["leading"] is False
    # A standby touches no lock, not even a provably stale one: that is the leader's job.
    assert foreign.exists() and live_here.exists() and dead_here.exists()
    assert not removed_locks(op)

    # The other replica releases the Lease (graceful stop): this one takes over at once.
    lease = coordination.read_namespaced_lease(lease_name, ns)
    lease.spec.holder_identity = None
    lease.spec.lease_duration_seconds = 1
    coordination.replace_namespaced_lease(lease_name, ns, lease)
    wait_for("leading", lambda: leading(op), timeout=30, describe=op.log_tail)
    wait_for("the dead holder's lock removed", lambda: not dead_here.exists(), timeout=60,
             describe=op.log_tail)
    wait_for("the old leader's lock removed", lambda: not foreign.exists(), timeout=60,
             describe=op.log_tail)
    # This host's lock whose process runs (this test) stays, leader or not.
    assert live_here.exists()
    reasons = {lock.split("/")[0]: reason for lock, _, _, reason in removed_locks(op)}
    assert set(reasons) == {f"{ns}.far", f"{ns}.gone"}, reasons
    assert "before this operator acquired the Lease" in reasons[f"{ns}.far"]
    assert "is gone" in reasons[f"{ns}.gone"]
    assert f"stack lock {ns}.here/" in op.log_text()  # logged as kept, with the reason
    live_here.unlink()


def test_no_leader_elect_removes_a_rescheduled_pods_lock_and_keeps_a_later_one(
        hub, namespace, volumes, start_operator, pulumi_env):
    """One replica without leader election, rescheduled to another node: its predecessor (pod
    `operator-old`, another hostname) left a lock on a user's stack. The lock rule is the same
    as a leader's, with the operator's start for the Lease's acquisition: the old lock goes and
    the stack converges; a lock another host writes after the start (someone alive) stays.
    (Before, without a Lease no other host's lock was ever removed: the stack stayed locked.)"""
    ns, name, later_name = namespace, "moved", "later"
    for n in (name, later_name):
        volumes.provide(ns, n)
    backend = Path(pulumi_env.backend_url.removeprefix("file://"))
    old_pod = write_lock(backend, stack_name(ns, name), 4242, "operator-old", time.time() - 60)
    op = start_operator([ns], extra=("--no-leader-elect",))
    hub.create_instance(ns, name)
    converged(hub, ns, [name], op)
    assert not old_pod.exists()
    reasons = {lock.split("/")[0]: reason for lock, _, _, reason in removed_locks(op)}
    assert "--no-leader-elect" in reasons.get(stack_name(ns, name), ""), reasons

    later = write_lock(backend, stack_name(ns, later_name), 4343, "admin-laptop", time.time())
    try:
        hub.create_instance(ns, later_name)
        wait_for("the later lock seen and kept", lambda: any(
            "locked" in (c.get("message") or "") for c in conditions_by_type(
                hub.instance(ns, later_name) or {}).values()), timeout=240,
            describe=lambda: hub.describe(ns, later_name) + op.log_tail())
        assert later.exists()
        assert stack_name(ns, later_name) not in {
            lock.split("/")[0] for lock, _, _, _ in removed_locks(op)}
    finally:
        later.unlink(missing_ok=True)
    wait_for("the later one converges once its holder is done", provisioned(
        hub, ns, later_name), timeout=240, describe=lambda: hub.describe(ns, later_name))


def test_a_lock_write_killed_before_its_rename_does_not_block_the_stack(
        hub, namespace, volumes, start_operator, pulumi_env):
    """fileblob writes a lock to `<id>.json.<hex>.tmp` and renames it; a SIGKILL in between
    leaves the tmp file, which Pulumi's lock check lists and reads ("unexpected end of JSON
    input" on every later operation of the stack). Found by the chaos test below."""
    ns, name = namespace, "torn"
    volumes.provide(ns, name)
    backend = Path(pulumi_env.backend_url.removeprefix("file://"))
    stack = stack_name(ns, name)
    torn = (locks.lock_dir(statedirs.stack_dir(backend, PROJECT, stack), PROJECT) / stack
            / "0b0e7c52-1f0e-4d8e-9a51-2d3c4b5a6f70.json.18a2b3c4d5e6f708.tmp")
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b"")
    written = time.time() - 60
    os.utime(torn, (written, written))
    op = start_operator([ns])
    hub.create_instance(ns, name)
    wait_for("Completed", provisioned(hub, ns, name), timeout=180,
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    assert not torn.exists()
    assert [lock for lock, *_ in removed_locks(op)] == [f"{stack_name(ns, name)}/{torn.name}"]


# ---- item 6: status writes that cannot clobber, aggregated Events -----------------------------


def create_bare_instance(hub: Cluster, ns: str, name: str) -> dict:
    """An instance no operator serves (the test plays the operator with Kube itself)."""
    return hub.create_instance(ns, name)


def conditions_by_type(inst: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (inst.get("status") or {}).get("conditions") or []}


def spawner_adds(hub: Cluster, ns: str, name: str, status: str, message: str) -> None:
    """Another writer (the spawner, kubectl) sets its own condition and a status entry the
    operator does not write, the way such a writer would: read, add, merge patch."""
    inst = hub.custom.get_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, name)
    conds = [c for c in (inst.get("status") or {}).get("conditions") or []
             if c["type"] != "HubSeen"]
    conds.append({"type": "HubSeen", "status": status, "reason": "Spawner", "message": message,
                  "lastTransitionTime": "2026-01-01T00:00:00Z"})
    hub.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, INSTANCE_PLURAL, name,
        {"metadata": {"resourceVersion": inst["metadata"]["resourceVersion"]},
         "status": {"conditions": conds,
                    "pods": {"sidecar": {"resourceName": "hub-sidecar", "state": "Completed"}}}},
        _content_type="application/merge-patch+json")


def test_status_write_from_an_older_read_keeps_a_concurrent_writers_condition(hub, namespace):
    ns, name = namespace, "clobber"
    create_bare_instance(hub, ns, name)
    operator = Kube(hub.api)
    now = "2026-01-01T00:00:00Z"
    operator.patch_instance_status(ns, name, {"conditions": [
        make_condition("Ready", False, "Starting", "not yet", 1, [], now)]})
    base = operator.get_instance(ns, name)  # the operator's read ...
    spawner_adds(hub, ns, name, "True", "the hub saw the server")  # ... someone writes ...
    conds = base["status"]["conditions"]  # ... and the operator writes from its older read.
    operator.patch_instance_status(ns, name, {
        "conditions": merge_conditions(conds, [
            make_condition("Provisioned", True, "StackUp", "up", 1, conds, now)]),
        "pods": {"notebook": {"resourceName": f"{name}-notebook", "state": "Completed"}}})

    inst = hub.instance(ns, name)
    by_type = conditions_by_type(inst)
    assert by_type.get("HubSeen", {}).get("status") == "True", by_type
    assert by_type["Provisioned"]["status"] == "True" and by_type["Ready"]["status"] == "False"
    assert set(inst["status"]["pods"]) == {"notebook", "sidecar"}


def test_a_status_write_that_meets_a_concurrent_write_is_retried_not_lost(hub, namespace):
    ns, name = namespace, "conflict"
    create_bare_instance(hub, ns, name)
    operator = Kube(hub.api)
    now = "2026-01-01T00:00:00Z"
    spawner_adds(hub, ns, name, "True", "first")
    base = operator.get_instance(ns, name)
    read = operator.get_instance
    raced: list[str] = []

    def read_then_someone_writes(namespace: str, name: str) -> dict | None:
        obj = read(namespace, name)
        if not raced:  # right between the operator's read and its write
            raced.append(obj["metadata"]["resourceVersion"])
            spawner_adds(hub, ns, name, "False", "second")
        return obj

    operator.get_instance = read_then_someone_writes  # type: ignore[method-assign]
    conds = (base.get("status") or {}).get("conditions") or []
    written = operator.patch_instance_status(ns, name, {"conditions": merge_conditions(conds, [
        make_condition("Ready", True, "PodReady", "ready", 1, conds, now)])})
    assert raced and written is not None
    assert operator.status_conflicts >= 1  # the first write was refused (409) and redone
    by_type = conditions_by_type(hub.instance(ns, name))
    assert by_type["Ready"]["status"] == "True"  # ours, not lost
    assert (by_type["HubSeen"]["status"], by_type["HubSeen"]["message"]) == ("False", "second")


def test_repeated_failure_events_are_one_event_with_a_count(hub, namespace):
    ns, name = namespace, "noisy"
    inst = create_bare_instance(hub, ns, name)
    operator = Kube(hub.api)
    for attempt in range(1, 5):
        operator.emit_event(inst, "Warning", "ProvisionFailed",
                            f"stack s: up failed (attempt {attempt}): quota exceeded")
    operator.emit_event(inst, "Warning", "ProvisionFailed",
                        "stack s: up failed (attempt 5): image not found")
    events = [e for e in operator.list_events(ns, name) if e["reason"] == "ProvisionFailed"]
    by_message = {e["message"]: e for e in events}
    assert len(events) == 2, [(e["message"], e.get("count")) for e in events]
    quota = by_message["stack s: up failed (attempt 4): quota exceeded"]
    assert quota["count"] == 4
    assert quota["lastTimestamp"] >= quota["firstTimestamp"]
    assert by_message["stack s: up failed (attempt 5): image not found"]["count"] == 1


def test_an_instance_failing_again_and_again_has_one_failure_event(hub, namespace,
                                                                    start_operator):
    ns, name = namespace, "rejected"
    op = start_operator([ns])
    hub.create_instance(ns, name, template="rejected-template")
    wait_for("Degraded (5 failed ups)", lambda: (
        (i := hub.instance(ns, name)) and conditions_by_type(i).get("Degraded", {}).get(
            "status") == "True"), timeout=300,
        describe=lambda: hub.describe(ns, name) + op.log_tail())

    def failure_events() -> list[dict]:
        return [e for e in Kube(hub.api).list_events(ns, name)
                if e["reason"] == "ProvisionFailed"]

    # An Event is written right after the status it explains: wait for the 5th try's count.
    wait_for("the 5 failed tries counted in Events",
             lambda: sum(e.get("count") or 1 for e in failure_events()) >= 5, timeout=60,
             describe=lambda: json.dumps([(e.get("count"), e["message"])
                                          for e in failure_events()], indent=1))
    events = failure_events()
    print("\nProvisionFailed:", json.dumps([(e.get("count"), e["message"]) for e in events],
                                            indent=1))
    # One Event object per distinct failure (the engine's words can change between tries, e.g.
    # a first create vs. a retry), each counting its repeats: never one object per try.
    normalized = [eventkey.normalized(e["message"]) for e in events]
    assert len(set(normalized)) == len(normalized), normalized
    tries = sum(e["count"] for e in events)
    assert tries >= 5 and len(events) < tries, [(e["count"], e["message"]) for e in events]


# ---- chaos, bounded ---------------------------------------------------------------------------


def test_chaos_three_sigkills_during_fifteen_instances(hub, namespace, volumes, start_operator):
    ns = namespace
    rng = random.Random(20261201)
    names = [f"chaos-{i:02d}" for i in range(15)]
    for name in names:
        volumes.provide(ns, name)
    op = start_operator([ns], workers=4)
    wait_for("leading", lambda: leading(op), timeout=60, describe=op.log_tail)
    started = time.monotonic()
    for name in names:
        hub.create_instance(ns, name)
    kills = []
    for round_ in range(3):
        delay = rng.uniform(1.0, 12.0)
        time.sleep(delay)  # the random moment is the point of this test
        # ... then the next moment an engine writes a stack (holds its lock), unless all
        # is done already: a kill between operations would test much less.
        poll(lambda: lock_files(op) or all(provisioned(hub, ns, n)() for n in names), 60,
             0.05)
        held = len(lock_files(op))
        done = sum(1 for n in names if provisioned(hub, ns, n)())
        pids = op.kill_tree()
        kills.append({"after_s": round(delay, 1), "processes": len(pids), "locks": held,
                      "completed": done})
        op.start()
        # A new pid is a new identity: it waits out the dead leader's Lease.
        wait_for(f"leading again after kill {round_ + 1}", lambda: leading(op),
                 timeout=LEASE_DURATION + 30, describe=op.log_tail)
    converged(hub, ns, names, op)
    print(f"\nchaos: {json.dumps(kills)}; all {len(names)} converged "
          f"{time.monotonic() - started:.0f}s after the burst")
    # Every removed lock was this host's and its process gone (the tree was killed).
    for lock, _pid, host, reason in removed_locks(op):
        assert host == socket.gethostname() and "is gone" in reason, (lock, reason)
