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
   and the stack's checkpoint file where the operator keeps it: its hash bucket of the file
   backend (engine/state/statedirs.py; the source's checkpoint, names and uids substituted). No
   history files, no `.bak`: neither is read by a no-op pass or by an `up` of another stack.
   Then the benchmark waits until the controller manager has bound every clone's PVC.
3. Catch-up (reported, not a target): the operator is started on the clones and re-checks
   every one. Each clone's pod got its own IP from kwok, so each clone's status (the source's
   pod address) is mirrored once here: a write per instance that a real restart does not have.
4. Measured: operator restart until every instance is re-checked (expected: 0 engine runs,
   every reconcile `unchanged`), one periodic resync pass of all of them, the operator's peak
   PSS and RSS, and `--probes` new instances' create -> pod latency with N stacks in the
   backend (the ratio to step 1 is the figure; the first probe of each phase runs on a cold
   worker and is reported alone). For each pass, the apiserver's own request
   counters (its /metrics) say how many requests the operator made, by verb and resource, and
   the load average says how busy the shared machine was.

With `--py-spy PATH` (py-spy is a dev tool: `pip install py-spy`, not a dependency), the
operator is sampled during the catch-up, the restart and the periodic pass, and each pass's
report carries the top functions (benchmarks/pyspy.py); raw stacks go to `--profile-dir`.

Usage: .venv/bin/python benchmarks/scale.py [--count 5000] [--probes 4] [--resync-seconds 120]
       [--py-spy /path/to/py-spy --profile-dir DIR]
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

from benchlib.apiserver import apiserver_requests
from benchlib.cli import BenchError, arguments, log, run_main
from benchlib.fixtures import Bench, count_states
from benchlib.procs import read_pss, tree_cpu_seconds
from benchlib.summaries import emit, mib, ratio, rounded, summary
from benchlib.waiting import PodWatch, wait_until
from latency import column, operator_round
from noop_resync import pass_report, periodic_pass
from pyspy import Profile

from harness.operator_process import MetricsSnapshot
from jupyternetes.crd import naming
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine.settings import DEFAULT_SECRET_VARIABLES, PROJECT, file_backend_url
from jupyternetes.engine.state import backendurl, statedirs
from jupyternetes.engine.state.backendurl import file_backend_path
from jupyternetes.policy.rollout import desired_hash
from jupyternetes.render.objects import render

SOURCE = "scale-src"
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation",
                 "selfLink")


def probe_latency(bench: Bench, op: Any, names: list[str], timeout: float) -> list[dict]:
    """Create instances one at a time (latency.py's operator round: create call -> pod seen,
    split at the operator's `up starting` line and the `pulumi up` CLI's start), each after
    the last one's `up` is done and the operator is idle."""
    rows = []
    watch = PodWatch(bench.api, [bench.namespace]).start()
    try:
        for name in names:
            op.wait_idle(quiet=1.0)
            row = operator_round(bench, op, watch, name, timeout)
            rows.append(row)
            log(f"probe {name}: pod after {row['latency_s']:.2f}s (before engine "
                f"{row['before_engine_s'] or 0:.3f}s, engine until pod "
                f"{row['engine_until_pod_s'] or 0:.3f}s, up {row['engine_operation_s']:.3f}s)")
    finally:
        watch.stop()
    op.wait_idle(quiet=2.0)
    return rows


def idle_cores(bench: Bench, op: Any, seconds: float = 10.0) -> dict[str, float | None]:
    """Cores each cluster component and the operator keep busy while nothing is asked of
    them (a measuring window of `seconds`): the background the probes compete with on this
    2-core machine (kwok, the controller manager and the apiserver work for every object)."""
    def snapshot() -> dict[str, float]:
        snap = {"operator": tree_cpu_seconds(op.pid) or 0.0}
        for comp in bench.cluster.components if bench.cluster is not None else []:
            if comp.proc is not None:
                snap[comp.name] = tree_cpu_seconds(comp.proc.pid) or 0.0
        return snap
    op.wait_idle(quiet=1.0)
    before, started = snapshot(), time.monotonic()
    time.sleep(seconds)
    after, elapsed = snapshot(), time.monotonic() - started
    return {k: rounded((after[k] - before.get(k, 0.0)) / elapsed, 3) for k in after}


def p50(rows: list[dict]) -> float | None:
    return summary(column(rows, "latency_s"))["p50"]


def probe_summary(rows: list[dict]) -> dict[str, Any]:
    keys = ("latency_s", "before_engine_s", "engine_until_pod_s", "worker_until_cli_s",
            "cli_until_pod_s", "engine_operation_s", "pulumi_up_s")
    return {key: summary(column(rows, key)) for key in keys}


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
        self.source = bench.custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, INSTANCE_PLURAL, SOURCE)
        self.pod = bench.api.sanitize_for_serialization(bench.core.read_namespaced_pod(
            naming.object_name(SOURCE, "notebook"), ns))
        self.pvc = bench.api.sanitize_for_serialization(
            bench.core.read_namespaced_persistent_volume_claim(
                naming.object_name(SOURCE, "workspace"), ns))
        self.backend = backend
        stack = naming.stack_name(ns, SOURCE)
        self.checkpoint = statedirs.checkpoint_file(backend, PROJECT, stack).read_text()
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
        created = bench.create_instance(name)
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
            GROUP, VERSION, ns, INSTANCE_PLURAL, name, {"status": status})
        stack = naming.stack_name(ns, name)
        path = statedirs.checkpoint_file(self.backend, PROJECT, stack)
        statedirs.ensure_layout(path.parents[3])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(substitute(self.checkpoint, pairs))


WATCHED_RESOURCES = (INSTANCE_PLURAL, TEMPLATE_PLURAL, "pods",
                     "secrets", "events", "persistentvolumeclaims")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Pass:
    """Around one measured pass: apiserver requests, load average, optionally a py-spy profile."""

    def __init__(self, bench: Bench, args: Any, name: str) -> None:
        self.bench, self.args, self.name = bench, args, name
        self.requests = apiserver_requests(bench, WATCHED_RESOURCES)
        self.load_before = loadavg()
        self.profile: Profile | None = None

    def profile_pid(self, pid: int) -> None:
        if self.args.py_spy:
            out = Path(self.args.profile_dir) / f"scale-{self.args.count}-{self.name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            self.profile = Profile(self.args.py_spy, pid, out)

    def report(self) -> dict[str, Any]:
        after = apiserver_requests(self.bench, WATCHED_RESOURCES)
        done: dict[str, Any] = {
            "loadavg_before_after": [self.load_before, loadavg()],
            "apiserver_requests": dict(sorted((k, v) for k, v in (after - self.requests).items()
                                              if not k.startswith("WATCH"))),
        }
        if self.profile is not None:
            done["profile"] = self.profile.stop()
        return done


def recheck_all(bench: Bench, op: Any, count: int, args: Any, name: str,
                restart: bool = True) -> tuple[Any, dict[str, Any]]:
    """Start the operator (stopping `op` first when `restart`) and time it until `count`
    reconciles are done: every instance re-checked once."""
    if restart:
        op.stop()
    measured = Pass(bench, args, name)
    fresh = bench.start_operator(workers=args.workers, resync_seconds=args.resync_seconds,
                                 sample_interval=args.sample_interval)
    measured.profile_pid(fresh.pid)
    first_at = None
    while True:
        snap = fresh.metrics()
        now = time.time()
        if first_at is None and snap.reconciles > 0:
            first_at = now
        if snap.reconciles >= count:
            break
        if now - fresh.spawned_at > 1200:
            raise BenchError(f"{name}: {snap.reconciles:g} of {count} reconciles in 1200s\n"
                             f"{fresh.log_tail()}")
        time.sleep(args.poll)
    after = fresh.wait_idle(quiet=2.0)
    report = pass_report(fresh, MetricsSnapshot(""), after, fresh.spawned_at)
    report.update({"wall_from_spawn_s": rounded(now - fresh.spawned_at),
                   "spawn_until_healthy_s": rounded(fresh.healthy_at - fresh.spawned_at),
                   "wall_from_first_reconcile_s": rounded(now - (first_at or now)),
                   **measured.report()})
    return fresh, report


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 5000)
    parser.add_argument("--probes", type=int, default=4)
    parser.add_argument("--resync-seconds", type=float, default=120.0)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--py-spy", default=None, metavar="PATH",
                        help="profile the operator with this py-spy binary (a dev tool)")
    parser.add_argument("--profile-dir", default="/tmp/jupyternetes-profiles")
    parser.add_argument("--skip-probes", action="store_true",
                        help="leave out the latency probes after the passes")
    args = parser.parse_args(argv)

    with Bench("scale") as bench:
        first = [SOURCE] + [f"probe0-{i}" for i in range(args.probes - 1)]
        op = bench.start_operator(workers=args.workers, resync_seconds=args.resync_seconds,
                                  sample_interval=args.sample_interval)
        background = {"few_stacks": idle_cores(bench, op)}
        empty = probe_latency(bench, op, first, 300)
        # The operator's settings_fingerprint (app/operator.py), for the backend it resolved
        # as it does (stacks.settings_from_args): its environment may name one.
        backend_url = backendurl.resolve(None, None, op.env,
                                         file_backend_url(Path(op.state_dir).absolute()))
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
        # The controller manager binds the clones' claims to their pre-bound volumes: wait, so
        # that its thousands of writes do not load the apiserver during the measured passes
        # (a cluster with 5,000 running servers has every claim bound).
        wait_until("every clone's PVC Bound", lambda: sum(
            1 for c in bench.core.list_namespaced_persistent_volume_claim(bench.namespace).items
            if c.status.phase == "Bound") >= total, 900, interval=5.0)
        log(f"every PVC Bound {time.monotonic() - started:.0f}s after the clone write began")
        log("starting the operator on the clones (catch-up: one status write per clone)")
        op, catch_up = recheck_all(bench, op, total, args, "catch-up", restart=False)
        catch_up_tree = op.sampler.report() if op.sampler else {}
        log(f"catch-up: {catch_up}")
        log("restarting the operator on the full state")
        op, restarted = recheck_all(bench, op, total, args, "restart")
        log(f"restart: {restarted}")
        measured = Pass(bench, args, "periodic")
        op.wait_idle(quiet=1.0)
        measured.profile_pid(op.pid)
        periodic = {**periodic_pass(op, total, args.resync_seconds, args.poll),
                    **measured.report()}
        log(f"periodic: {periodic}")
        operator_pss_idle = read_pss(op.pid)
        stacks_now = len(statedirs.checkpoint_stacks(backend, PROJECT))
        probes = [f"probe1-{i}" for i in range(args.probes)]
        background[f"{args.count}_clones"] = idle_cores(bench, op)
        full = [] if args.skip_probes else probe_latency(bench, op, probes, 300)
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
        "catch_up_after_clone_write": catch_up,
        "restart_relist": restarted,
        "periodic_resync": {"resync_seconds": args.resync_seconds, **periodic},
        "operator_memory_mib": {"catch_up_peak_pss": catch_up_tree.get("peak_operator_pss_mib"),
                                "peak_pss": tree.get("peak_operator_pss_mib"),
                                "peak_rss": tree.get("peak_operator_rss_mib"),
                                "pss_after_resync": mib(operator_pss_idle)},
        # The first probe (the source) runs on cold engine caches: left out, like latency.py's
        # warm-up round.
        # The first probe of each phase is left out (reported alone): the first `up` of a new
        # operator process runs on a cold worker, whatever the number of stacks.
        "new_instance_latency_s": {f"with_1_to_{args.probes - 1}_stacks": probe_summary(empty[1:]),
                                   "first_cold_s": rounded(empty[0]["latency_s"]),
                                   f"with_{stacks_now}_stacks": probe_summary(full[1:]),
                                   "first_after_restart_s": rounded(
                                       full[0]["latency_s"] if full else None),
                                   "ratio_p50": ratio(p50(full[1:]), p50(empty[1:]))},
        "background_cores_before_probes": background,
        "states_after": states,
    })
    return 0


if __name__ == "__main__":
    run_main(main)
