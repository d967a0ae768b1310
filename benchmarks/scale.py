"""Scale: the operator with N (default 5,000) existing, provisioned instances and their stacks.

Provisioning N instances through the engine costs about 1 CPU-second each (80+ minutes for
5,000 on 2 cores), so this benchmark takes a SHORTCUT, stated in its output:

1. `--probes` instances are provisioned by the real operator and engine on an empty backend;
   their create -> pod latency is the "with 0 existing stacks" figure. The first one is the
   SOURCE.
2. The operator is stopped. N clones of the source are written directly: the instance (created,
   then its status set to the source's with names and uids substituted and `desiredHash`
   computed by the operator's own `desired_hash` over the clone's own render; the source's
   computed hash must equal the hash the operator wrote, or the benchmark stops), a pre-bound
   PersistentVolume, the PVC and the pod (the source's live objects, names and uids
   substituted; the pod keeps the source's node, so the scheduler is skipped and kwok runs it),
   and the stack's checkpoint file in the file backend (the source's checkpoint, names and uids
   substituted). No history files, no `.bak`: neither is read by a no-op pass or by an `up` of
   another stack.
3. Measured: operator restart until every instance is re-checked (expected: 0 engine runs,
   every reconcile `unchanged`), one periodic resync pass of all of them, the operator's peak
   PSS and RSS, and `--probes` new instances' create -> pod latency with N stacks in the
   backend (the ratio to step 1 is the figure).

Usage: .venv/bin/python benchmarks/scale.py [--count 5000] [--probes 4] [--resync-seconds 120]
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import time
from pathlib import Path
from typing import Any

from benchlib import (
    GROUP,
    INSTANCES,
    VERSION,
    Bench,
    BenchError,
    PodWatch,
    arguments,
    count_states,
    emit,
    log,
    mib,
    read_pss,
    rounded,
    run_main,
    summary,
    wait_until,
)
from noop_resync import pass_report, periodic_pass

from jupyternetes import naming
from jupyternetes.engine import diystate
from jupyternetes.engine.backendurl import file_backend_path
from jupyternetes.engine.settings import DEFAULT_SECRET_VARIABLES, PROJECT, file_backend_url
from jupyternetes.harness.operator_process import MetricsSnapshot
from jupyternetes.model import Instance, Template
from jupyternetes.operator.rollout import desired_hash
from jupyternetes.render import render

SOURCE = "scale-src"
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
                 "selfLink")


def probe_latency(bench: Bench, op: Any, names: list[str], timeout: float) -> list[float]:
    """Create instances one at a time; create call -> pod seen, each after the last is done."""
    latencies = []
    watch = PodWatch(bench.api, [bench.namespace]).start()
    try:
        for name in names:
            op.wait_idle(quiet=1.0)
            started = time.time()
            bench.create_instance(name, user=name)
            pod = f"{bench.namespace}/{naming.object_name(name, 'notebook')}"
            seen = watch.wait_for([pod], timeout)
            latencies.append(seen[pod] - started)
            log(f"probe {name}: pod after {latencies[-1]:.2f}s")
    finally:
        watch.stop()
    op.wait_idle(quiet=2.0)
    return latencies


def stripped(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    metadata = obj.get("metadata") or {}
    for key in SERVER_FIELDS:
        metadata.pop(key, None)
    for key in list(metadata.get("annotations") or {}):
        if key.startswith(("pv.kubernetes.io/", "volume.")):
            del metadata["annotations"][key]
    (obj.get("spec") or {}).pop("volumeName", None)
    return obj


def substitute(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


class Cloner:
    """Writes clones of the provisioned SOURCE instance (see the module doc)."""

    def __init__(self, bench: Bench, backend: Any, fingerprint: dict[str, Any]) -> None:
        self.bench = bench
        self.fingerprint = fingerprint
        self.template = Template.from_dict(bench.template, source="seed template")
        ns = bench.namespace
        self.source = bench.custom.get_namespaced_custom_object(GROUP, VERSION, ns, INSTANCES,
                                                                SOURCE)
        self.pod = bench.api.sanitize_for_serialization(bench.core.read_namespaced_pod(
            naming.object_name(SOURCE, "notebook"), ns))
        self.pvc = bench.api.sanitize_for_serialization(
            bench.core.read_namespaced_persistent_volume_claim(
                naming.object_name(SOURCE, "workspace"), ns))
        self.stacks_dir = diystate.stacks_dir(backend, PROJECT)
        stack = naming.stack_name(ns, SOURCE)
        self.checkpoint = (self.stacks_dir / f"{stack}.json").read_text()
        status = self.source.get("status") or {}
        computed = self.hash_of(self.source)
        written = (status.get("stack") or {}).get("desiredHash")
        if computed != written:
            raise BenchError(f"desired_hash of the source is {computed}, the operator wrote "
                             f"{written}: the clones' statuses would be wrong; fix the "
                             f"fingerprint in scale.py")
        self.uids = [(self.source["metadata"]["uid"], "instance"),
                     (self.pod["metadata"]["uid"], "pod"), (self.pvc["metadata"]["uid"], "pvc")]

    def hash_of(self, obj: dict) -> str:
        rendered = render(self.template, Instance.from_dict(obj, source="scale"))
        return desired_hash(rendered, DEFAULT_SECRET_VARIABLES, self.fingerprint)

    def clone(self, name: str) -> None:
        bench, ns = self.bench, self.bench.namespace
        bench.provide_volume(ns, name)
        created = bench.create_instance(name, user=name)
        uids = {"instance": created["metadata"]["uid"]}
        pairs = [(SOURCE, name), (self.uids[0][0], uids["instance"])]
        pvc = json.loads(substitute(json.dumps(stripped(self.pvc)), pairs))
        uids["pvc"] = bench.core.create_namespaced_persistent_volume_claim(ns, pvc).metadata.uid
        pod = json.loads(substitute(json.dumps(stripped(self.pod)), pairs))
        uids["pod"] = bench.core.create_namespaced_pod(ns, pod).metadata.uid
        pairs += [(self.uids[1][0], uids["pod"]), (self.uids[2][0], uids["pvc"])]
        status = json.loads(substitute(json.dumps(self.source["status"]), pairs))
        status["stack"]["desiredHash"] = self.hash_of(created)
        status["observedGeneration"] = created["metadata"].get("generation", 1)
        bench.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, INSTANCES, name, {"status": status})
        stack = naming.stack_name(ns, name)
        (self.stacks_dir / f"{stack}.json").write_text(substitute(self.checkpoint, pairs))


def restart(bench: Bench, op: Any, count: int, args: Any) -> tuple[Any, dict[str, Any]]:
    op.stop()
    fresh = bench.start_operator(workers=args.workers, resync_seconds=args.resync_seconds,
                                 sample_interval=args.sample_interval)
    first_at = None
    while True:
        snap = fresh.metrics()
        now = time.time()
        if first_at is None and snap.reconciles > 0:
            first_at = now
        if snap.reconciles >= count:
            break
        if now - fresh.spawned_at > 900:
            raise BenchError(f"restart: {snap.reconciles:g} of {count} reconciles in 900s\n"
                             f"{fresh.log_tail()}")
        time.sleep(args.poll)
    after = fresh.wait_idle(quiet=2.0)
    report = pass_report(fresh, MetricsSnapshot(""), after, fresh.spawned_at)
    report.update({"wall_from_spawn_s": rounded(now - fresh.spawned_at),
                   "spawn_until_healthy_s": rounded(fresh.healthy_at - fresh.spawned_at),
                   "wall_from_first_reconcile_s": rounded(now - (first_at or now))})
    return fresh, report


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 5000)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--resync-seconds", type=float, default=120.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)

    with Bench("scale") as bench:
        first = [SOURCE] + [f"probe0-{i}" for i in range(args.probes - 1)]
        bench.provide_volumes(bench.namespace, first)
        op = bench.start_operator(workers=args.workers, resync_seconds=args.resync_seconds,
                                  sample_interval=args.sample_interval)
        empty = probe_latency(bench, op, first, 300)
        # The operator's settings_fingerprint (operator/run.py), for its --state-dir backend.
        backend_url = file_backend_url(Path(op.state_dir).absolute())
        fingerprint = {"project": PROJECT, "kubeconfig": str(bench.kubeconfig),
                       "context": None, "backendUrl": backend_url}
        op.stop()
        backend = file_backend_path(backend_url)
        assert backend is not None
        cloner = Cloner(bench, backend, fingerprint)
        names = [f"scale-{i:05d}" for i in range(args.count)]
        log(f"writing {args.count} clones of {SOURCE} ({args.threads} threads)")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
            for done, _ in enumerate(pool.map(cloner.clone, names), 1):
                if done % 500 == 0:
                    log(f"{done} clones in {time.monotonic() - started:.0f}s")
        clone_seconds = time.monotonic() - started
        total = args.count + args.probes
        wait_until("every clone's pod Running", lambda: sum(
            1 for p in bench.core.list_namespaced_pod(bench.namespace).items
            if p.status.phase == "Running") >= total, 600, interval=5.0)
        log("restarting the operator on the full state")
        op, restarted = restart(bench, op, total, args)
        log(f"restart: {restarted}")
        periodic = periodic_pass(op, total, args.resync_seconds, args.poll)
        log(f"periodic: {periodic}")
        operator_pss_idle = read_pss(op.pid)
        stacks_now = len(list(cloner.stacks_dir.glob("*.json")))
        probes = [f"probe1-{i}" for i in range(args.probes)]
        bench.provide_volumes(bench.namespace, probes)
        full = probe_latency(bench, op, probes, 300)
        tree = op.sampler.full_report() if op.sampler else {}
        states = count_states(bench.instances())

    emit({
        **bench.result("scale", f"{args.count} provisioned instances (cloned, see shortcut)"),
        "shortcut": ("instances, PVs, PVCs, pods, statuses and stack checkpoints of the "
                     f"{args.count} are clones of one engine-provisioned instance written "
                     "directly (scale.py doc); the probes and every measured pass go through "
                     "the real operator and engine"),
        "instances": total,
        "stacks_in_backend": stacks_now,
        "clone_write_s": rounded(clone_seconds, 1),
        "restart_relist": restarted,
        "periodic_resync": {"resync_seconds": args.resync_seconds, **periodic},
        "operator_memory_mib": {"peak_pss": tree.get("peak_operator_pss_mib"),
                                "peak_rss": tree.get("peak_operator_rss_mib"),
                                "pss_after_resync": mib(operator_pss_idle)},
        # The first probe (the source) runs on cold engine caches: left out, like latency.py's
        # warm-up round.
        "new_instance_latency_s": {"with_1_to_3_stacks": summary(empty[1:]),
                                   "first_cold_s": rounded(empty[0]),
                                   f"with_{stacks_now}_stacks": summary(full),
                                   "ratio_p50": rounded((summary(full)["p50"] or 0)
                                                        / (summary(empty[1:])["p50"] or 1), 2)},
        "states_after": states,
    })
    return 0


if __name__ == "__main__":
    run_main(main)
