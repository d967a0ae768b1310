"""Memory of the hub's Event caches in a busy namespace: kept as listed vs. as the hub keeps them.

In-process, no apiserver: the hub's `SharedCluster` watch caches are fed Event JSON shaped as
the apiserver sends it (managedFields, source, a kubelet-sized message), through the same entry
the watch threads use (`ListWatcher._apply`). KubeSpawner's issue 913 is a hub that ran out of
memory at 35,000 Events: the default run puts 35,000 Events of other pods in the namespace, plus
`--per-server` Events for each of `--servers` running servers of the hub, and reports the bytes
the Event caches hold (tracemalloc) two ways:

- `unfiltered`: every Event cached whole (the hub before the filter, and what a plain informer
  on the namespace's Events holds);
- `hub_without_the_cap`: the hub's filter and slimming, with no limit per object;
- `hub`: the hub's caches (spawner.events: only Events about its own instances and their pods,
  slimmed to what progress shows, at most MAX_PER_OBJECT per instance or pod).

`--per-server 200` plays crash-looping servers (a new Event per restart). For the hub's caches
it also times one read of every server's Events as `progress` makes it on each wake of a spawn,
on the hub's event loop (`cached_events`: the Events filed under each object's uid), against
the same reads as a scan of the whole cache per server (how the hub read them before they were
filed by uid), in the same run.

    .venv/bin/python benchmarks/hub_events_memory.py [--foreign 35000] [--servers 2000]
                                                      [--per-server 6]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc

from kubernetes import client

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import ListWatcher
from jupyternetes.spawner.cluster import SharedCluster

NS = "users"


def event(i: int, kind: str, name: str, uid: str) -> dict:
    """An Event as the apiserver lists it (a kubelet image pull, typical sizes)."""
    return json.loads(json.dumps({
        "kind": "Event", "apiVersion": "v1",
        "metadata": {"name": f"{name}.{i:016x}", "namespace": NS, "uid": f"ev-{i}",
                     "resourceVersion": str(1000 + i),
                     "creationTimestamp": "2026-12-07T06:00:00Z",
                     "managedFields": [{"manager": "kubelet", "operation": "Update",
                                        "apiVersion": "v1", "time": "2026-12-07T06:00:00Z",
                                        "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:count": {}, "f:firstTimestamp": {},
                                                     "f:involvedObject": {}, "f:message": {},
                                                     "f:reason": {}, "f:source": {}}}]},
        "involvedObject": {"kind": kind, "namespace": NS, "name": name, "uid": uid,
                           "apiVersion": "v1", "resourceVersion": "123",
                           "fieldPath": "spec.containers{notebook}"},
        "reason": "Pulled",
        "message": f"Successfully pulled image \"quay.io/jupyter/scipy-notebook:2024-{i % 97}\" "
                   "in 1.234s (1.234s including waiting). Image size: 1234567890 bytes.",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": "2026-12-07T06:00:00Z", "lastTimestamp": "2026-12-07T06:00:00Z",
        "count": 1, "type": "Normal", "eventTime": None, "reportingComponent": "kubelet",
        "reportingInstance": "node-1"}))


def feed(foreign: int, servers: int, per_server: int) -> list[tuple[str, dict]]:
    """(watch, Event) pairs: `foreign` Events of other pods, then each server's."""
    out = [("pod", event(i, "Pod", f"other-{i % 5000}", f"other-{i % 5000}"))
           for i in range(foreign)]
    n = foreign
    for s in range(servers):
        for k in range(per_server):
            n += 1
            if k == 0:
                out.append(("instance", event(n, INSTANCE_KIND, f"server{s}", f"i-{s}")))
            else:
                out.append(("pod", event(n, "Pod", f"server{s}-notebook", f"p-{s}")))
    return out


def scan_events(cluster: SharedCluster, name: str) -> list[dict]:
    """The baseline: a server's Events found by scanning both caches (the hub before its Event
    caches were filed by uid)."""
    instance = cluster.cached_instance(name) or {}
    uid = (instance.get("metadata") or {}).get("uid")
    pod_uids = {(p.get("metadata") or {}).get("uid") for p in cluster.cached_pods(name)}
    found = [e for e in cluster.instance_events.items()
             if (e.get("involvedObject") or {}).get("uid") == uid]
    found += [e for e in cluster.pod_events.items()
              if (e.get("involvedObject") or {}).get("uid") in pod_uids]
    return found


def read_round(servers: int, read) -> float:
    started = time.perf_counter()
    for s in range(servers):
        read(f"server{s}")
    return round(time.perf_counter() - started, 4)


def measure(events: list[tuple[str, dict]], servers: int, filtered: bool,
            capped: bool = True) -> dict:
    cluster = SharedCluster(NS, Kube(client.ApiClient(client.Configuration())), workers=1)
    for s in range(servers):
        cluster.instances._apply("ADDED", {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                                           "metadata": {"name": f"server{s}", "namespace": NS,
                                                        "uid": f"i-{s}"}})
        cluster.pods._apply("ADDED", {"metadata": {
            "name": f"server{s}-notebook", "namespace": NS, "uid": f"p-{s}",
            "labels": {LABEL_INSTANCE: f"server{s}"}}})
    if not filtered:  # as before: every Event of the namespace cached whole
        for watcher in (cluster.instance_events, cluster.pod_events):
            watcher.keep = None
            watcher.transform = None
    if not (filtered and capped):  # no limit per object: the cap's baseline
        for watcher in (cluster.instance_events, cluster.pod_events):
            watcher.limit = None
    watchers: dict[str, ListWatcher] = {"instance": cluster.instance_events,
                                        "pod": cluster.pod_events}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for which, obj in events:
        watchers[which]._apply("ADDED", json.loads(json.dumps(obj)))  # a fresh decode each
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    cached = len(cluster.instance_events.items()) + len(cluster.pod_events.items())
    out: dict = {"events_cached": cached, "bytes": held, "mib": round(held / 2**20, 2)}
    if filtered and capped:
        out["progress_reads_seconds"] = read_round(servers, cluster.cached_events)
        out["progress_reads_seconds_scan"] = read_round(
            servers, lambda name: scan_events(cluster, name))
        assert all(len(cluster.cached_events(f"server{s}")) == len(scan_events(
            cluster, f"server{s}")) for s in range(min(servers, 50)))
    cluster.executor.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--foreign", type=int, default=35_000)
    parser.add_argument("--servers", type=int, default=2_000)
    parser.add_argument("--per-server", type=int, default=6)
    args = parser.parse_args(argv)
    events = feed(args.foreign, args.servers, args.per_server)
    print(f"{len(events)} Events", file=sys.stderr)
    result = {"events_in_namespace": len(events), "foreign_events": args.foreign,
              "servers": args.servers, "events_per_server": args.per_server,
              "unfiltered": measure(events, args.servers, filtered=False),
              "hub_without_the_cap": measure(events, args.servers, filtered=True,
                                             capped=False),
              "hub": measure(events, args.servers, filtered=True)}
    result["ratio"] = round(result["hub"]["bytes"] / max(1, result["unfiltered"]["bytes"]), 3)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
