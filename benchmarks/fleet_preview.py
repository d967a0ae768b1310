"""Fleet preview, pure mode: classify a template edit for N instances (default 5,000).

What `jupyternetes preview --template NS/NAME -f proposed.yaml` spends after its list calls:
for each instance, render the live and the proposed template and classify every object
(fleetpreview.plan_fleet). The instances are dicts in memory shaped like the apiserver's list
answer (seed instance, a stack up at the live generation); a share of them runs an older
generation and is compared with live objects, as in a next-start fleet. No cluster, no engine.
Scenarios: the live template itself (no -f), then three proposals read from a file.

Prints one JSON object: seconds per scenario, instances per second, and the outcome counts.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from typing import Any

from harness.examples import load_example, shared_template
from jupyternetes.admin.fleetpreview import live_objects_of, plan_fleet
from jupyternetes.crd.model import Instance, Template
from jupyternetes.render import hubvars
from jupyternetes.render.objects import render

REF = "kadense/default-template"


def instances(count: int, stale_every: int) -> tuple[list[dict], list[dict]]:
    """`count` instances; every `stale_every`-th runs generation 3 (its live objects listed)."""
    base = load_example("seed-instance.yaml")
    old_template = Template.from_dict(load_example("seed-template.yaml"))
    items, listed = [], []
    for index in range(count):
        doc = copy.deepcopy(base)
        name = f"user{index:05d}"
        doc["metadata"]["name"] = name
        doc["spec"]["variables"].update({hubvars.INSTANCE_NAME: name, hubvars.USER_NAME: name,
                                         hubvars.USER_ID: str(index)})
        stale = stale_every and index % stale_every == 0
        doc["status"] = {"stack": {"desiredHash": "sha256:x",
                                   "templateGeneration": 3 if stale else 4,
                                   "lastUpdate": {"result": "succeeded"}}}
        items.append(doc)
        if stale:
            for obj in render(old_template, Instance.from_dict(doc)).objects():
                live = copy.deepcopy(obj.manifest)
                live["status"] = {"phase": "Running"}
                listed.append(live)
    return items, listed


def seed_template() -> dict:
    """The seed's template, usable from its instances' namespace (spec.allowedNamespaces)."""
    return shared_template(load_example("seed-template.yaml"))


def proposals() -> dict[str, dict]:
    live = seed_template()
    image = copy.deepcopy(live)
    image["spec"]["pods"][0]["spec"]["containers"][0]["image"] = "quay.io/jupyter/base:new"
    renamed = copy.deepcopy(live)
    renamed["spec"]["pods"][0]["spec"]["containers"][0]["env"][0]["value"] = "{hub.token}"
    return {"unchanged": live, "image": image, "renamed-variable": renamed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--stale-every", type=int, default=10,
                        help="every Nth instance runs an older generation (0: none)")
    args = parser.parse_args()
    items, listed = instances(args.instances, args.stale_every)
    live = Template.from_dict(seed_template())
    result: dict[str, Any] = {"benchmark": "fleet_preview", "instances": args.instances,
                              "staleEvery": args.stale_every, "python": platform.python_version(),
                              "scenarios": {}}
    scenarios: dict[str, Template] = {"live (no -f)": live}
    scenarios.update({label: Template.from_dict(doc) for label, doc in proposals().items()})
    for label, proposed in scenarios.items():
        started = time.perf_counter()
        live_objects = live_objects_of(listed)
        summary = plan_fleet(REF, live, proposed, items, live_objects, {})
        seconds = time.perf_counter() - started
        counts = {k: v for k, v in summary.counts().items() if v}
        result["scenarios"][label] = {"seconds": round(seconds, 3),
                                      "instancesPerSecond": round(args.instances / seconds),
                                      "counts": counts}
        print(f"{label}: {seconds:.2f}s {counts}", file=sys.stderr)
    result["loadavg_1m_5m_15m_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
