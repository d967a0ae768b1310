"""One instance's latency on the file:// backend against the postgres:// backend, in one run.

Same cluster, same machine, same operator flags; only the state backend differs. First the
operator runs on its default file:// backend in one namespace, then (stopped) an operator on a
throw-away PostgreSQL server (jupyternetes/harness/postgres.py, loopback, fsync off: what is
measured is the backend protocol, not the disk) in a fresh namespace, the URL given in
PULUMI_BACKEND_URL. Each round is latency.py's operator round (create -> pod exists, then the
whole `up`); the first `--warmup` rounds of each backend are left out.

Usage: .venv/bin/python benchmarks/backend_latency.py [--count 5] [--warmup 1]
"""

from __future__ import annotations

import uuid
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench
from benchlib.summaries import emit, ratio, summary
from benchlib.waiting import PodWatch
from latency import column, operator_round

from harness.postgres import PostgresServer


def rounds(bench: Bench, backend: str, count: int, warmup: int, workers: int,
           sample_interval: float, timeout: float) -> list[dict[str, Any]]:
    op = bench.start_operator(workers=workers, sample_interval=sample_interval)
    watch = PodWatch(bench.api, [bench.namespace]).start()
    rows: list[dict[str, Any]] = []
    try:
        for index in range(warmup + count):
            row = operator_round(bench, op, watch, f"{backend}-{index:03d}", timeout)
            warm = index < warmup
            log(f"{backend} {'warm-up ' if warm else ''}round {index}: "
                f"{row['latency_s']:.2f} s (engine op {row['engine_operation_s']:.2f} s)")
            if not warm:
                rows.append(row)
    finally:
        watch.stop()
        op.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 5, "measured rounds per backend")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {}
    with Bench("backend") as bench, PostgresServer() as pg:
        file_rows = rounds(bench, "file", args.count, args.warmup, args.workers,
                           args.sample_interval, args.timeout)
        bench.namespace = bench._namespace(f"bench-backend-pg-{uuid.uuid4().hex[:6]}")
        bench.pulumi_env = {**bench.pulumi_env,
                            "PULUMI_BACKEND_URL": pg.create_database("bench")}
        pg_rows = rounds(bench, "postgres", args.count, args.warmup, args.workers,
                         args.sample_interval, args.timeout)
        for name, rows in (("file", file_rows), ("postgres", pg_rows)):
            figures[name] = {"latency_s": summary(column(rows, "latency_s")),
                             "engine_operation_s": summary(column(rows, "engine_operation_s")),
                             "pulumi_up_s": summary(column(rows, "pulumi_up_s"))}
        result = bench.result("backend_latency",
                              "instance created -> pod exists, and the whole up: file:// "
                              "against postgres:// (local PostgreSQL)")
    emit({**result, "rounds": args.count, "warmup_rounds": args.warmup,
          "operator_workers": args.workers, **figures,
          "postgres_over_file_p50": {
              key: ratio(figures["postgres"][key].get("p50"), figures["file"][key].get("p50"))
              for key in ("latency_s", "engine_operation_s")}})
    return 0


if __name__ == "__main__":
    run_main(main)
