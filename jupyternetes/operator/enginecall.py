"""One engine operation as the reconciler runs it: timed, logged, counted, and never raising.

An engine that raises instead of returning a failed result is still a failure the admin must
see on the instance, not only in the operator's log: the exception becomes a failed result.
A `KubeError` is the apiserver's, not the engine's: it propagates (the queue retries the key).
The log lines keep the reconciler's logger name, which log filters and readers know.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.kubeerrors import KubeError
from jupyternetes.operator.metrics import Metrics
from jupyternetes.operator.status import FAILED, summary_text

log = logging.getLogger("jupyternetes.operator.reconcile")


@dataclass
class RaisedResult:
    """The failed result of an engine call that raised."""

    operation: str
    message: str
    result: str = FAILED
    started_at: str | None = None
    finished_at: str | None = None
    change_summary: dict[str, int] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    engine_seconds: float = 0.0


def run(operation: str, call: Callable[[], Any], key: str, metrics: Metrics | None) -> Any:
    """`call()`'s result (an OperationResult-like object), or a RaisedResult."""
    started = time.monotonic()
    log.info("instance %s: %s starting", key, operation, extra={"instance": key})
    try:
        result = call()
    except KubeError:
        raise
    except Exception as exc:
        log.exception("instance %s: %s raised", key, operation, extra={"instance": key})
        result = RaisedResult(operation, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    if metrics:
        metrics.observe_engine(operation, result.result, seconds)
    log.info("instance %s: %s %s in %.2fs (%s)", key, operation, result.result, seconds,
             summary_text(result.change_summary or {}), extra={"instance": key})
    return result
