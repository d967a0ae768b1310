"""End to end: sharded operator replicas scaled 3 -> 2 -> 4 while instances come and go.

Every replica is `jupyternetes operator --shards N --replica-id r<i>` on one postgres:// backend
(a real PostgreSQL server, tests/e2e/fixtures_postgres.py; the URL in PULUMI_BACKEND_URL, as the
Deployment passes it). Instances are hashed into N shards, one coordination.k8s.io Lease each;
every replica works on the shards it holds. One replica is stopped with SIGTERM (it finishes
its in-flight operations and releases its shards), later two more start (they get shards from
the others). What must hold afterwards: every instance created is Completed with one pod and one
PVC, every instance deleted is gone with its pod and its stack, no stack lock is left, and the
live replicas hold every shard between them.
"""

# The fixtures of test_operator.py are imported by name, which pytest needs and ruff flags.
# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from harness.operator_process import OperatorProcess
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.naming import stack_name
from tests.e2e.test_operator import (  # noqa: F401  (fixtures)
    FAST_BACKOFF,
    Cluster,
    hub,
    provisioned,
    volumes,
    wait_for,
)
from tests.e2e.test_postgres_backend import STACKS, lock_rows, table

pytestmark = pytest.mark.e2e

SHARDS = 8
# Shorter than the default 15 s so a test that waits for a lapse stays short; SIGTERM releases
# at once anyway.
LEASE = ("--leader-election-lease-duration", "8", "--leader-election-renew-deadline", "6",
         "--leader-election-retry-period", "1")
CONVERGE_TIMEOUT = 480.0


def shards_held(op: OperatorProcess) -> float:
    return op.metrics().value("jupyternetes_shards_held")


def stack_rows(url: str, ns: str) -> list[str]:
    prefix = f"{STACKS}{ns}."
    return sorted(k.removeprefix(STACKS).removesuffix(".json") for k in table(url)
                  if k.startswith(prefix) and k.endswith(".json"))


@pytest.fixture
def replicas(cluster, pulumi_env, tmp_path, hub, postgres_backend
             ) -> Iterator[Callable[[str, list[str]], OperatorProcess]]:
    """Factory: replica `rid` of a sharded operator on the test's database. On teardown the
    instances are deleted while replicas still run (finalizers), then each is SIGTERMed."""
    started: list[tuple[OperatorProcess, list[str]]] = []

    def start(rid: str, namespaces: list[str]) -> OperatorProcess:
        env = {**pulumi_env.env, "PULUMI_BACKEND_URL": postgres_backend}
        op = OperatorProcess(cluster.kubeconfig, env, tmp_path / f"state-{rid}",
                             pulumi_env.pulumi_home, namespaces, tmp_path / f"{rid}.log",
                             workers=2, resync_seconds=30,
                             extra=(*FAST_BACKOFF, *LEASE, "--shards", str(SHARDS),
                                    "--replica-id", rid))
        started.append((op, namespaces))
        return op.start()

    yield start
    live = [(op, ns) for op, ns in started if op.running()]
    for _op, namespaces in live[:1]:
        for ns in namespaces:
            for item in hub.custom.list_namespaced_custom_object(GROUP, VERSION, ns,
                                                                 INSTANCE_PLURAL)["items"]:
                hub.delete_instance(ns, item["metadata"]["name"])
            try:
                wait_for(f"instances in {ns} deleted", lambda ns=ns: not hub.custom
                         .list_namespaced_custom_object(GROUP, VERSION, ns,
                                                        INSTANCE_PLURAL)["items"],
                         timeout=240)
            finally:
                for item in hub.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL)["items"]:
                    hub.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
    codes = {op.log_path.stem: op.terminate() for op, _ in live}
    assert set(codes.values()) <= {0}, codes


def test_scale_3_to_2_to_4_replicas_while_instances_are_created_and_deleted_misses_nothing(
        hub: Cluster, namespace, volumes, replicas, postgres_backend):
    ns = namespace
    batches = {b: [f"sc{b}-{i:02d}" for i in range(n)] for b, n in (("a", 12), ("b", 8),
                                                                     ("c", 8))}
    for name in (n for batch in batches.values() for n in batch):
        volumes.provide(ns, name)
    ops = {rid: replicas(rid, [ns]) for rid in ("r0", "r1", "r2")}

    def logs() -> str:
        return "\n".join(f"--- {rid} ---\n{op.log_tail(40)}" for rid, op in ops.items())

    wait_for(f"3 replicas holding all {SHARDS} shards",
             lambda: sum(shards_held(op) for op in ops.values()) == SHARDS, timeout=60,
             describe=logs)

    # 3 replicas: batch a is created; while its updates run, r0 gets SIGTERM.
    for name in batches["a"]:
        hub.create_instance(ns, name)
    wait_for("some of batch a Completed",
             lambda: sum(1 for n in batches["a"] if provisioned(hub, ns, n)()) >= 3,
             describe=logs)
    stopping = ops.pop("r0")
    code = stopping.terminate()
    assert code == 0, f"r0 exit code {code} after SIGTERM\n{stopping.log_tail()}"

    # 2 replicas: batch b created, 4 of batch a deleted (some may still be provisioning).
    deleted = batches["a"][-4:]
    for name in batches["b"]:
        hub.create_instance(ns, name)
    for name in deleted:
        hub.delete_instance(ns, name)
    wait_for(f"2 replicas holding all {SHARDS} shards (r0's taken over)",
             lambda: sum(shards_held(op) for op in ops.values()) == SHARDS, timeout=60,
             describe=logs)

    # 4 replicas: two more start; batch c created, 3 of batch b deleted.
    for rid in ("r3", "r4"):
        ops[rid] = replicas(rid, [ns])
    deleted += batches["b"][:3]
    for name in batches["c"]:
        hub.create_instance(ns, name)
    for name in batches["b"][:3]:
        hub.delete_instance(ns, name)

    kept = [n for batch in batches.values() for n in batch if n not in deleted]
    for name in kept:
        wait_for(f"{name} Completed", provisioned(hub, ns, name), timeout=CONVERGE_TIMEOUT,
                 describe=lambda name=name: hub.describe(ns, name) + "\n" + logs())
    for name in deleted:
        wait_for(f"{name} deleted", lambda name=name: hub.instance(ns, name) is None,
                 timeout=CONVERGE_TIMEOUT,
                 describe=lambda name=name: hub.describe(ns, name) + "\n" + logs())

    # Nothing missed, nothing doubled: one pod and one PVC per kept instance, no pod of a
    # deleted one, a stack for exactly the kept ones, no lock left.
    for name in kept:
        assert len(hub.pods(ns, name)) == 1, f"pods of {name}: {hub.pods(ns, name)}"
        assert len(hub.pvcs(ns, name)) == 1, f"PVCs of {name}"
    for name in deleted:
        assert hub.pods(ns, name) == [], f"pod of deleted {name} left"
    assert stack_rows(postgres_backend, ns) == sorted(stack_name(ns, n) for n in kept)
    wait_for("no stack lock row left", lambda: not lock_rows(postgres_backend), timeout=60,
             describe=lambda: str(lock_rows(postgres_backend)))

    # The 4 live replicas share the shards: all held, each holds some.
    wait_for(f"4 replicas holding all {SHARDS} shards, each some", lambda: (
        sum(held := [shards_held(op) for op in ops.values()]) == SHARDS
        and min(held) >= 1), timeout=90,
        describe=lambda: json.dumps({rid: shards_held(op) for rid, op in ops.items()}) + logs())
    # The instance status names the replica of its last operation, one of those that ran.
    by_replica: dict[str, int] = {}
    for name in kept:
        replica = hub.instance(ns, name)["status"]["stack"]["lastUpdate"].get("replica")
        assert replica in {"r0", "r1", "r2", "r3", "r4"}, (name, replica)
        by_replica[replica] = by_replica.get(replica, 0) + 1
    print(f"\nlast operation by replica: {by_replica}; kept {len(kept)}, deleted {len(deleted)}")
    assert len(by_replica) >= 2, by_replica
