"""End to end: several active operator replicas sharing instances through shard Leases
(`--shards`), on one PostgreSQL state backend.

Real apiserver, real PostgreSQL, the real Pulumi engine; the operators are subprocesses started
exactly as an admin would (harness/operator_process.py). What is checked is what exists: the
shard Leases (through each replica's /readyz and /metrics), the cluster's pods and PVCs, the
backend's stacks, lock rows and update history (each update's message names its replica, as
`pulumi stack history` shows it), the instances' status and the operators' logs.
"""

# The fixtures of test_operator.py are imported by name, which pytest needs and ruff flags.
# ruff: noqa: F811

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from harness.operator_process import OperatorProcess
from jupyternetes.coordination.shards import shard_of, shard_of_stack
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine import PROJECT
from tests.e2e.test_ha import REMOVED, managed, readyz
from tests.e2e.test_operator import (  # noqa: F401 (fixtures)
    FAST_BACKOFF,
    Cluster,
    hub,
    provisioned,
    volumes,
    wait_for,
)
from tests.e2e.test_postgres_backend import HISTORY, LOCKS, STACKS, lock_rows, table

pytestmark = pytest.mark.e2e

SHARDS = 12
LEASE = 6.0  # short, so that a takeover is quick to see; renew deadline 4 s, retry period 1 s
TIMINGS = ("--leader-election-lease-duration", f"{LEASE:g}",
           "--leader-election-renew-deadline", "4", "--leader-election-retry-period", "1")
IDS = ("r-a", "r-b", "r-c")
MESSAGE = re.compile(r"^jupyternetes (\w+) by replica (\S+)$")


@pytest.fixture
def sharded(cluster, pulumi_env, tmp_path, hub, postgres_backend, namespace
            ) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: a sharded replica on the test's database, its shard Leases in the test's
    namespace. On teardown: SIGTERM every replica (each must exit 0 after releasing its shards),
    then drop the instances' finalizers (the database goes with the test: no destroy needed)."""
    started: list[OperatorProcess] = []

    def start(replica: str, workers: int = 3) -> OperatorProcess:
        env = {**pulumi_env.env, "PULUMI_BACKEND_URL": postgres_backend}
        op = OperatorProcess(
            cluster.kubeconfig, env, tmp_path / f"state-{replica}", pulumi_env.pulumi_home,
            [namespace], tmp_path / f"operator-{replica}.log", workers=workers,
            resync_seconds=30,
            extra=(*FAST_BACKOFF, *TIMINGS, "--shards", str(SHARDS), "--replica-id", replica,
                   "--expected-replicas", "3", "--leader-election-namespace", namespace))
        started.append(op)
        return op.start()

    yield start
    codes = {}
    for op in started:
        if op.running():
            op.proc.send_signal(15)
    for op in started:
        if op.proc is not None and op.proc.returncode is None:
            codes[op.log_path.name] = op.proc.wait(90)
    for item in hub.custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                         INSTANCE_PLURAL)["items"]:
        hub.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, INSTANCE_PLURAL, item["metadata"]["name"],
            {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json")
    assert all(code == 0 for code in codes.values()), codes


# ---- helpers ------------------------------------------------------------------------------------


def held(op: OperatorProcess) -> list[int] | None:
    doc = readyz(op)
    return doc.get("shards") if doc else None


def split_fairly(ops: list[OperatorProcess]) -> dict[str, list[int]] | None:
    """replica -> its shards, once every shard is held by exactly one of `ops` and the shares
    differ by at most one."""
    docs = [readyz(op) for op in ops]
    if not all(docs):
        return None
    by_replica = {d["replica"]: d["shards"] for d in docs}  # type: ignore[index]
    every = sorted(s for shards in by_replica.values() for s in shards)
    sizes = [len(s) for s in by_replica.values()]
    if every != list(range(SHARDS)) or max(sizes) - min(sizes) > 1:
        return None
    return by_replica


def history(url: str) -> dict[str, list[dict]]:
    """stack -> its update records (`pulumi stack history`'s data), oldest first."""
    found: dict[str, list[dict]] = {}
    for key, blob in table(url).items():
        if key.startswith(HISTORY) and key.endswith(".history.json"):
            stack = key[len(HISTORY):].split("/", 1)[0]
            found.setdefault(stack, []).append(json.loads(blob))
    for records in found.values():
        records.sort(key=lambda r: r["startTime"])
    return found


def replica_of(record: dict) -> str:
    match = MESSAGE.match(record.get("message") or "")
    assert match, f"update message does not name its replica: {record.get('message')!r}"
    return match.group(2)


def no_overlap(records: list[dict]) -> None:
    """One operation at a time on a stack: each update ends before the next one starts."""
    for before, after in itertools.pairwise(records):
        assert before["endTime"] <= after["startTime"], (before, after)


def lock_holders(url: str) -> dict[str, tuple[int, str]]:
    """lock row key -> (pid, hostname) of the CLI holding it."""
    rows = table(url)
    found = {}
    for key in sorted(k for k in rows if k.startswith(LOCKS) and k.endswith(".json")):
        lock = json.loads(rows[key])
        found[key] = (int(lock["pid"]), lock["hostname"])
    return found


def no_pending_operations(url: str, names: list[str], ns: str) -> None:
    rows = table(url)
    for name in names:
        checkpoint = json.loads(rows[f"{STACKS}{stack_name(ns, name)}.json"])
        latest = checkpoint["checkpoint"]["latest"]
        assert not latest.get("pending_operations"), (name, latest["pending_operations"])
        types = [r["type"] for r in latest["resources"]]
        assert types.count("kubernetes:core/v1:Pod") == 1, (name, types)


def nothing_duplicated(hub: Cluster, ns: str, names: list[str], url: str) -> None:
    """One pod and one PVC per instance, nothing without its instance, one stack each."""
    assert managed(hub, ns, "pods") == sorted(f"{n}-notebook" for n in names)
    assert managed(hub, ns, "pvcs") == sorted(f"{n}-workspace" for n in names)
    stacks = sorted(k[len(STACKS):-len(".json")] for k in table(url)
                    if k.startswith(STACKS) and k.endswith(".json") and "/" not in k[len(STACKS):])
    assert stacks == sorted(stack_name(ns, n) for n in names)


def cli_history(env: dict, url: str, stack: str) -> list[dict]:
    """`pulumi stack history` of one stack, as an admin would read it."""
    done = subprocess.run(
        ["pulumi", "stack", "history", "--json", "--show-secrets=false", "--stack",
         f"organization/{PROJECT}/{stack}"],
        env={**env, "PULUMI_BACKEND_URL": url}, capture_output=True, text=True, timeout=120,
        cwd="/")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---- the Must-show list -----------------------------------------------------------------------


def test_three_replicas_sixty_instances_one_writer_per_stack(
        hub, namespace, volumes, sharded, postgres_backend, pulumi_env):
    ns, url = namespace, postgres_backend
    names = [f"sh-{i:02d}" for i in range(60)]
    for name in names:
        volumes.provide(ns, name)
    ops = [sharded(replica) for replica in IDS]
    split = wait_for("12 shards split 4/4/4", lambda: split_fairly(ops), timeout=60,
                     describe=lambda: "\n".join(op.log_tail(20) for op in ops))
    assert sorted(len(s) for s in split.values()) == [4, 4, 4], split
    owner = {shard: replica for replica, shards in split.items() for shard in shards}
    print(f"\nshards: {split}")

    started = time.monotonic()
    for name in names:
        hub.create_instance(ns, name)
    for name in names:
        wait_for(f"{name} Completed", provisioned(hub, ns, name), timeout=300,
                 describe=lambda name=name: hub.describe(ns, name) + "\n".join(
                     op.log_tail(15) for op in ops))
    print(f"60 instances Completed {time.monotonic() - started:.0f}s after the burst")

    # The split held during the burst, and nobody took anything over.
    assert split_fairly(ops) == split
    for op, replica in zip(ops, IDS, strict=True):
        metrics = op.metrics()
        assert metrics.value("jupyternetes_shards_held") == len(split[replica])
        assert metrics.value("jupyternetes_shard_takeovers_total") == 0
    per_replica = Counter(owner[shard_of(ns, n, SHARDS)] for n in names)
    print(f"instances per replica: {dict(per_replica)}")

    # Each instance was served by its shard's holder only: its status names that replica, and
    # only that replica's log mentions reconciling it.
    for name in names:
        replica = owner[shard_of(ns, name, SHARDS)]
        assert hub.instance(ns, name)["status"]["stack"]["lastUpdate"]["replica"] == replica
        for op, other in zip(ops, IDS, strict=True):
            mentioned = f"instance {ns}/{name}: " in op.log_text()
            assert mentioned == (other == replica), (name, other, replica)
    # Every update of every stack by that one replica, one at a time (the stack history).
    records = history(url)
    assert sorted(records) == sorted(stack_name(ns, n) for n in names)
    for stack, updates in records.items():
        assert {replica_of(u) for u in updates} == {owner[shard_of_stack(stack, SHARDS)]}, \
            (stack, updates)
        no_overlap(updates)
    # The same as an admin sees it with the CLI.
    stack = stack_name(ns, names[0])
    messages = [u["message"] for u in cli_history(pulumi_env.env, url, stack)]
    assert messages and all(m == f"jupyternetes up by replica "
                            f"{owner[shard_of(ns, names[0], SHARDS)]}" for m in messages)

    nothing_duplicated(hub, ns, names, url)
    assert lock_rows(url) == []
    no_pending_operations(url, names, ns)

    # SIGTERM of one replica: it releases its shards, the others take them at once (no
    # takeover: nothing lapsed) and the work stays where it is.
    stopped = time.monotonic()
    assert ops[2].terminate() == 0, ops[2].log_tail()
    after = wait_for("the two others holding all 12 shards", lambda: split_fairly(ops[:2]),
                     timeout=LEASE + 10, describe=lambda: ops[0].log_tail(20))
    print(f"after SIGTERM of {IDS[2]}: {after} in {time.monotonic() - stopped:.1f}s")
    assert sorted(len(s) for s in after.values()) == [6, 6]
    assert "released shards" in ops[2].log_text()
    for op in ops[:2]:
        assert op.metrics().value("jupyternetes_shard_takeovers_total") == 0


def test_sigkill_of_one_replica_during_a_burst_its_shards_are_taken_over(
        hub, namespace, volumes, sharded, postgres_backend):
    ns, url = namespace, postgres_backend
    names = [f"kill-{i:02d}" for i in range(24)]
    for name in names:
        volumes.provide(ns, name)
    ops = [sharded(replica, workers=2) for replica in IDS]
    split = wait_for("12 shards split 4/4/4", lambda: split_fairly(ops), timeout=60,
                     describe=lambda: "\n".join(op.log_tail(20) for op in ops))
    replica_by_pid = {op.pid: readyz(op)["replica"] for op in ops}
    for name in names:
        hub.create_instance(ns, name)

    first_seen: dict[tuple[str, int], float] = {}
    killed: set[int] = set()

    def victim() -> OperatorProcess | None:
        """A replica with an update in flight, SIGKILLed at once when found: a lock row held by
        a process of its tree for half a second at least (an update's lock, not a short
        command's that is gone at once). Killed here, with no round trip between seeing the
        lock and the kill, so that the update cannot finish in between."""
        holders = lock_holders(url)
        now = time.monotonic()
        for op in ops:
            tree = set(op.tree())
            for key, (pid, _) in holders.items():
                if pid in tree and now - first_seen.setdefault((key, pid), now) >= 0.5:
                    killed.update(op.kill_tree())
                    return op
        return None

    dead = wait_for("an update holding its lock row", victim, timeout=120)
    killed_at, killed_wall = time.monotonic(), time.time()
    dead_id = replica_by_pid[dead.pid]
    dead_shards = split[dead_id]
    left = {key: holder for key, holder in lock_holders(url).items() if holder[0] in killed}
    print(f"\nSIGKILL of {dead_id} (shards {dead_shards}, {len(killed)} processes) with "
          f"{len(left)} lock row(s) held")
    assert left, "the kill must leave a lock row of the dead replica for its successor"
    survivors = [op for op in ops if op is not dead]

    after = wait_for("the survivors holding all 12 shards", lambda: split_fairly(survivors),
                     timeout=LEASE + 30,
                     describe=lambda: "\n".join(op.log_tail(20) for op in survivors))
    takeover = time.monotonic() - killed_at
    print(f"shards taken over {takeover:.1f}s after the kill (lease {LEASE:g}s): {after}")
    assert takeover <= LEASE + 8
    assert sorted(len(s) for s in after.values()) == [6, 6]
    assert sum(op.metrics().value("jupyternetes_shard_takeovers_total")
               for op in survivors) == len(dead_shards)

    started = time.monotonic()
    for name in names:
        wait_for(f"{name} Completed", provisioned(hub, ns, name), timeout=240,
                 describe=lambda name=name: hub.describe(ns, name) + "\n".join(
                     op.log_tail(15) for op in survivors))
    print(f"all {len(names)} Completed {time.monotonic() - started:.0f}s after the takeover")
    nothing_duplicated(hub, ns, names, url)
    wait_for("no lock row left", lambda: not lock_rows(url), timeout=60,
             describe=lambda: str(lock_rows(url)))
    no_pending_operations(url, names, ns)

    # The dead replica's locks were removed by the replicas that took its shards over, and
    # only those: each removed lock's holder was a killed process of this host.
    owner = {shard: replica for replica, shards in after.items() for shard in shards}
    removed: dict[str, str] = {}
    for op in survivors:
        replica = readyz(op)["replica"]
        for line in op.log_text().splitlines():
            if (m := REMOVED.search(line)):
                lock, pid, host, reason = m.groups()
                assert host == socket.gethostname() and int(pid) in killed, line
                assert "is gone" in reason, line
                stack = lock.split("/", 1)[0]
                assert owner[shard_of_stack(stack, SHARDS)] == replica, (line, owner)
                removed[lock] = replica
    assert set(removed) >= {key[len(LOCKS):] for key in left}, (removed, left)

    # One writer per stack at a time: no two updates of a stack overlap; the dead replica's
    # updates all ended before the kill, the survivors' on its shards began after it.
    for stack, updates in history(url).items():
        no_overlap(updates)
        shard = shard_of_stack(stack, SHARDS)
        for update in updates:
            replica = replica_of(update)
            if replica == dead_id:
                assert update["endTime"] <= killed_wall + 1, (stack, update)
            elif shard in dead_shards:
                assert update["startTime"] >= killed_wall - 1, (stack, update)
                assert replica == owner[shard], (stack, update)
    for name in names:
        replica = hub.instance(ns, name)["status"]["stack"]["lastUpdate"]["replica"]
        assert replica in (dead_id, owner[shard_of(ns, name, SHARDS)]), (name, replica)
