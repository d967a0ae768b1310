"""Staged rollout: a template edit rolled out step by step over N (default 200) instances.

The real operator and engine on the harness (kwok pods, Ready as soon as scheduled): N
instances of a one-pod `staged` template (maxUnavailable `--max-unavailable`, maxFailures 3)
are provisioned at revision 1, then the template is edited (one env value: every pod is
replaced) and the rollout is followed through the template's `status.rollout` until it is
Complete at revision 2. Measured: the whole rollout's wall time, each step (a rise of
`status.rollout.updated`: its time since the previous one and how many moved), and the CPU
seconds of the operator's process tree (the operator and its engine workers, Pulumi CLIs and
providers) during the rollout, with the load average of the shared machine.

Usage: .venv/bin/python benchmarks/rollout.py [--count 200] [--max-unavailable 20%]
Prints one JSON object.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from benchlib.cli import BenchError, arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator
from benchlib.procs import tree_cpu_seconds
from benchlib.summaries import emit, machine, rounded, summary

from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)

TEMPLATE = "rollout-bench"


def template_body(namespace: str, max_unavailable: str) -> dict:
    unavailable: Any = int(max_unavailable) if max_unavailable.isdigit() else max_unavailable
    return {"apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
            "metadata": {"name": TEMPLATE, "namespace": namespace},
            "spec": {"rollout": {"strategy": "staged", "maxUnavailable": unavailable,
                                 "maxFailures": 3, "readyDeadlineSeconds": 600},
                     "pods": [{"name": "notebook", "spec": {"containers": [{
                         "name": "notebook", "image": "quay.io/jupyter/base-notebook",
                         "env": [{"name": "VERSION", "value": "1"},
                                 {"name": "JUPYTERHUB_USER", "value": "{jupyterhub.user.name}"}],
                         "ports": [{"containerPort": 8888}]}]}}]}}


def rollout_of(bench: Bench) -> dict:
    tpl = bench.custom.get_namespaced_custom_object(GROUP, VERSION, bench.namespace,
                                                    TEMPLATE_PLURAL, TEMPLATE)
    return (tpl.get("status") or {}).get("rollout") or {}


def wait_complete(bench: Bench, revision: int, timeout: float,
                  steps: list[tuple[float, int]] | None = None) -> float:
    """Seconds until status.rollout is Complete at `revision`; `steps` gets (time, updated)
    at each rise of `updated`."""
    start = time.monotonic()
    last = -1
    while time.monotonic() - start < timeout:
        rollout = rollout_of(bench)
        if rollout.get("revision") == revision:
            updated = int(rollout.get("updated") or 0)
            if steps is not None and updated != last:
                steps.append((time.monotonic() - start, updated))
                last = updated
            if rollout.get("phase") == "Complete":
                return time.monotonic() - start
            if rollout.get("phase") == "Halted":
                raise BenchError(f"the rollout halted: {rollout.get('failed')}")
        time.sleep(0.5)
    raise BenchError(f"rollout to revision {revision} not Complete within {timeout:.0f}s: "
                     f"{rollout_of(bench)}")


def main() -> int:
    parser = arguments(__doc__, 200)
    parser.add_argument("--max-unavailable", default="20%")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    with Bench("rollout") as bench:
        ns = bench.namespace
        bench.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, TEMPLATE_PLURAL, template_body(ns, args.max_unavailable))
        op = BenchOperator(bench.kubeconfig, bench.pulumi_env, bench.tmp / "state",
                           bench.pulumi_home, [ns], bench.tmp / "operator.log",
                           workers=args.workers, resync_seconds=600.0,
                           extra=("--template-status-seconds", "1"),
                           sample_interval=args.sample_interval).start()
        try:
            log(f"creating {args.count} instances")
            started = time.monotonic()
            for index in range(args.count):
                name = f"u{index:04d}"
                bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, {
                    "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"template": {"name": TEMPLATE},
                             "variables": {"jupyterhub.user.name": name}}})
            wait_complete(bench, 1, args.timeout)
            provision_seconds = time.monotonic() - started
            log(f"{args.count} servers at revision 1 in {provision_seconds:.0f}s")
            op.wait_idle(quiet=3.0, timeout=args.timeout)
            cpu_before = tree_cpu_seconds(op.pid) or 0.0
            load_before = os.getloadavg()
            tpl = bench.custom.get_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL,
                                                            TEMPLATE)
            tpl["spec"]["pods"][0]["spec"]["containers"][0]["env"][0]["value"] = "2"
            bench.custom.replace_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL,
                                                          TEMPLATE, tpl)
            steps: list[tuple[float, int]] = []
            seconds = wait_complete(bench, 2, args.timeout, steps)
            cpu = (tree_cpu_seconds(op.pid) or 0.0) - cpu_before
            log(f"rollout Complete in {seconds:.0f}s, {len(steps)} steps")
        finally:
            op.stop()
    step_times = [b[0] - a[0] for a, b in itertools.pairwise(steps)]
    step_sizes = [b[1] - a[1] for a, b in itertools.pairwise(steps)]
    emit({"benchmark": "rollout", "instances": args.count,
          "maxUnavailable": args.max_unavailable, "workers": args.workers,
          "provisionSeconds": rounded(provision_seconds, 1),
          "rolloutSeconds": rounded(seconds, 1),
          "instancesPerMinute": rounded(args.count / seconds * 60, 1),
          "steps": len(step_times), "stepSeconds": summary(step_times),
          "stepSizes": summary(step_sizes),
          "operatorTreeCpuSeconds": rounded(cpu, 1),
          "cpuSecondsPerInstance": rounded(cpu / args.count, 2),
          "loadBefore": [round(x, 1) for x in load_before],
          "loadAfter": [round(x, 1) for x in os.getloadavg()], "machine": machine()})
    return 0


if __name__ == "__main__":
    run_main(main)
