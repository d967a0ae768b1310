"""No-op resync of N unchanged instances: engine invocations (must be 0) and wall time.

N instances of the seed template are created and provisioned (not measured), the operator is
left to go idle, and then two kinds of resync pass are measured, each with nothing to change:

1. `periodic`: the operator runs with a short `--resync-seconds`; the next resync re-delivers
   every cached instance. The pass starts when the reconciles counter first moves (polled every
   `--poll` seconds) and ends when it has advanced by N.
2. `restart`: the operator is stopped (SIGTERM) and a new one started on the same state; its
   first list delivers every instance (plus the pod watch's list re-queues them). Timed from
   the spawn of the new process and from its first reconcile, until N reconciles are done.

In both, engine invocations are counted twice: by the operator's own counter
(`jupyternetes_engine_operations_total`) and, independently, by the engine processes (worker,
pulumi CLI, provider) that appeared under the operator in /proc during the pass.

Usage: .venv/bin/python benchmarks/noop_resync.py [--count 100] [--workers 4]
"""

from __future__ import annotations

import time
from typing import Any

from benchlib.cli import BenchError, arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator, count_states
from benchlib.summaries import delta, emit, rounded
from benchlib.waiting import wait_until

from harness.operator_process import MetricsSnapshot


def provision(bench: Bench, op: BenchOperator, names: list[str], timeout: float) -> dict:
    started = time.monotonic()
    bench.create_instances(names)

    def done() -> bool:
        counts = count_states(bench.instances())
        finished = counts.get("Completed", 0) + counts.get("Failed", 0)
        log(f"provisioning: {counts}")
        return finished >= len(names)

    wait_until(f"{len(names)} instances Completed", done, timeout, interval=5.0,
               describe=op.log_tail)
    counts = count_states(bench.instances())
    seconds = time.monotonic() - started
    op.wait_idle(quiet=3.0)
    if counts.get("Completed", 0) != len(names):
        log(f"warning: not every instance is Completed: {counts}")
    return {"seconds": rounded(seconds, 1), "states": counts}


def engine_processes_since(op: BenchOperator, since: float) -> int:
    assert op.sampler is not None
    return sum(len(op.sampler.started(kind, after=since))
               for kind in ("worker", "pulumi_cli", "provider", "other"))


def pass_report(op: BenchOperator, before: MetricsSnapshot, after: MetricsSnapshot,
                watch_from: float) -> dict[str, Any]:
    return {
        "engine_invocations": after.engine_operations - before.engine_operations,
        "engine_processes_seen": engine_processes_since(op, watch_from),
        "reconciles": after.reconciles - before.reconciles,
        "reconciles_by_result": delta(
            after.by_label("jupyternetes_reconciles_total", "result"),
            before.by_label("jupyternetes_reconciles_total", "result")),
        "reconcile_time_sum_s": rounded(after.reconcile_seconds - before.reconcile_seconds),
    }


def periodic_pass(op: BenchOperator, count: int, resync: float, poll: float) -> dict[str, Any]:
    """Wait for the next periodic resync and time it."""
    before = op.wait_idle(quiet=1.0)
    watch_from = time.time()
    base = before.reconciles
    wait_until("the next periodic resync", lambda: op.metrics().reconciles > base,
                       resync * 2 + 30, interval=poll)
    first_at = time.monotonic()
    wait_until(f"{count} reconciles of the resync pass",
               lambda: op.metrics().reconciles >= base + count, 600, interval=poll)
    done_at = time.monotonic()
    after = op.wait_idle(quiet=1.0)
    report = pass_report(op, before, after, watch_from)
    report.update({"wall_s": rounded(done_at - first_at), "wall_resolution_s": poll})
    return report


def restart_pass(bench: Bench, op: BenchOperator, count: int, workers: int, poll: float,
                 sample_interval: float) -> tuple[BenchOperator, dict[str, Any]]:
    """Stop the operator, start a new one on the same state, time its first full pass."""
    op.stop()
    fresh = bench.start_operator(workers=workers, resync_seconds=0,
                                 sample_interval=sample_interval)
    first_at: float | None = None
    while True:
        snap = fresh.metrics()
        now = time.time()
        if first_at is None and snap.reconciles > 0:
            first_at = now
        if snap.reconciles >= count:
            done_at = now
            break
        if now - fresh.spawned_at > 600:
            raise BenchError(f"the restarted operator did only {snap.reconciles:g} of {count} "
                             f"reconciles in 600s\n{fresh.log_tail()}")
        time.sleep(poll)
    after = fresh.wait_idle(quiet=2.0)
    report = pass_report(fresh, MetricsSnapshot(""), after, fresh.spawned_at)
    report.update({
        "wall_from_spawn_s": rounded(done_at - fresh.spawned_at),
        "spawn_until_healthy_s": rounded(fresh.healthy_at - fresh.spawned_at),
        "wall_from_first_reconcile_s": rounded(done_at - (first_at or done_at)),
        "wall_resolution_s": poll,
        "stale_lock_cleanup_lines": sum(1 for r in fresh.log_records()
                                        if "stale" in str(r.get("msg", ""))),
    })
    return fresh, report


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 100)
    parser.add_argument("--resync-seconds", type=float, default=20.0,
                        help="operator --resync-seconds for the periodic pass (default 20)")
    parser.add_argument("--poll", type=float, default=0.02,
                        help="/metrics polling interval while timing a pass (default 0.02)")
    parser.add_argument("--provision-timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)

    with Bench("noop") as bench:
        names = bench.numbered_instances("noop", args.count)
        op = bench.start_operator(workers=args.workers, resync_seconds=args.resync_seconds,
                                  sample_interval=args.sample_interval)
        log(f"creating and provisioning {args.count} instances")
        provisioning = provision(bench, op, names, args.provision_timeout)
        provisioning["engine_operations"] = op.metrics().engine_operations
        log(f"provisioned in {provisioning['seconds']}s; waiting for a periodic resync")
        periodic = periodic_pass(op, args.count, args.resync_seconds, args.poll)
        log(f"periodic resync: {periodic}")
        log("restarting the operator")
        op, restart = restart_pass(bench, op, args.count, args.workers, args.poll,
                                   args.sample_interval)
        log(f"restart: {restart}")
        states_after = count_states(bench.instances())

    emit({
        **bench.result("noop_resync", f"resync of {args.count} unchanged, Completed instances"),
        "instances": args.count,
        "operator_workers": args.workers,
        "provisioning_not_measured": provisioning,
        "periodic_resync": {"resync_seconds": args.resync_seconds, **periodic},
        "restart_relist": restart,
        "states_after": states_after,
    })
    return 0


if __name__ == "__main__":
    run_main(main)
