"""The idle part of kubespawner_compare.py: each hub with N running servers, doing nothing.

What a hub pays for N running servers while nobody spawns: its poll of every server (every 30 s),
its watches (ours: instances, pods and Events of the servers' namespace; KubeSpawner: its pod
and Event reflectors), the proxy's route check. No notebook process is needed for that, so the
N servers are made without N spawns (N Pulumi `up`s would take most of an hour here):

1. one real spawn per hub (`<system>idleseed`) gives the objects a server of that spawner has
   (ours: the instance with the status the operator wrote, and its pod; KubeSpawner: its pod)
   and the spawner state the hub saved for it;
2. each hub is stopped; N copies of those objects are created in a fresh namespace per hub
   (ours' is not watched by the operator, so nothing reconciles the copies), the pods bound to
   a second kwok node whose podCIDR is a loopback /16 (kwok runs them: phase Running, ready,
   an IP), and N users with a running server (the copied spawner state, the pod's IP and port)
   are written into the hub's database with JupyterHub's own ORM;
3. one small asyncio HTTP listener on every copy's pod IP and port answers 200, so the hub's
   start-up check (`poll()`, then an HTTP request to each server) keeps every server;
4. both hubs start again (configured for the new namespaces), every server is listed as ready
   by the REST API, and then both idle side by side for `--idle-seconds`: the hub's CPU-seconds
   (per minute) and RSS are sampled over that same window.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import copy
import datetime
import threading
import time
from typing import Any

from benchlib.cli import BenchError, log
from benchlib.fixtures import Bench, BenchOperator
from benchlib.procs import read_proc, tree_cpu_seconds
from benchlib.summaries import mib, ratio, rounded
from benchlib.waiting import wait_until

from harness.cluster import KWOK_ANNOTATION
from harness.examples import strip_server_fields
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import instance_name_for_user

IDLE_NODE = "bench-idle"
IDLE_CIDR = "127.254.0.0/16"  # loopback; room for 65,000 pods


def idle_node(api_core: Any) -> None:
    """A kwok node for the copies: loopback pod IPs, no pod runner, no loopback label (so no
    template or KubeSpawner setting of this run ever schedules a real server there)."""
    api_core.create_node({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": IDLE_NODE, "annotations": {KWOK_ANNOTATION: "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": IDLE_NODE}},
        "spec": {"podCIDR": IDLE_CIDR, "podCIDRs": [IDLE_CIDR]}})


class Answerer:
    """One asyncio loop in a thread listening on many (ip, port): any request gets 200."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.AbstractServer] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="answerer",
                                       daemon=True)
        self.thread.start()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def listen(self, hosts: list[str], port: int) -> None:
        async def open_all() -> None:
            for i in range(0, len(hosts), 200):
                self.servers.append(await asyncio.start_server(
                    self._handle, host=hosts[i:i + 200], port=port, backlog=16))
        asyncio.run_coroutine_threadsafe(open_all(), self.loop).result(120)

    def stop(self) -> None:
        async def close_all() -> None:
            for server in self.servers:
                server.close()
        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def hub_orm(hub: Any) -> Any:
    from jupyterhub import orm  # the hub's own ORM (JupyterHub is installed for the harness)
    return orm, orm.new_session_factory(f"sqlite:///{hub.root / 'jupyterhub.sqlite'}")()


def saved_server(hub: Any, user: str) -> dict[str, Any]:
    """The seed user's default server as the hub saved it (state, port, base URL)."""
    orm, db = hub_orm(hub)
    try:
        row = db.query(orm.User).filter_by(name=user).one()
        spawner = next(s for s in row._orm_spawners if s.name == "")
        if spawner.server is None:
            raise BenchError(f"{user}: the hub saved no server")
        return {"state": dict(spawner.state or {}), "port": spawner.server.port,
                "proto": spawner.server.proto}
    finally:
        db.close()


def write_servers(hub: Any, servers: dict[str, dict[str, Any]]) -> None:
    """Users with a running default server, as the hub writes them after a spawn."""
    orm, db = hub_orm(hub)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    try:
        for name, s in servers.items():
            user = orm.User(name=name, created=now, last_activity=now)
            db.add(user)
            server = orm.Server(proto=s["proto"], ip=s["ip"], port=s["port"],
                                base_url=f"/user/{name}/", cookie_name=f"jupyterhub-user-{name}")
            db.add(server)
            db.add(orm.Spawner(user=user, name="", server=server, state=s["state"],
                               started=now, last_activity=now))
        db.commit()
    finally:
        db.close()


def wait_pods_running(core: Any, namespace: str, count: int, timeout: float) -> dict[str, str]:
    """pod name -> IP, once kwok runs every copy."""
    def check() -> dict[str, str] | None:
        pods = core.list_namespaced_pod(namespace).items
        ips = {p.metadata.name: p.status.pod_ip for p in pods
               if p.status.phase == "Running" and p.status.pod_ip}
        return ips if len(ips) >= count else None
    return wait_until(f"{count} pods running in {namespace}", check, timeout, interval=1.0)


def copy_ours(bench: Bench, seed_user: str, seed_ns: str, ns: str, users: list[str],
              saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Instances (with the seed's status) and pods for `users` in `ns`; their hub rows."""
    seed_name = instance_name_for_user(seed_user)
    seed = bench.custom.get_namespaced_custom_object(GROUP, VERSION, seed_ns, INSTANCE_PLURAL,
                                                     seed_name)
    (seed_pod,) = bench.api.sanitize_for_serialization(bench.core.list_namespaced_pod(
        seed_ns, label_selector=f"{LABEL_INSTANCE}={seed_name}").items)

    def make(user: str) -> tuple[str, str, str, int]:
        name = instance_name_for_user(user)
        body = strip_server_fields(seed)
        body["metadata"].update(name=name, namespace=ns)
        body["metadata"].pop("finalizers", None)
        text = _renamed(body, seed_user, user, seed_name, name)
        created = bench.custom.create_namespaced_custom_object(GROUP, VERSION, ns,
                                                               INSTANCE_PLURAL, text)
        pod = strip_server_fields(seed_pod)
        pod = _renamed(pod, seed_user, user, seed_name, name)
        pod["metadata"]["namespace"] = ns
        for ref in pod["metadata"].get("ownerReferences") or []:
            ref["uid"] = created["metadata"]["uid"]
        pod["spec"]["nodeName"] = IDLE_NODE
        pod["spec"].pop("nodeSelector", None)
        pod["spec"].pop("tolerations", None)
        bench.core.create_namespaced_pod(ns, pod)
        return user, name, created["metadata"]["uid"], created["metadata"]["generation"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        made = list(pool.map(make, users))
    ips = wait_pods_running(bench.core, ns, len(users), 600)
    pod_entry = next(iter(seed["status"]["pods"]))
    rows: dict[str, dict[str, Any]] = {}

    def status(item: tuple[str, str, str, int]) -> None:
        user, name, uid, generation = item
        st = _with_generation(_renamed(copy.deepcopy(seed["status"]), seed_user, user,
                                       seed_name, name), generation)
        pod_name = st["pods"][pod_entry]["resourceName"]
        st["pods"][pod_entry]["podAddress"] = ips[pod_name]
        bench.custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, INSTANCE_PLURAL,
                                                           name, {"status": st})
        rows[user] = {"state": {**saved["state"], "instance_name": name, "namespace": ns,
                                "instance_uid": uid},
                      "ip": ips[pod_name], "port": saved["port"], "proto": saved["proto"]}

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(status, made))
    return rows


def copy_ks(bench: Bench, seed_user: str, seed_ns: str, ns: str, users: list[str],
            saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """KubeSpawner pods for `users` in `ns` (named and labelled as KubeSpawner names them)."""
    seed_pod_name = saved["state"].get("pod_name") or f"jupyter-{seed_user}"
    seed_pod = bench.api.sanitize_for_serialization(
        bench.core.read_namespaced_pod(seed_pod_name, seed_ns))

    def make(user: str) -> None:
        pod = _renamed(strip_server_fields(seed_pod), seed_user, user, seed_pod_name,
                       f"jupyter-{user}")
        pod["metadata"]["namespace"] = ns
        pod["spec"]["nodeName"] = IDLE_NODE
        pod["spec"].pop("nodeSelector", None)
        pod["spec"].pop("tolerations", None)
        bench.core.create_namespaced_pod(ns, pod)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(make, users))
    ips = wait_pods_running(bench.core, ns, len(users), 600)
    return {user: {"state": {**saved["state"], "pod_name": f"jupyter-{user}", "namespace": ns},
                   "ip": ips[f"jupyter-{user}"], "port": saved["port"], "proto": saved["proto"]}
            for user in users}


def _renamed(obj: Any, seed_user: str, user: str, seed_name: str, name: str) -> Any:
    """`obj` with the seed's object name and user name replaced in every string (names,
    labels, env values, claim names), and the server's fields dropped."""
    if isinstance(obj, dict):
        return {_renamed(k, seed_user, user, seed_name, name):
                _renamed(v, seed_user, user, seed_name, name) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_renamed(v, seed_user, user, seed_name, name) for v in obj]
    if isinstance(obj, str):
        return obj.replace(seed_name, name).replace(seed_user, user)
    return obj


def _with_generation(obj: Any, generation: int) -> Any:
    """The seed's status observed the seed's generation; a copy's observes its own."""
    if isinstance(obj, dict):
        return {k: generation if k == "observedGeneration" else _with_generation(v, generation)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_with_generation(v, generation) for v in obj]
    return obj


def ready_servers(hub: Any) -> int:
    count, offset = 0, 0
    while True:
        status, body = hub.api("GET", f"/users?state=ready&offset={offset}&limit=200",
                               quiet=True)
        if status != 200 or not isinstance(body, list):
            return -1
        count += len(body)
        if len(body) < 200:
            return count
        offset += 200


def idle_phase(bench: Bench, op: BenchOperator, systems: dict[str, Any],
               args: argparse.Namespace) -> dict[str, Any]:
    from kubespawner_compare import kubespawner_settings  # the one copy of KS's settings

    n = args.idle
    idle_node(bench.core)
    for name, s in systems.items():
        user = f"{name}idleseed"
        s.users.add(user)
        bench.runner.provide_volume(s.namespace, s.claim_for(user))  # type: ignore[attr-defined]
        s.users.spawn_and_wait(user, args.timeout)
    op.wait_idle(quiet=1.0)
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for name, s in systems.items():
        seed_user = f"{name}idleseed"
        saved = saved_server(s.hub, seed_user)
        s.hub.stop_hub()
        ns = bench._namespace(f"{s.namespace}-idle")
        users = [f"{name}i{i:05d}" for i in range(n)]
        log(f"{name}: copying the seed server for {n} users into {ns}")
        copy = copy_ours if name == "ours" else copy_ks
        rows[name] = copy(bench, seed_user, s.namespace, ns, users, saved)
        write_servers(s.hub, rows[name])
        if name == "ours":
            s.hub.spawner_config["namespace"] = ns
        else:
            s.hub.extra_config = s.hub.extra_config.replace(
                kubespawner_settings(s.namespace, int(args.timeout)),
                kubespawner_settings(ns, int(args.timeout)))
    answerer = Answerer()
    bench._stack.callback(answerer.stop)
    for name in systems:
        ports = {r["port"] for r in rows[name].values()}
        for port in ports:
            answerer.listen([r["ip"] for r in rows[name].values() if r["port"] == port], port)
    log(f"listening on {sum(len(r) for r in rows.values())} pod addresses; starting both hubs")
    started: dict[str, float] = {}
    for name, s in systems.items():
        t0 = time.monotonic()
        s.hub.start(timeout=600)
        wait_until(f"{name}: {n} servers ready", lambda s=s: ready_servers(s.hub) >= n,
                   args.timeout, interval=2.0)
        started[name] = time.monotonic() - t0
        log(f"{name}: hub up with {ready_servers(s.hub)} ready servers after "
            f"{started[name]:.1f}s")
    # Let start-up work (first poll round, route additions) finish before the idle window.
    time.sleep(35)
    pids = {name: s.hub_pid for name, s in systems.items()}
    cpu0 = {name: tree_cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    api_pid = next(c.proc.pid for c in bench.cluster.components  # type: ignore[union-attr]
                   if c.name == "kube-apiserver" and c.proc is not None)
    api0 = tree_cpu_seconds(api_pid) or 0.0
    peaks = {name: 0 for name in pids}
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.idle_seconds:
        for name, pid in pids.items():
            proc = read_proc(pid)
            if proc is not None:
                peaks[name] = max(peaks[name], proc.rss)
        time.sleep(0.5)
    window = time.monotonic() - t0
    cpu = {name: (tree_cpu_seconds(pid) or 0.0) - cpu0[name] for name, pid in pids.items()}
    per_system = {name: {
        "servers_ready": ready_servers(systems[name].hub),
        "hub_start_until_all_ready_s": rounded(started[name], 1),
        "hub_cpu_seconds": rounded(cpu[name], 2),
        "hub_cpu_percent_of_one_core": rounded(100 * cpu[name] / window, 2),
        "hub_rss_mib_end": mib((read_proc(pids[name]) or read_proc(0) or _NoProc()).rss),
        "hub_rss_mib_peak_in_window": mib(peaks[name]),
    } for name in systems}
    return {
        "servers_per_hub": n,
        "window_s": rounded(window, 1),
        "how": "copies of one real server per hub (see benchmarks/kubespawner_idle.py)",
        **per_system,
        "apiserver_cpu_seconds_in_window_both_hubs": rounded(
            (tree_cpu_seconds(api_pid) or 0.0) - api0, 2),
        "ratio_ours_over_ks": {
            "hub_cpu": ratio(cpu["ours"], cpu["ks"]),
            "hub_rss_end": ratio(per_system["ours"]["hub_rss_mib_end"],
                                 per_system["ks"]["hub_rss_mib_end"]),
        },
    }


class _NoProc:
    rss = 0
