"""Prometheus metrics of the operator, in their own registry (tests get a clean one each)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jupyternetes.engine.masking import OPERATOR_LOG_MASK

# Engine operations take seconds (subprocess + Pulumi engine); reconciles without one take ms.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120,
                     300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "jupyternetes_reconciles", "Reconciles by result", ["result"], registry=r)
        self.reconcile_duration = Histogram(
            "jupyternetes_reconcile_duration_seconds", "Reconcile wall time",
            buckets=_DURATION_BUCKETS, registry=r)
        self.engine_duration = Histogram(
            "jupyternetes_engine_operation_duration_seconds",
            "Pulumi engine operation wall time (up, destroy)", ["operation"],
            buckets=_DURATION_BUCKETS, registry=r)
        self.engine_operations = Counter(
            "jupyternetes_engine_operations", "Pulumi engine operations by result",
            ["operation", "result"], registry=r)
        self.failures = Counter(
            "jupyternetes_reconcile_failures", "Failed reconciles by reason", ["reason"],
            registry=r)
        self.queue_depth = Gauge(
            "jupyternetes_queue_depth", "Instance keys waiting for a worker", registry=r)
        # Debounce evidence: events that may move a template's counts vs. status writes made.
        self.template_status_events = Counter(
            "jupyternetes_template_status_events",
            "Instance and template events that marked a template's counts for re-computation",
            registry=r)
        self.template_status_writes = Counter(
            "jupyternetes_template_status_writes", "Template status (counts) patches",
            registry=r)
        self.in_flight = Gauge(
            "jupyternetes_reconciles_in_flight", "Reconciles being processed", registry=r)
        self.locks_cleared = Counter(
            "jupyternetes_stale_locks_cleared", "Stack lock files removed because their "
            "holder was provably gone (see locks.py)", registry=r)
        self.leading = Gauge(
            "jupyternetes_leader", "1 while this replica holds the operator Lease", registry=r)
        self.shards_held = Gauge(
            "jupyternetes_shards_held", "Shard Leases this replica holds (--shards)",
            registry=r)
        self.shard_takeovers = Counter(
            "jupyternetes_shard_takeovers", "Shards this replica took over from a replica "
            "that stopped renewing their Lease", registry=r)
        # Bounded by the live instances' secrets (masking.MaskingFilter): a rising line while
        # instances come and go would be a leak.
        self.log_mask_values = Gauge(
            "jupyternetes_log_mask_values", "Secret values (each with its base64 form) masked "
            "in the operator's log", registry=r)
        self.log_mask_values.set_function(OPERATOR_LOG_MASK.size)

    def observe_reconcile(self, result: str, seconds: float) -> None:
        self.reconciles.labels(result=result).inc()
        self.reconcile_duration.observe(seconds)

    def observe_engine(self, operation: str, result: str, seconds: float) -> None:
        self.engine_duration.labels(operation=operation).observe(seconds)
        self.engine_operations.labels(operation=operation, result=result).inc()

    def failure(self, reason: str) -> None:
        self.failures.labels(reason=reason).inc()

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
