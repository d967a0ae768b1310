"""Figures for reading: percentiles, summaries, ratios, MiB, and the one JSON result on stdout."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any


def emit(result: Mapping[str, Any]) -> None:
    print(json.dumps(result, indent=2, sort_keys=False), flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """p50/p95/mean/min/max of a sample, rounded for reading."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50), digits),
        "p95": rounded(percentile(values, 95), digits),
        "mean": rounded(sum(values) / len(values), digits),
        "min": rounded(min(values), digits),
        "max": rounded(max(values), digits),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / (1024 * 1024), 1)


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(after) | set(before))
            if after.get(k, 0.0) != before.get(k, 0.0)}


def kubernetes_provider_version() -> str:
    return metadata.version("pulumi-kubernetes")


def machine() -> dict[str, Any]:
    """Context for reading the figures: the box is small and may be shared with other work."""
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "pulumi_kubernetes": kubernetes_provider_version(),
            "loadavg_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()]}
