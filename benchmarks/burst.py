"""Burst: N instances created at once; time until every pod exists; peak memory.

The operator is started and idle; then N instances of the seed template are created from a
small thread pool (all within a fraction of a second). Measured:
- time from the first create call until every instance's pod is seen by our own pod watch
  (and the per-pod latencies), and until every instance's `up` has finished and the operator
  is idle again;
- peak RSS of the operator process and peak summed RSS of its engine processes (stack worker
  subprocesses, the pulumi CLI, the Kubernetes provider plugin), sampling /proc of the
  operator's process tree every `--sample-interval` seconds; plus the kernel's own peak
  (VmHWM) of the operator. Summed RSS counts pages shared between processes (the same
  provider binary mapped by every operation) once per process: an upper bound.

Usage: .venv/bin/python benchmarks/burst.py [--count 50] [--workers 4]
"""

from __future__ import annotations

import time

from benchlib.apiserver import apiserver_requests, delta
from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench, count_states
from benchlib.procs import operator_cpu_split, peak_rss_hwm, tree_cpu_seconds
from benchlib.summaries import emit, mib, rounded, summary
from benchlib.waiting import PodWatch, wait_until

from jupyternetes.crd.naming import object_name


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 50)
    parser.add_argument("--create-threads", type=int, default=16,
                        help="parallel create calls (default 16)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)

    with Bench("burst") as bench:
        names = bench.numbered_instances("burst", args.count)
        op = bench.start_operator(workers=args.workers, sample_interval=args.sample_interval,
                                  extra=args.operator_arg)
        assert op.sampler is not None
        before = op.wait_idle(quiet=1.0)
        cpu_before = tree_cpu_seconds(op.pid)
        split_before = operator_cpu_split(op.pid)
        by_kind_before = op.sampler.cpu_seconds_by_kind()
        requests_before = apiserver_requests(bench)
        watch = PodWatch(bench.api, [bench.namespace]).start()
        try:
            log(f"creating {args.count} instances at once")
            started = time.time()
            bench.create_instances(names, parallel=args.create_threads)
            created = time.time()
            pods = [f"{bench.namespace}/{object_name(n, 'notebook')}" for n in names]
            seen = watch.wait_for(pods, args.timeout)
        finally:
            watch.stop()
        all_pods = max(seen.values())
        log(f"every pod exists after {all_pods - started:.1f}s; waiting for the ups to finish")
        wait_until("every up finished",
                   lambda: op.metrics().engine_count("up") - before.engine_count("up")
                   >= args.count, args.timeout, interval=0.5, describe=op.log_tail)
        ups_done = time.time()
        after = op.wait_idle(quiet=2.0)
        cpu_after = tree_cpu_seconds(op.pid)
        split_after = operator_cpu_split(op.pid)
        requests = delta(requests_before, apiserver_requests(bench))
        cpu_by_kind = op.sampler.cpu_since(by_kind_before, op.sampler.cpu_seconds_by_kind())
        hwm = peak_rss_hwm(op.pid)
        states = count_states(bench.instances())
        tree = op.sampler.full_report()
        engine_ups = after.engine_count("up") - before.engine_count("up")
        engine_up_seconds = after.engine_seconds("up") - before.engine_seconds("up")
        failures = after.value("jupyternetes_engine_operations_total", result="failed") - \
            before.value("jupyternetes_engine_operations_total", result="failed")

    latencies = [seen[p] - started for p in pods]
    emit({
        **bench.result("burst", f"{args.count} instances created at once"),
        "instances": args.count,
        "operator_workers": args.workers,
        "create_calls_s": rounded(created - started),
        "time_until_every_pod_exists_s": rounded(all_pods - started),
        "pod_latency_s": summary(latencies),
        "time_until_every_up_finished_s": rounded(ups_done - started),
        "engine_up_operations": engine_ups,
        "engine_up_failures": failures,
        "engine_up_seconds_mean": rounded(engine_up_seconds / engine_ups if engine_ups else None),
        "throughput_pods_per_minute": rounded(60 * args.count / (all_pods - started), 1),
        "cpu_seconds": {
            # user + system of the operator and every engine process it started (reaped
            # children through cutime/cstime), from before the first create until idle again
            "operator_and_engine": rounded(cpu_after - cpu_before, 2),
            "operator_process": rounded(split_after["operator"] - split_before["operator"], 2),
            "per_instance": rounded((cpu_after - cpu_before) / args.count, 3),
            # The long-lived engine workers' own time (the Python program, hooks) and what
            # their reaped children used (the pulumi CLIs and, through them, the providers).
            "engine_workers_own": rounded(split_after["worker_python"]
                                          - split_before["worker_python"], 2),
            "engine_workers_children": rounded(split_after["cli_and_provider"]
                                               - split_before["cli_and_provider"], 2),
            # Of the children: each CLI/provider at its last sample (a lower bound).
            "sampled_processes_by_kind": cpu_by_kind,
        },
        # Every client's requests in the window (the operator, its engine's CLIs and
        # providers, the benchmark's own creates and pod watch).
        "apiserver_requests": requests,
        "memory": {
            "operator_peak_rss_mib_sampled": tree["peak_operator_rss_mib"],
            "operator_peak_rss_mib_vmhwm": mib(hwm),
            "operator_peak_pss_mib": tree["peak_operator_pss_mib"],
            "engine_peak_rss_sum_mib": tree["peak_engine_rss_sum_mib"],
            "engine_peak_rss_sum_by_kind_mib": tree["peak_engine_rss_by_kind_mib"],
            "engine_peak_pss_sum_mib": tree["peak_engine_pss_sum_mib"],
            "engine_peak_pss_sum_by_kind_mib": tree["peak_engine_pss_by_kind_mib"],
            "engine_peak_processes": tree["peak_engine_processes"],
            "engine_peak_concurrent_workers": tree["peak_concurrent_workers"],
            "engine_processes_seen": tree["engine_processes_seen"],
            "engine_processes_seen_by_command": tree["engine_processes_seen_by_command"],
            "sample_interval_s": tree["sample_interval_s"],
            "samples": tree["samples"],
        },
        "states_after": states,
    })
    return 0


if __name__ == "__main__":
    run_main(main)
