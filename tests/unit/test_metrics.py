"""Metrics registry contents and the /healthz + /metrics HTTP endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from jupyternetes.app.httpserver import make_http_server, serve
from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.queue import WorkQueue


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    body, _ = metrics.exposition()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_reconcile_engine_failure_and_queue_metrics():
    m = Metrics()
    m.observe_reconcile("provisioned", 2.0)
    m.observe_reconcile("unchanged", 0.01)
    m.observe_reconcile("unchanged", 0.02)
    m.observe_engine("up", "succeeded", 1.5)
    m.observe_engine("destroy", "failed", 0.5)
    m.failure("RenderFailed")
    q = WorkQueue(on_depth=m.set_queue_depth)
    q.add("a")
    q.add("b")
    s = samples(m)
    assert s[("jupyternetes_reconciles_total", (("result", "unchanged"),))] == 2
    assert s[("jupyternetes_reconciles_total", (("result", "provisioned"),))] == 1
    assert s[("jupyternetes_reconcile_duration_seconds_count", ())] == 3
    assert s[("jupyternetes_reconcile_duration_seconds_bucket", (("le", "0.025"),))] == 2
    assert s[("jupyternetes_engine_operation_duration_seconds_count",
              (("operation", "up"),))] == 1
    assert s[("jupyternetes_engine_operation_duration_seconds_sum",
              (("operation", "up"),))] == 1.5
    assert s[("jupyternetes_engine_operations_total",
              (("operation", "destroy"), ("result", "failed")))] == 1
    assert s[("jupyternetes_reconcile_failures_total", (("reason", "RenderFailed"),))] == 1
    assert s[("jupyternetes_queue_depth", ())] == 2


def test_registries_are_independent():
    a, b = Metrics(), Metrics()
    a.failure("x")
    assert ("jupyternetes_reconcile_failures_total", (("reason", "x"),)) not in samples(b)


def test_http_server_serves_health_and_metrics():
    m = Metrics()
    m.observe_reconcile("provisioned", 1.0)
    healthy = {"value": True}
    server = make_http_server("127.0.0.1", 0, health=lambda: healthy["value"],
                              ready=lambda: False, metrics=m)
    serve(server)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b"ok\n"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            text = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/plain")
        assert 'jupyternetes_reconciles_total{result="provisioned"} 1.0' in text
        healthy["value"] = False
        for path, code in (("/healthz", 503), ("/readyz", 503), ("/nope", 404)):
            try:
                urllib.request.urlopen(f"{base}{path}", timeout=5)
                raise AssertionError(f"{path} should fail")
            except urllib.error.HTTPError as exc:
                assert exc.code == code
    finally:
        server.shutdown()
        server.server_close()


def test_json_logs_carry_the_instance_as_a_field():
    import json
    import logging

    from jupyternetes.app.logsetup import JsonFormatter

    record = logging.LogRecord("jupyternetes.operator", logging.WARNING, __file__, 1,
                               "instance %s: %s", ("ns/a", "up failed"), None)
    record.instance = "ns/a"
    doc = json.loads(JsonFormatter().format(record))
    assert doc["instance"] == "ns/a"
    assert doc["level"] == "warning"
    assert doc["msg"] == "instance ns/a: up failed"
