"""Spawn through JupyterHub: request -> the server answers through the proxy; burst; memory.

A real `jupyterhub` (JupyternetesSpawner) and configurable-http-proxy, the operator, and the
harness's loopback node whose pods the pod runner starts as local `jupyterhub-singleuser`
processes. Measured:
- sequential spawns (`--count`, after `--warmup`): POST /users/<u>/server -> GET
  /user/<u>/api/status answers 200 through the proxy (with the user's token), split by our own
  watches into hub (request -> instance exists), operator/engine (instance -> pod exists), pod
  start (pod exists -> its container runs) and notebook start (container runs -> answers through
  the proxy, which includes the hub noticing Ready, its HTTP check and the proxy route);
- the floor: the same requests against a second hub with JupyterHub's own
  SimpleLocalProcessSpawner (local processes, no cluster), and the ratio;
- a burst: `--burst` users at once, time until every one answers; peak RSS (VmHWM) of the hub
  and the operator, and the operator's engine processes (sampled).

Usage: .venv/bin/python benchmarks/spawn.py [--count 10] [--burst 50] [--workers 4]
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import time
from typing import Any
from urllib.parse import urlparse

import requests
from benchlib.cli import BenchError, arguments, log, run_main
from benchlib.fixtures import Bench
from benchlib.procs import peak_rss_hwm
from benchlib.summaries import emit, mib, ratio, summary
from benchlib.waiting import wait_until

from harness.cluster import LOOPBACK_NODE, loopback_cidr, loopback_placement
from harness.examples import load_example
from harness.hub import Hub
from harness.podrunner import PodRunner, ensure_loopback_node
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.kube.client import Kube
from jupyternetes.kube.informer import KubeSource, ListWatcher

TEMPLATE = "spawner-template"
HUB_SETTINGS = "c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n"


class Timeline:
    """First time our own watches saw each instance, each pod, and each pod's container run."""

    def __init__(self, kube: Kube, namespace: str, pod_selector: str = LABEL_INSTANCE,
                 instances: bool = True) -> None:
        """`pod_selector`: the servers' pods (another spawner labels its own way);
        `instances=False`: no instance watch (a spawner that makes pods itself)."""
        self.instance_seen: dict[str, float] = {}
        self.pod_seen: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.watchers = [
            ListWatcher(f"bench-pods-{namespace}", KubeSource(
                lambda: kube.list_pods(namespace, pod_selector),
                lambda rv, t: kube.watch_pods(namespace, pod_selector, rv, t)), self._pod,
                resync_seconds=0),
        ]
        if instances:
            self.watchers.append(ListWatcher(f"bench-instances-{namespace}", KubeSource(
                lambda: kube.list_instances(namespace),
                lambda rv, t: kube.watch_instances(namespace, rv, t)), self._instance,
                resync_seconds=0))

    def start(self) -> Timeline:
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            if not w.wait_synced(30):
                raise BenchError(f"watch {w.name} did not sync")
        return self

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()

    def _instance(self, event: str, obj: dict) -> None:
        if event != "DELETED":
            self.instance_seen.setdefault(obj["metadata"]["uid"], time.time())

    def _pod(self, event: str, obj: dict) -> None:
        if event == "DELETED":
            return
        now = time.time()
        uid = obj["metadata"]["uid"]
        self.pod_seen.setdefault(uid, now)
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        if statuses and all((s.get("state") or {}).get("running") for s in statuses):
            self.pod_running.setdefault(uid, now)


class HubUsers:
    """Users of one hub: create, spawn, wait until the server answers through the proxy."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.tokens: dict[str, str] = {}

    def add(self, user: str) -> None:
        status, body = self.hub.api("POST", f"/users/{user}")
        if status not in (201, 409):
            raise BenchError(f"create user {user}: HTTP {status} {body}")
        status, body = self.hub.api("POST", f"/users/{user}/tokens", {"expires_in": 7200})
        if status != 201:
            raise BenchError(f"token for {user}: HTTP {status} {body}")
        self.tokens[user] = body["token"]

    def spawn(self, user: str) -> None:
        status, body = self.hub.api("POST", f"/users/{user}/server", {})
        if status not in (201, 202):
            raise BenchError(f"spawn {user}: HTTP {status} {body}")

    def answers(self, user: str) -> bool:
        try:
            resp = requests.get(f"{self.hub.url}/user/{user}/api/status", timeout=10,
                                allow_redirects=False,
                                headers={"Authorization": f"token {self.tokens[user]}"})
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def spawn_and_wait(self, user: str, timeout: float) -> float:
        """Seconds from the spawn request until the server answers through the proxy."""
        started = time.time()
        self.spawn(user)
        deadline = time.monotonic() + timeout
        while not self.answers(user):
            if time.monotonic() > deadline:
                tail = self.hub.hub_process.log_tail() if self.hub.hub_process else ""
                raise BenchError(f"{user} did not answer within {timeout:.0f}s\n{tail}")
            time.sleep(0.05)
        return time.time() - started

    def stop(self, user: str, timeout: float) -> None:
        status, body = self.hub.api("DELETE", f"/users/{user}/server")
        if status not in (202, 204):
            raise BenchError(f"stop {user}: HTTP {status} {body}")
        wait_until(f"{user} stopped", lambda: (self.hub.api("GET", f"/users/{user}")[1]
                                               .get("servers") or {}).get("") is None, timeout)


def template_body(namespace: str) -> dict:
    body = load_example("spawner-template.yaml")
    body["metadata"] = {"name": TEMPLATE, "namespace": namespace}
    body["spec"]["pods"][0]["spec"].update(loopback_placement())
    return body


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 10, "sequential spawns")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--burst", type=int, default=50, help="users at once (0: skip)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    with Bench("spawn") as bench:
        ns = bench.namespace
        port = urlparse(str(bench.api.configuration.host)).port or 0
        node = ensure_loopback_node(bench.api, loopback_cidr(port), LOOPBACK_NODE)
        runner = PodRunner(bench.api, bench.tmp / "runner", node=node)
        runner.start()
        bench._stack.callback(runner.stop)
        bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL,
                                                     template_body(ns))
        op = bench.start_operator(workers=args.workers, sample_interval=args.sample_interval,
                                  extra=args.operator_arg)
        hub = Hub(root=bench.tmp / "hub", extra_config=HUB_SETTINGS, spawner_config={
            "kubeconfig": str(bench.kubeconfig), "namespace": ns, "hub_namespace": ns,
            "template_name": TEMPLATE, "start_timeout": int(args.timeout)})
        bench._stack.callback(hub.stop)
        hub.start()
        timeline = Timeline(Kube(bench.api), ns).start()
        bench._stack.callback(timeline.stop)
        users = HubUsers(hub)

        # ---- sequential, through the operator ------------------------------------------------
        rounds: list[dict[str, float]] = []
        for i in range(args.warmup + args.count):
            user = f"seq{i:03d}"
            users.add(user)
            runner.provide_volume(ns, f"{instance_name_for_user(user)}-workspace")
            started = time.time()
            total = users.spawn_and_wait(user, args.timeout)
            instance = bench.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, INSTANCE_PLURAL, instance_name_for_user(user))
            pod = bench.core.list_namespaced_pod(
                ns, label_selector=f"{LABEL_INSTANCE}={instance['metadata']['name']}").items[0]
            seen = timeline.instance_seen[instance["metadata"]["uid"]]
            pod_seen = timeline.pod_seen[pod.metadata.uid]
            running = timeline.pod_running.get(pod.metadata.uid, pod_seen)
            parts = {"total": total, "hub": seen - started, "operator_engine": pod_seen - seen,
                     "pod_start": running - pod_seen,
                     "notebook_start": started + total - running}
            log(f"{user}: {json.dumps({k: round(v, 2) for k, v in parts.items()})}"
                f"{' (warmup)' if i < args.warmup else ''}")
            if i >= args.warmup:
                rounds.append(parts)
            users.stop(user, args.timeout)

        # ---- the floor: the hub's own local-process spawner ----------------------------------
        # Same hub settings; the notebook runs as this user (root needs --allow-root, which
        # the pod runner adds for the loopback pods too).
        floor_settings = HUB_SETTINGS + "c.Spawner.http_timeout = 120\n" + (
            "c.Spawner.args = ['--allow-root']\n" if os.geteuid() == 0 else "")
        floor_hub = Hub(root=bench.tmp / "floor-hub", spawner_class="simple",
                        extra_config=floor_settings)
        bench._stack.callback(floor_hub.stop)
        floor_hub.start()
        floor_users = HubUsers(floor_hub)
        floor: list[float] = []
        for i in range(args.warmup + args.count):
            user = f"floor{i:03d}"
            floor_users.add(user)
            seconds = floor_users.spawn_and_wait(user, args.timeout)
            log(f"{user}: {seconds:.2f}s (SimpleLocalProcessSpawner)")
            if i >= args.warmup:
                floor.append(seconds)
            floor_users.stop(user, args.timeout)
        floor_hub.stop()

        totals = [r["total"] for r in rounds]
        result: dict[str, Any] = {
            **bench.result("spawn", "POST /users/<u>/server -> /user/<u>/api/status answers "
                           "200 through the proxy"),
            "sequential": {
                "count": len(rounds),
                "jupyternetes_s": summary(totals),
                "breakdown_s": {k: summary([r[k] for r in rounds])
                                for k in ("hub", "operator_engine", "pod_start",
                                          "notebook_start")},
                "floor_simple_local_process_s": summary(floor),
                "ratio_p50": ratio(summary(totals).get("p50"), summary(floor).get("p50")),
                "ratio_p95": ratio(summary(totals).get("p95"), summary(floor).get("p95")),
            },
        }

        # ---- burst ---------------------------------------------------------------------------
        if args.burst:
            crowd = [f"burst{i:03d}" for i in range(args.burst)]
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(users.add, crowd))
                list(pool.map(lambda u: runner.provide_volume(
                    ns, f"{instance_name_for_user(u)}-workspace"), crowd))
            log(f"spawning {len(crowd)} users at once")
            answered: dict[str, float] = {}
            started = time.time()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(users.spawn, crowd))
            deadline = time.monotonic() + args.timeout * 2
            lock = threading.Lock()
            while len(answered) < len(crowd):
                if time.monotonic() > deadline:
                    missing = [u for u in crowd if u not in answered]
                    raise BenchError(f"{len(missing)} users never answered: {missing[:5]}")
                pending = [u for u in crowd if u not in answered]
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    for user, ok in zip(pending, pool.map(users.answers, pending), strict=True):
                        if ok:
                            with lock:
                                answered[user] = time.time() - started
                time.sleep(0.5)
            assert hub.hub_process is not None and hub.hub_process.proc is not None
            result["burst"] = {
                "users": len(crowd),
                "all_answer_s": round(max(answered.values()), 2),
                "per_user_s": summary(list(answered.values())),
                "peak_rss_mib": {
                    "hub": mib(peak_rss_hwm(hub.hub_process.proc.pid)),
                    "operator": mib(peak_rss_hwm(op.pid)),
                },
                "operator_tree": op.sampler.report() if op.sampler else None,
            }
        result["machine_note"] = "see machine.loadavg: a shared 2-core box"
        emit(result)
    return 0


if __name__ == "__main__":
    run_main(main)
