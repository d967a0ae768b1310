"""CPU of one server's first `up`, one at a time, split by process; and the same two objects
created directly (the baseline a spawner that creates its pod itself, like KubeSpawner, costs).

Each round (after `--warmup` rounds left out of the figures): the baseline first (the seed's
PVC and pod, rendered exactly as the operator would, created with the kubernetes client in a
namespace the operator does not watch), then one JupyterNotebookInstance, waited for until its
`up` has finished and the operator is idle again. CPU-seconds per round, from /proc:
- `operator`: the operator process itself (watch, queue, reconcile, create-ahead, status, Events);
- `worker_python`: the engine worker's own time (Automation API, the inline program, the create
  guard's reads);
- `cli_and_provider`: what the worker's reaped children used: the `pulumi up` CLI and, reaped by
  it, the Kubernetes provider plugin; of these, `sampled` gives each kind's CPU at its last
  sample (every `--sample-interval` s: a lower bound per kind);
- `kube-apiserver`, `etcd`: in the same window (the benchmark's own create and waits included,
  in both rounds).
Then the idle operator tree's CPU over a window as long as a round (what every round includes
just by running). No timing assertions.

The floor this shows: the `pulumi up` CLI and the provider are two processes per `up` that the
architecture requires (one Pulumi stack per server, the real CLI and provider). Their CPU alone,
plus the apiserver's, against a spawner's whole control side, is the least the CPU ratio to
KubeSpawner can be (kubespawner_compare.py measures KubeSpawner itself).

Usage: .venv/bin/python benchmarks/up_cpu.py [--count 8] [--warmup 2] [--sample-interval 0.02]
"""

from __future__ import annotations

import time
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator
from benchlib.procs import operator_cpu_split, tree_cpu_seconds
from benchlib.summaries import emit, ratio, rounded, summary
from benchlib.waiting import PodWatch, wait_until

from jupyternetes.crd.naming import object_name

PARTS = ("operator", "worker_python", "cli_and_provider", "kube-apiserver", "etcd")


class Meter:
    """CPU-seconds so far of the operator's parts and of the control plane's components."""

    def __init__(self, bench: Bench, op: BenchOperator) -> None:
        assert bench.cluster is not None, "needs the harness DevCluster (its apiserver's /proc)"
        self.op = op
        self.components = {c.name: c.proc.pid for c in bench.cluster.components
                           if c.name in ("kube-apiserver", "etcd") and c.proc is not None}

    def now(self) -> dict[str, float]:
        out = operator_cpu_split(self.op.pid)
        out["tree"] = tree_cpu_seconds(self.op.pid) or 0.0
        for name, pid in self.components.items():
            out[name] = tree_cpu_seconds(pid) or 0.0
        return out

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before.get(k, 0.0) for k in after}


def baseline_round(bench: Bench, meter: Meter, watch: PodWatch, name: str,
                   timeout: float) -> dict[str, float]:
    ns = bench.floor_ns
    assert ns is not None
    bench.provide_volume(ns, name)
    before = meter.now()
    watch.wait_for(bench.create_directly(name, ns), timeout)
    time.sleep(1.0)  # the same settling time as the operator round's idle wait
    return Meter.spent(before, meter.now())


def operator_round(bench: Bench, op: BenchOperator, meter: Meter, watch: PodWatch, name: str,
                   timeout: float) -> dict[str, Any]:
    ns = bench.namespace
    bench.provide_volume(ns, name)
    before_metrics = op.metrics()
    assert op.sampler is not None
    sampled_before = op.sampler.cpu_seconds_by_kind()
    before = meter.now()
    started = time.time()
    bench.create_instance(name)
    watch.wait_for([f"{ns}/{object_name(name, 'notebook')}"], timeout)
    wait_until(f"the operator's up of {ns}/{name}",
               lambda: op.metrics().engine_count("up") > before_metrics.engine_count("up"),
               timeout, interval=0.1, describe=op.log_tail)
    op.wait_idle(quiet=1.0)
    spent = Meter.spent(before, meter.now())
    sampled = {k: v for k, v in op.sampler.cpu_since(
        sampled_before, op.sampler.cpu_seconds_by_kind()).items() if k != "worker"}
    return {**spent, "wall_s": time.time() - started, "sampled": sampled}


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 8)
    parser.add_argument("--warmup", type=int, default=2,
                        help="rounds left out of the figures (worker start, first stack init)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.set_defaults(sample_interval=0.02)
    args = parser.parse_args(argv)

    rounds: list[dict[str, Any]] = []
    baselines: list[dict[str, float]] = []
    with Bench("up-cpu", floor_namespace=True) as bench:
        assert bench.floor_ns is not None
        op = bench.start_operator(workers=args.workers, sample_interval=args.sample_interval,
                                  extra=args.operator_arg)
        op.wait_idle(quiet=1.0)
        meter = Meter(bench, op)
        watch = PodWatch(bench.api, [bench.namespace, bench.floor_ns]).start()
        try:
            for index in range(args.warmup + args.count):
                warm = index < args.warmup
                base = baseline_round(bench, meter, watch, f"base-{index:03d}", args.timeout)
                row = operator_round(bench, op, meter, watch, f"up-{index:03d}", args.timeout)
                log(f"{'warm-up ' if warm else ''}round {index}: operator tree "
                    f"{row['tree']:.2f} s (cli+provider {row['cli_and_provider']:.2f}, worker "
                    f"{row['worker_python']:.2f}, operator {row['operator']:.2f}), apiserver "
                    f"{row['kube-apiserver']:.2f} s; baseline apiserver "
                    f"{base['kube-apiserver']:.2f} s")
                if not warm:
                    rounds.append(row)
                    baselines.append(base)
        finally:
            watch.stop()
        window = sum(r["wall_s"] for r in rounds) / max(1, len(rounds))
        before = meter.now()
        time.sleep(window)
        idle = Meter.spent(before, meter.now())

    def column(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [r[key] for r in rows if key in r]

    per_up = {part: summary(column(rounds, part), 3) for part in (*PARTS, "tree")}
    sampled_kinds = sorted({k for r in rounds for k in r["sampled"]})
    floor = [r["cli_and_provider"] + r["kube-apiserver"] for r in rounds]
    emit({
        **bench.result("up_cpu", f"{args.count} first ups one at a time (after {args.warmup} "
                       "warm-up rounds), CPU by process; baseline: the same PVC and pod created "
                       "directly"),
        "rounds": len(rounds),
        "round_wall_s": summary(column(rounds, "wall_s"), 3),
        "cpu_per_up_s": per_up,
        "cpu_per_up_sampled_lower_bound_s": {
            kind: summary([r["sampled"].get(kind, 0.0) for r in rounds], 3)
            for kind in sampled_kinds},
        "baseline_direct_create_cpu_s": {
            part: summary(column(baselines, part), 3) for part in ("kube-apiserver", "etcd")},
        "apiserver_ratio_p50": ratio(per_up["kube-apiserver"].get("p50"),
                                     summary(column(baselines, "kube-apiserver"), 3).get("p50")),
        # What the architecture's two processes per `up` plus the apiserver cost, whatever
        # the operator's own code does.
        "cli_provider_and_apiserver_s": summary(floor, 3),
        "idle_operator_tree_cpu_s": {"window_s": rounded(window, 2),
                                     "cpu_s": rounded(idle["tree"], 3)},
        "sample_interval_s": args.sample_interval,
    })
    return 0


if __name__ == "__main__":
    run_main(main)
