"""Requests the apiserver served, from its own /metrics (`apiserver_request_total`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchlib.cli import log

NON_RESOURCE = "(non-resource: discovery, openapi, version)"


def apiserver_requests(bench: Any, resources: Collection[str] | None = None) -> Counter[str]:
    """`VERB resource[/subresource]` -> requests served so far (every client counts), only of
    `resources` when given; requests for no resource (discovery, /openapi/v2, /version) are
    counted under NON_RESOURCE."""
    cfg = bench.api.configuration
    headers = {auth["key"]: auth["value"] for auth in cfg.auth_settings().values()
               if auth.get("in") == "header" and auth.get("value")}
    counts: Counter[str] = Counter()
    try:
        resp = bench.api.call_api("GET", f"{cfg.host}/metrics", header_params=headers)
        text = resp.read().decode()
    except Exception as exc:  # the figures are extra: a run is still measured without them
        log(f"apiserver /metrics not readable: {exc}")
        return counts
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            resource = sample.labels.get("resource", "")
            if resources is not None and resource not in resources:
                continue
            verb = sample.labels.get("verb", "")
            sub = sample.labels.get("subresource")
            key = (f"{verb} {resource}{'/' + sub if sub else ''}" if resource
                   else f"{verb} {NON_RESOURCE}")
            counts[key] += int(sample.value)
    return counts


def delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    """What was served between two readings, largest first (watches excluded: long polls)."""
    served = {k: after[k] - before.get(k, 0) for k in after
              if after[k] - before.get(k, 0) > 0 and not k.startswith("WATCH")}
    return dict(sorted(served.items(), key=lambda item: -item[1]))
