"""Side by side with KubeSpawner (issue 20, section 6): one cluster, two hubs, alternating rounds.

On one harness DevCluster with the loopback node and its pod runner (each pod's container runs
as a local `jupyterhub-singleuser` process), two real JupyterHubs with their own
configurable-http-proxy run at the same time:

- `ours`: JupyternetesSpawner + the operator (scoped to its own namespace), template
  `examples/spawner-template.yaml` placed on the loopback node (one PVC, one pod);
- `ks`: KubeSpawner (jupyterhub-kubespawner 7.1.0, the `[bench]` extra; class path
  `kubespawner.KubeSpawner`) configured with settings only, for the same pod and PVC: node
  selector and toleration of the loopback node, `cmd = ["jupyterhub-singleuser"]`, a
  `claim-{user_server}` PVC (1Gi, ReadWriteOnce) mounted at the same path, KUBECONFIG for the hub.

Every claim of either gets a PersistentVolume pre-bound to it before its timing starts (the
harness has no provisioner). Both hubs run the same settings (`slow_spawn_timeout` 0,
`http_timeout` 120 s). The machine is shared, so the two systems alternate: each sequential
round spawns one user on each (the order flips every round), and the bursts alternate too.

Measured (stdout: one JSON object; progress on stderr):
- `sequential`: POST /hub/api/users/<u>/server -> GET /user/<u>/api/status answers 200 through
  the proxy, p50/p95 per system and ratio ours/ks; where it goes, from this script's own
  watches (ours: hub -> instance -> pod -> container running -> answers; ks: hub -> pod ->
  running -> answers), and ours' operator split: `before_engine` (instance created -> the
  operator's `up starting` log line: watch, queue, render, hash, patches) and `engine_until_pod`;
  control-side CPU-seconds per spawn (request -> answers and the operator idle again): hub,
  operator process tree (workers, pulumi CLIs, providers; ours only), kube-apiserver, etcd;
- `burst`: `--burst` users at once per system: time until every one answers, ratio; the hub's
  CPU-seconds and peak RSS during the burst (sampled every 0.2 s; and VmHWM at the end), and
  control-side CPU per spawn;
- `idle` (`--idle N`): N running servers per hub, then the hub's CPU while idle (over
  `--idle-seconds`, covering the hub's 30 s poll cycles) and its RSS. See `idle_phase`.

Usage:
  .venv/bin/python benchmarks/kubespawner_compare.py [--count 10] [--warmup 1] [--burst 20]
      [--idle 500] [--idle-seconds 120] [--phases sequential,burst,idle]
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from benchlib.cli import BenchError, arguments, log, run_main
from benchlib.fixtures import Bench, BenchOperator
from benchlib.procs import operator_cpu_split, peak_rss_hwm, read_proc, tree_cpu_seconds
from benchlib.summaries import emit, mib, ratio, rounded, summary
from latency import up_started_at
from spawn import TEMPLATE, HubUsers, Timeline, template_body

from harness.cluster import LOOPBACK_NODE, loopback_cidr, loopback_placement
from harness.hub import Hub
from harness.podrunner import PodRunner, ensure_loopback_node
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.kube.client import Kube

KS_CLASS = "kubespawner.KubeSpawner"
KS_POD_SELECTOR = "component=singleuser-server"  # KubeSpawner's label on its servers' pods
# Same for both hubs: no "spawn pending" 202 short-cut, and the notebook process on a loaded
# 2-core box can take tens of seconds to answer.
COMMON_HUB_SETTINGS = ("c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"
                       "c.Spawner.http_timeout = 120\n")
ENGINE_OPERATIONS = ("up", "refresh", "destroy")
NOTEBOOK_MOUNT = "/home/jovyan/work"  # where examples/spawner-template.yaml mounts its PVC


def kubespawner_settings(namespace: str, start_timeout: int) -> str:
    """jupyterhub_config.py lines for KubeSpawner: the same pod and PVC as our template, by
    configuration only (what a z2jh admin would set)."""
    placement = loopback_placement()
    settings: dict[str, Any] = {
        "namespace": namespace,
        "cmd": ["jupyterhub-singleuser"],
        "image": "quay.io/jupyter/base-notebook:hub-5.2.1",  # the pod runner runs no image
        "node_selector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
        "storage_pvc_ensure": True,
        "pvc_name_template": "claim-{user_server}",
        "storage_capacity": "1Gi",
        "storage_access_modes": ["ReadWriteOnce"],
        "volumes": [{"name": "workspace",
                     "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
        "volume_mounts": [{"name": "workspace", "mountPath": NOTEBOOK_MOUNT}],
        "start_timeout": start_timeout,
    }
    return "".join(f"c.KubeSpawner.{k} = {v!r}\n" for k, v in settings.items())


@dataclass
class System:
    """One hub and what this script needs to time and account its spawns."""

    name: str  # "ours" | "ks"
    hub: Hub
    namespace: str
    claim_for: Callable[[str], str]  # user -> the claim name its spawner will make
    timeline: Timeline
    users: HubUsers = field(init=False)

    def __post_init__(self) -> None:
        self.users = HubUsers(self.hub)

    @property
    def hub_pid(self) -> int:
        assert self.hub.hub_process is not None and self.hub.hub_process.proc is not None
        return self.hub.hub_process.proc.pid


class Control:
    """CPU-seconds so far of the control side: each hub, the operator tree, apiserver, etcd."""

    def __init__(self, bench: Bench, op: BenchOperator, systems: dict[str, System]) -> None:
        self.op = op
        self.systems = systems
        assert bench.cluster is not None, "needs the harness DevCluster (its apiserver's /proc)"
        self.components = {c.name: c.proc.pid for c in bench.cluster.components
                           if c.name in ("kube-apiserver", "etcd") and c.proc is not None}

    def now(self) -> dict[str, float]:
        out = {f"hub_{name}": tree_cpu_seconds(s.hub_pid) or 0.0
               for name, s in self.systems.items()}
        out["operator_tree"] = tree_cpu_seconds(self.op.pid) or 0.0
        out.update({f"tree_{k}": v for k, v in operator_cpu_split(self.op.pid).items()})
        for name, pid in self.components.items():
            out[name] = tree_cpu_seconds(pid) or 0.0
        return out

    @staticmethod
    def spent(after: dict[str, float], before: dict[str, float], system: str
              ) -> dict[str, float]:
        """What one system's spawn cost: its hub, the operator tree (ours only; KubeSpawner has
        none), the apiserver and etcd (shared, measured in the same window)."""
        d = {k: after[k] - before[k] for k in after}
        parts = {"hub": d[f"hub_{system}"], "kube-apiserver": d.get("kube-apiserver", 0.0),
                 "etcd": d.get("etcd", 0.0)}
        if system == "ours":
            parts["operator_tree"] = d["operator_tree"]
            # Of the tree: the operator process, the engine workers' Python, and the pulumi
            # CLIs with their providers (benchlib.procs.operator_cpu_split).
            parts.update({k: v for k, v in d.items() if k.startswith("tree_")})
        parts["control_side"] = parts["hub"] + parts.get("operator_tree", 0.0) + \
            parts["kube-apiserver"]
        return parts


class RssPeaks:
    """Peak RSS of some processes, sampled from a thread; `reset()` starts a new window."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peaks", daemon=True)

    def start(self) -> RssPeaks:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def reset(self) -> None:
        with self._lock:
            self.peaks = {}

    def report(self) -> dict[str, float | None]:
        with self._lock:
            return {k: mib(v) for k, v in self.peaks.items()}

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, pid in self.pids.items():
                proc = read_proc(pid)
                if proc is not None:
                    with self._lock:
                        self.peaks[name] = max(self.peaks.get(name, 0), proc.rss)


def rss_now(pid: int) -> float | None:
    proc = read_proc(pid)
    return mib(proc.rss) if proc is not None else None


# ---- sequential ------------------------------------------------------------------------------


def sequential_round(bench: Bench, op: BenchOperator, control: Control, system: System,
                     user: str, timeout: float) -> dict[str, float]:
    s = system
    s.users.add(user)
    runner_volume(bench, s.namespace, s.claim_for(user))
    op.wait_idle(quiet=1.0)
    cpu_before = control.now()
    engine_before = op.metrics()
    assert op.sampler is not None
    commands_before = op.sampler.commands()
    started = time.time()
    total = s.users.spawn_and_wait(user, timeout)
    op.wait_idle(quiet=1.0)  # ours: the rest of the `up`, the status mirror; ks: a quiet second
    cost = Control.spent(control.now(), cpu_before, s.name)
    engine_after = op.metrics()
    pods = bench.core.list_namespaced_pod(s.namespace, label_selector=pod_selector_for(s, user))
    if not pods.items:
        raise BenchError(f"{s.name}: no pod for {user}")
    pod = pods.items[0]
    pod_seen = s.timeline.pod_seen[pod.metadata.uid]
    running = s.timeline.pod_running.get(pod.metadata.uid, pod_seen)
    parts: dict[str, float] = {"total": total}
    if s.name == "ours":
        instance = bench.custom.get_namespaced_custom_object(
            GROUP, VERSION, s.namespace, INSTANCE_PLURAL, instance_name_for_user(user))
        seen = s.timeline.instance_seen[instance["metadata"]["uid"]]
        parts.update(hub=seen - started, operator_engine=pod_seen - seen)
        for operation in ENGINE_OPERATIONS:  # what one spawn asked of the engine
            parts[f"engine_{operation}s"] = (engine_after.engine_count(operation)
                                             - engine_before.engine_count(operation))
        # The engine processes it started (`pulumi_cli up`, `provider`, ...), as sampled.
        parts.update({f"processes_{k}": v - commands_before.get(k, 0)
                      for k, v in op.sampler.commands().items()
                      if v - commands_before.get(k, 0)})
        up_at = up_started_at(op, f"{s.namespace}/{instance['metadata']['name']}", seen)
        if up_at is not None:
            parts.update(before_engine=up_at - seen, engine_until_pod=pod_seen - up_at)
    else:
        parts.update(hub=pod_seen - started)
    parts.update(pod_start=running - pod_seen, notebook_start=started + total - running)
    parts.update({f"cpu_{k}": v for k, v in cost.items()})
    return parts


def pod_selector_for(system: System, user: str) -> str:
    if system.name == "ours":
        return f"{LABEL_INSTANCE}={instance_name_for_user(user)}"
    return f"{KS_POD_SELECTOR},hub.jupyter.org/username={user}"


def runner_volume(bench: Bench, namespace: str, claim: str) -> None:
    runner: PodRunner = bench.runner  # type: ignore[attr-defined]
    runner.provide_volume(namespace, claim)


def stop_all(system: System, users: list[str], timeout: float) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: system.users.stop(u, timeout), users))


def summarize_rounds(rounds: list[dict[str, float]]) -> dict[str, Any]:
    keys = [k for k in rounds[0] if all(k in r for r in rounds)] if rounds else []
    return {k: summary([r[k] for r in rounds]) for k in keys}


# ---- burst -----------------------------------------------------------------------------------


def burst(bench: Bench, op: BenchOperator, control: Control, rss: RssPeaks, system: System,
          crowd: list[str], timeout: float) -> dict[str, Any]:
    s = system
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(s.users.add, crowd))
        list(pool.map(lambda u: runner_volume(bench, s.namespace, s.claim_for(u)), crowd))
    op.wait_idle(quiet=1.0)
    log(f"{s.name}: spawning {len(crowd)} users at once")
    rss.reset()
    cpu_before = control.now()
    answered: dict[str, float] = {}
    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(s.users.spawn, crowd))
    deadline = time.monotonic() + timeout
    while len(answered) < len(crowd):
        if time.monotonic() > deadline:
            missing = [u for u in crowd if u not in answered]
            raise BenchError(f"{s.name}: {len(missing)} users never answered: {missing[:5]}")
        pending = [u for u in crowd if u not in answered]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for user, ok in zip(pending, pool.map(s.users.answers, pending), strict=True):
                if ok:
                    answered[user] = time.time() - started
        time.sleep(0.25)
    all_answer = max(answered.values())
    op.wait_idle(quiet=1.5)
    cost = Control.spent(control.now(), cpu_before, s.name)
    peaks = rss.report()
    result = {
        "users": len(crowd),
        "all_answer_s": rounded(all_answer, 2),
        "per_user_s": summary(list(answered.values())),
        "hub_cpu_seconds": rounded(cost["hub"], 2),
        "cpu_seconds": {k: rounded(v, 2) for k, v in cost.items()},
        "control_side_cpu_per_spawn_s": rounded(cost["control_side"] / len(crowd)),
        "hub_peak_rss_mib_sampled": peaks.get(s.name),
        "hub_vmhwm_mib_so_far": mib(peak_rss_hwm(s.hub_pid)),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    log(f"{s.name}: burst of {len(crowd)}: all answer after {all_answer:.1f}s, "
        f"control CPU {cost['control_side']:.1f}s; stopping them")
    stop_all(s, crowd, timeout)
    op.wait_idle(quiet=1.5, timeout=timeout)
    return result


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 10, "sequential rounds (one spawn per system each)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds left out of the figures")
    parser.add_argument("--burst", type=int, default=20, help="users at once per system (0: skip)")
    parser.add_argument("--burst-rounds", type=int, default=1,
                        help="bursts per system, alternating which system goes first")
    parser.add_argument("--idle", type=int, default=0,
                        help="running servers per hub for the idle figures (0: skip)")
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    with Bench("kscompare") as bench:
        ns_ours = bench.namespace
        ns_ks = bench._namespace(f"{ns_ours}-ks")
        port = urlparse(str(bench.api.configuration.host)).port or 0
        node = ensure_loopback_node(bench.api, loopback_cidr(port), LOOPBACK_NODE)
        runner = PodRunner(bench.api, bench.tmp / "runner", node=node)
        runner.start()
        bench._stack.callback(runner.stop)
        bench.runner = runner  # type: ignore[attr-defined]
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns_ours, TEMPLATE_PLURAL,
                                                     template_body(ns_ours))
        op = bench.start_operator(workers=args.workers, sample_interval=args.sample_interval,
                                  extra=args.operator_arg)

        hub_ours = Hub(root=bench.tmp / "hub-ours", extra_config=COMMON_HUB_SETTINGS,
                       spawner_config={
                           "kubeconfig": str(bench.kubeconfig), "namespace": ns_ours,
                           "hub_namespace": ns_ours, "template_name": TEMPLATE,
                           "start_timeout": int(args.timeout)})
        hub_ks = Hub(root=bench.tmp / "hub-ks", spawner_class=KS_CLASS,
                     env={"KUBECONFIG": str(bench.kubeconfig)},
                     extra_config=COMMON_HUB_SETTINGS + kubespawner_settings(
                         ns_ks, int(args.timeout)))
        for hub in (hub_ours, hub_ks):
            bench._stack.callback(hub.stop)
            hub.start()
        kube = Kube(bench.api)
        systems = {
            "ours": System("ours", hub_ours, ns_ours,
                           lambda u: f"{instance_name_for_user(u)}-workspace",
                           Timeline(kube, ns_ours).start()),
            "ks": System("ks", hub_ks, ns_ks, lambda u: f"claim-{u}",
                         Timeline(kube, ns_ks, KS_POD_SELECTOR, instances=False).start()),
        }
        for s in systems.values():
            bench._stack.callback(s.timeline.stop)
        control = Control(bench, op, systems)
        rss = RssPeaks({name: s.hub_pid for name, s in systems.items()}).start()
        bench._stack.callback(rss.stop)
        result: dict[str, Any] = {
            **bench.result("kubespawner_compare", "POST /users/<u>/server -> /user/<u>/api/"
                           "status answers 200 through the proxy; ours = JupyternetesSpawner "
                           "+ operator, ks = KubeSpawner 7.1.0, same cluster, alternating"),
            "hub_rss_mib_after_start": {n: rss_now(s.hub_pid) for n, s in systems.items()},
        }

        # ---- sequential, alternating -----------------------------------------------------
        rounds: dict[str, list[dict[str, float]]] = {"ours": [], "ks": []}
        for i in range(args.warmup + args.count):
            order = ["ours", "ks"] if i % 2 == 0 else ["ks", "ours"]
            for name in order:
                s = systems[name]
                user = f"{name}s{i:03d}"
                parts = sequential_round(bench, op, control, s, user, args.timeout)
                log(f"{user}: {json.dumps({k: round(v, 2) for k, v in parts.items()})}"
                    f"{' (warmup)' if i < args.warmup else ''}")
                if i >= args.warmup:
                    rounds[name].append(parts)
                s.users.stop(user, args.timeout)
                op.wait_idle(quiet=1.0, timeout=args.timeout)
        if args.count:
            seq = {name: summarize_rounds(r) for name, r in rounds.items()}
            result["sequential"] = {
                "count_per_system": args.count,
                **seq,
                "ratio_ours_over_ks": {
                    "p50": ratio(seq["ours"]["total"]["p50"], seq["ks"]["total"]["p50"]),
                    "p95": ratio(seq["ours"]["total"]["p95"], seq["ks"]["total"]["p95"]),
                    "control_side_cpu_mean": ratio(seq["ours"]["cpu_control_side"]["mean"],
                                                   seq["ks"]["cpu_control_side"]["mean"]),
                },
                "extra_time_of_ours_p50_s": {
                    "total": rounded(seq["ours"]["total"]["p50"] - seq["ks"]["total"]["p50"]),
                    "request_until_pod_exists": rounded(
                        seq["ours"]["hub"]["p50"] + seq["ours"]["operator_engine"]["p50"]
                        - seq["ks"]["hub"]["p50"]),
                },
                "hub_rss_mib_after_sequential": {n: rss_now(s.hub_pid)
                                                 for n, s in systems.items()},
            }

        # ---- bursts, alternating -------------------------------------------------------------
        if args.burst:
            bursts: dict[str, list[dict[str, Any]]] = {"ours": [], "ks": []}
            for b in range(args.burst_rounds):
                order = ["ours", "ks"] if b % 2 == 0 else ["ks", "ours"]
                for name in order:
                    crowd = [f"{name}b{b}x{i:03d}" for i in range(args.burst)]
                    bursts[name].append(burst(bench, op, control, rss, systems[name], crowd,
                                              args.timeout * 2))
            result["burst"] = {
                **bursts,
                "ratio_ours_over_ks_all_answer": [
                    ratio(o["all_answer_s"], k["all_answer_s"])
                    for o, k in zip(bursts["ours"], bursts["ks"], strict=True)],
                "ratio_ours_over_ks_control_cpu_per_spawn": [
                    ratio(o["control_side_cpu_per_spawn_s"], k["control_side_cpu_per_spawn_s"])
                    for o, k in zip(bursts["ours"], bursts["ks"], strict=True)],
            }

        if args.idle:
            from kubespawner_idle import idle_phase
            result["idle"] = idle_phase(bench, op, systems, args)
        result["hub_vmhwm_mib_end"] = {n: mib(peak_rss_hwm(s.hub_pid))
                                       for n, s in systems.items()}
        emit(result)
    return 0


if __name__ == "__main__":
    run_main(main)
