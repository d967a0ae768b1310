"""A burst of N instances with 1 and with R sharded operator replicas, in the same run.

Both phases use the same harness DevCluster, one throw-away PostgreSQL server (the postgres://
backend the replicas share; a fresh database per phase, so both start from an empty state table)
and the same operator flags: `--shards S --replica-id r<i>`, `--workers W` each. A phase starts
its replicas, waits until they hold every shard between them and are idle, measures `--idle`
seconds of idle cost (lease renewals, watches), then creates N instances at once (in a fresh
namespace) and waits until every pod exists, every `up` has finished and every replica is idle.

CPU comes from /proc (user + system, reaped children included, see benchlib.procs.tree_cpu_seconds):
every replica's process tree (operator + stack workers + pulumi CLIs + providers), the
PostgreSQL server's tree (postmaster + backends), the control plane's components (etcd,
kube-apiserver, controller-manager, scheduler, kwok) and the whole machine (/proc/stat), so the
shares say where a burst's CPU goes and how much of the box other work took meanwhile.

Usage: .venv/bin/python benchmarks/replicas.py [--count 100] [--replicas 3] [--shards 32]
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator, count_states
from benchlib.procs import CLOCK_TICKS, tree_cpu_seconds
from benchlib.summaries import emit, rounded, summary
from benchlib.waiting import PodWatch, wait_until

from harness.postgres import PostgresServer
from jupyternetes.crd.naming import object_name

LEASE_FLAGS = ("--leader-election-lease-duration", "15", "--leader-election-renew-deadline",
               "10", "--leader-election-retry-period", "2")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def cpu_snapshot(bench: Bench, ops: dict[str, BenchOperator], pg: PostgresServer
                 ) -> dict[str, float]:
    """CPU seconds so far of each part we can name, and of the machine."""
    snap: dict[str, float] = {"machine": machine_busy_seconds()}
    for rid, op in ops.items():
        snap[f"replica:{rid}"] = tree_cpu_seconds(op.pid) or 0.0
    if pg.proc is not None:
        snap["postgres"] = tree_cpu_seconds(pg.proc.pid) or 0.0
    if bench.cluster is not None:
        for comp in bench.cluster.components:
            if comp.proc is not None:
                snap[comp.name] = tree_cpu_seconds(comp.proc.pid) or 0.0
    return snap


def cpu_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def shards_held(op: BenchOperator) -> float:
    return op.metrics().value("jupyternetes_shards_held")


def phase(bench: Bench, pg: PostgresServer, replicas: int, args: Any) -> dict[str, Any]:
    """One burst with `replicas` sharded operators on a fresh database and namespace."""
    tag = f"r{replicas}"
    bench.namespace = bench._namespace(f"bench-replicas-{tag}-{uuid.uuid4().hex[:6]}")
    env = {**bench.pulumi_env, "PULUMI_BACKEND_URL": pg.create_database(f"bench_{tag}")}
    names = bench.numbered_instances(f"burst-{tag}", args.count)
    ops: dict[str, BenchOperator] = {}
    for index in range(replicas):
        rid = f"{tag}-{index}"
        op = BenchOperator(bench.kubeconfig, env, bench.tmp / f"state-{rid}", bench.pulumi_home,
                           [bench.namespace], bench.tmp / f"operator-{rid}.log",
                           workers=args.workers, resync_seconds=300.0,
                           extra=("--shards", str(args.shards), "--replica-id", rid,
                                  *LEASE_FLAGS),
                           sample_interval=args.sample_interval)
        bench._operators.append(op)  # stopped with the bench, whatever happens
        op.start(timeout=120.0)
        ops[rid] = op
    log(f"{tag}: {replicas} replica(s) started; waiting for all {args.shards} shards held")
    wait_until("every shard held", lambda: sum(shards_held(op) for op in ops.values())
               == args.shards, 120.0, interval=0.5,
               describe=lambda: "\n".join(op.log_tail(20) for op in ops.values()))
    for op in ops.values():
        op.wait_idle(quiet=1.0)
    held = {rid: shards_held(op) for rid, op in ops.items()}

    idle_before = cpu_snapshot(bench, ops, pg)
    time.sleep(args.idle)  # a fixed window of idle cost, not a wait for a condition
    idle = cpu_delta(cpu_snapshot(bench, ops, pg), idle_before)

    before = {rid: op.metrics() for rid, op in ops.items()}
    cpu_before = cpu_snapshot(bench, ops, pg)
    watch = PodWatch(bench.api, [bench.namespace]).start()
    try:
        log(f"{tag}: creating {args.count} instances at once")
        started = time.time()
        bench.create_instances(names, parallel=16)
        pods = [f"{bench.namespace}/{object_name(n, 'notebook')}" for n in names]
        seen = watch.wait_for(pods, args.timeout)
    finally:
        watch.stop()
    all_pods = max(seen.values())
    log(f"{tag}: every pod exists after {all_pods - started:.1f}s")

    def ups_done() -> float:
        return sum(op.metrics().engine_count("up") - before[rid].engine_count("up")
                   for rid, op in ops.items())

    wait_until("every up finished", lambda: ups_done() >= args.count, args.timeout,
               interval=0.5, describe=lambda: "\n".join(op.log_tail(20) for op in ops.values()))
    finished = time.time()
    after = {rid: op.wait_idle(quiet=2.0) for rid, op in ops.items()}
    cpu = cpu_delta(cpu_snapshot(bench, ops, pg), cpu_before)
    states = count_states(bench.instances())
    failures = failure_reasons(ops)
    for op in ops.values():
        op.stop()

    per_replica: dict[str, Any] = {}
    for rid in ops:
        ups = after[rid].engine_count("up") - before[rid].engine_count("up")
        seconds = cpu[f"replica:{rid}"]
        per_replica[rid] = {
            "shards_held": held[rid],
            "ups": ups,
            "cpu_seconds": rounded(seconds, 2),
            "cpu_seconds_per_instance": rounded(seconds / ups if ups else None),
            "engine_up_seconds_mean": rounded(
                (after[rid].engine_seconds("up") - before[rid].engine_seconds("up")) / ups
                if ups else None),
            "failed_operations": after[rid].value("jupyternetes_engine_operations_total",
                                                  result="failed")
            - before[rid].value("jupyternetes_engine_operations_total", result="failed"),
        }
    replicas_cpu = sum(cpu[f"replica:{rid}"] for rid in ops)
    apiserver_cpu = cpu.get("kube-apiserver", 0.0) + cpu.get("etcd", 0.0)
    named = {"replicas (operator + engine)": replicas_cpu,
             "postgres": cpu.get("postgres", 0.0),
             "kube-apiserver": cpu.get("kube-apiserver", 0.0), "etcd": cpu.get("etcd", 0.0),
             "controllers, scheduler, kwok": sum(cpu.get(c, 0.0) for c in (
                 "kube-controller-manager", "kube-scheduler", "kwok"))}
    ours = sum(named.values())
    wall = all_pods - started
    return {
        "replicas": replicas,
        "wall_s": {"every_pod_exists": rounded(wall), "every_up_finished":
                   rounded(finished - started)},
        "throughput_instances_per_minute": rounded(60 * args.count / wall, 1),
        "pod_latency_s": summary([seen[p] - started for p in pods]),
        "per_replica": per_replica,
        "cpu_seconds": {k: rounded(v, 2) for k, v in named.items()},
        "cpu_seconds_per_instance": {k: rounded(v / args.count) for k, v in named.items()},
        "cpu_share_of_named_parts": {k: rounded(v / ours if ours else None)
                                     for k, v in named.items()},
        "apiserver_and_etcd_cpu_seconds_per_instance": rounded(apiserver_cpu / args.count),
        "machine_busy_cpu_seconds": rounded(cpu["machine"], 1),
        "machine_busy_share_not_ours": rounded(1 - ours / cpu["machine"] if cpu["machine"]
                                               else None),
        "idle_cost_cpu_seconds_per_minute": {
            "replicas": rounded(sum(idle[f"replica:{r}"] for r in ops) * 60 / args.idle, 2),
            "kube-apiserver_and_etcd": rounded(
                (idle.get("kube-apiserver", 0.0) + idle.get("etcd", 0.0)) * 60 / args.idle, 2),
            "postgres": rounded(idle.get("postgres", 0.0) * 60 / args.idle, 2)},
        "states_after": states,
        "failed_operation_reasons": failures,
    }


def failure_reasons(ops: dict[str, BenchOperator]) -> dict[str, int]:
    """Distinct reasons of failed engine operations in the replicas' logs, with counts (the
    logs go with the run's temp folder)."""
    reasons: dict[str, int] = {}
    for op in ops.values():
        for record in op.log_records():
            text = str(record.get("msg") or "")
            if " failed (attempt " not in text:
                continue
            reason = text.split("): ", 1)[-1]
            # One entry per kind of failure: names and numbers vary per instance.
            reason = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\b\d+(\.\d+)?s?\b", "#",
                            reason.replace(bench_namespace(op), "NS"))[:240]
            reasons[reason] = reasons.get(reason, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def bench_namespace(op: BenchOperator) -> str:
    args = op.args
    return args[args.index("--namespace") + 1] if "--namespace" in args else "\0"


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 100)
    parser.add_argument("--replicas", type=int, default=3,
                        help="replicas of the second phase (default 3; the first has 1)")
    parser.add_argument("--shards", type=int, default=32, help="--shards (default 32)")
    parser.add_argument("--idle", type=float, default=20.0,
                        help="seconds of idle cost measured before each burst (default 20)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    with Bench("replicas") as bench, PostgresServer() as pg:
        phases = [phase(bench, pg, n, args) for n in (1, args.replicas)]
        result = bench.result("replicas", f"burst of {args.count} instances with 1 and with "
                              f"{args.replicas} sharded replicas (postgres:// backend)")
    one, many = phases
    emit({**result, "instances": args.count, "shards": args.shards,
          "operator_workers_per_replica": args.workers, "phases": phases,
          "wall_ratio_many_over_one": rounded(
              many["wall_s"]["every_pod_exists"] / one["wall_s"]["every_pod_exists"]),
          "replica_cpu_per_instance_ratio_many_over_one": rounded(
              many["cpu_seconds_per_instance"]["replicas (operator + engine)"]
              / one["cpu_seconds_per_instance"]["replicas (operator + engine)"])})
    return 0


if __name__ == "__main__":
    run_main(main)
