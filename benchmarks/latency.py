"""Instance created -> pod object exists, through the operator and directly (the floor).

For each round: the floor first (the seed's PVC and pod, rendered exactly as the operator would,
created with the kubernetes client in a namespace the operator does not watch), then one
JupyterNotebookInstance; each waits for its pod to appear on the benchmark's own pod watch. The
instance round also waits until the operator's `up` has finished and the operator is idle, so
rounds never overlap. The first `--warmup` rounds are left out of the figures (cold caches).

Where the operator's time goes, per instance:
- `before_engine_s`: from the create call to the operator's `up starting` log line (watch
  delivery, queue, template fetch, render, hash, finalizer and status patches): our code.
- `engine_until_pod_s`: from `up starting` to the pod seen: the engine operation (worker
  subprocess + Pulumi CLI/engine + Kubernetes provider) up to the pod's creation. It is split
  at the start of the `pulumi up` CLI process (seen in /proc, 10 ms resolution):
  `worker_until_cli_s` (Python worker start, imports, workspace and stack selection, which
  run short CLI commands of their own) and `cli_until_pod_s` (the Pulumi engine proper:
  CLI start, plugin load, program run, provider creating the PVC then the pod).
- `engine_operation_s` (from /metrics): the whole `up`, which continues after the pod exists
  (checkpoint, outputs); `pulumi_up_s` (from the Provisioned Event) is the Automation API
  `stack.up()` call inside the worker, `worker_overhead_s` the rest (process start, imports,
  workspace).

Usage: .venv/bin/python benchmarks/latency.py [--count 10] [--warmup 1] [--workers 4]
"""

from __future__ import annotations

import re
import time
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator, parse_log_ts
from benchlib.summaries import emit, ratio, rounded, summary
from benchlib.waiting import PodWatch, wait_until

from jupyternetes.crd.naming import object_name

_UP_SUCCEEDED = re.compile(r"up succeeded in ([0-9.]+)s")


def up_started_at(op: BenchOperator, key: str, after: float) -> float | None:
    """Time of the operator's `instance KEY: up starting` log line (first one after `after`)."""
    for record in op.log_records():
        if record.get("msg") == f"instance {key}: up starting":
            ts = parse_log_ts(record.get("ts", ""))
            if ts is not None and ts >= after - 0.01:
                return ts
    return None


def pulumi_up_seconds(bench: Bench, name: str) -> float | None:
    """`stack.up()` time inside the worker, from the Provisioned Event (0.1 s resolution)."""
    for event in bench.instance_events(name):
        if event.get("reason") == "Provisioned":
            match = _UP_SUCCEEDED.search(event.get("message") or "")
            if match:
                return float(match.group(1))
    return None


def floor_round(bench: Bench, watch: PodWatch, name: str, timeout: float) -> float:
    ns = bench.floor_ns
    assert ns is not None
    bench.provide_volume(ns, name)
    started = time.time()
    seen = watch.wait_for(bench.create_directly(name, ns), timeout)
    return max(seen.values()) - started


def operator_round(bench: Bench, op: BenchOperator, watch: PodWatch, name: str,
                   timeout: float) -> dict[str, Any]:
    ns = bench.namespace
    key = f"{ns}/{name}"
    bench.provide_volume(ns, name)
    before = op.metrics()
    started = time.time()
    bench.create_instance(name)
    pod_key = f"{ns}/{object_name(name, 'notebook')}"
    pod_seen = watch.wait_for([pod_key], timeout)[pod_key]
    wait_until(f"the operator's up of {key} to finish",
               lambda: op.metrics().engine_count("up") > before.engine_count("up"), timeout,
               interval=0.1, describe=op.log_tail)
    after = op.wait_idle(quiet=1.0)
    latency = pod_seen - started
    up_at = up_started_at(op, key, started)
    engine_ops = after.engine_count("up") - before.engine_count("up")
    engine_wall = after.engine_seconds("up") - before.engine_seconds("up")
    pulumi_up = pulumi_up_seconds(bench, name)
    # The `pulumi up` CLI process of this operation, seen in /proc by the sampler.
    cli_starts = (op.sampler.started("pulumi_cli", "up", after=up_at)
                  if op.sampler is not None and up_at is not None else [])
    cli_at = cli_starts[0] if cli_starts else None
    row: dict[str, Any] = {
        "instance": name,
        "latency_s": latency,
        "before_engine_s": None if up_at is None else up_at - started,
        "engine_until_pod_s": None if up_at is None else pod_seen - up_at,
        "worker_until_cli_s": None if cli_at is None or up_at is None else cli_at - up_at,
        "cli_until_pod_s": None if cli_at is None else pod_seen - cli_at,
        "engine_operations": engine_ops,
        "engine_operation_s": engine_wall,
        "pulumi_up_s": pulumi_up,
        "worker_overhead_s": None if pulumi_up is None else engine_wall - pulumi_up,
    }
    if engine_ops != 1:
        log(f"note: {key} took {engine_ops:g} engine operations")
    return row


def column(rows: list[dict[str, Any]], name: str) -> list[float]:
    return [r[name] for r in rows if r.get(name) is not None]


def mean_share(rows: list[dict[str, Any]], name: str) -> float | None:
    """Mean over rounds of (part / latency)."""
    shares = [r[name] / r["latency_s"] for r in rows
              if r.get(name) is not None and r["latency_s"] > 0]
    return sum(shares) / len(shares) if shares else None


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 10, "measured rounds")
    parser.add_argument("--warmup", type=int, default=1,
                        help="rounds run first and left out of the figures (default 1)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for one pod or one up (default 300)")
    args = parser.parse_args(argv)

    rows: list[dict[str, Any]] = []
    floors: list[float] = []
    with Bench("latency", floor_namespace=True) as bench:
        assert bench.floor_ns is not None
        op = bench.start_operator(workers=args.workers, sample_interval=args.sample_interval,
                                  extra=args.operator_arg)
        watch = PodWatch(bench.api, [bench.namespace, bench.floor_ns]).start()
        try:
            for index in range(args.warmup + args.count):
                name = f"lat-{index:03d}"
                floor = floor_round(bench, watch, f"floor-{index:03d}", args.timeout)
                row = operator_round(bench, op, watch, name, args.timeout)
                warm = index < args.warmup
                log(f"{'warm-up ' if warm else ''}round {index}: floor {floor * 1000:.0f} ms, "
                    f"operator {row['latency_s']:.2f} s (engine op "
                    f"{row['engine_operation_s']:.2f} s)")
                if not warm:
                    floors.append(floor)
                    rows.append(row)
        finally:
            watch.stop()
        sampler = op.sampler.full_report() if op.sampler else {}

    latencies = column(rows, "latency_s")
    op_summary = summary(latencies)
    floor_summary = summary(floors, 4)
    engine_share = mean_share(rows, "engine_until_pod_s")
    emit({
        **bench.result("latency",
                       "JupyterNotebookInstance created -> its pod object exists (own pod watch)"),
        "rounds": args.count,
        "warmup_rounds": args.warmup,
        "operator_workers": args.workers,
        "engine_up_operations": len(rows) + args.warmup,
        "operator_s": op_summary,
        "floor_s": floor_summary,
        "ratio_p50": ratio(op_summary.get("p50"), floor_summary.get("p50")),
        "ratio_p95": ratio(op_summary.get("p95"), floor_summary.get("p95")),
        "breakdown_s": {
            "before_engine": summary(column(rows, "before_engine_s")),
            "engine_until_pod": summary(column(rows, "engine_until_pod_s")),
            "engine_until_pod.worker_until_pulumi_up_cli": summary(
                column(rows, "worker_until_cli_s")),
            "engine_until_pod.pulumi_up_cli_until_pod": summary(column(rows, "cli_until_pod_s")),
            "engine_operation_whole_up": summary(column(rows, "engine_operation_s")),
            "pulumi_stack_up": summary(column(rows, "pulumi_up_s"), 1),
            "worker_overhead": summary(column(rows, "worker_overhead_s")),
        },
        "share_of_latency": {
            "our_code": None if engine_share is None else rounded(1 - engine_share, 3),
            "inside_engine_operation": rounded(engine_share, 3),
            "inside_engine_operation.worker_until_pulumi_up_cli": rounded(
                mean_share(rows, "worker_until_cli_s"), 3),
            "inside_engine_operation.pulumi_up_cli_until_pod": rounded(
                mean_share(rows, "cli_until_pod_s"), 3),
        },
        "operator_process_tree": sampler,
        "rounds_detail": [{k: rounded(v) if isinstance(v, float) else v for k, v in r.items()}
                          for r in rows],
        "floor_detail_s": [rounded(f, 4) for f in floors],
    })
    return 0


if __name__ == "__main__":
    run_main(main)
