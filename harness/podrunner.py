"""The container runtime of the harness's loopback node: each pod's containers as local processes.

kwok plays the kubelet (it schedules nothing and runs nothing: it fills in node and pod status).
For the one node whose podCIDR is a loopback range (`cluster.LOOPBACK_NODE`), this runner plays
the container runtime: it watches that node's pods and, once kwok has given a pod its IP, starts
each container's command as a local process (its own process group) with the pod's environment
(`podenv`), bound to the pod IP, in a directory per PersistentVolumeClaim that outlives the pod:
the hostPath of the claim's bound PersistentVolume, as a kubelet mounts it (so a new claim of
the same name, bound to another volume, sees another directory).
It kills the processes when the pod is deleted (before kwok can hand the IP to another pod: the
watch delivers the deletion first) and marks the pod Failed (Succeeded on exit 0) with each
container's exit code when a process ends. Everything else (scheduling, IPs, readiness, deletion)
stays with the real control plane and kwok.

    runner = PodRunner(api_client, state_dir=Path("/tmp/runner")).start()
    ...
    runner.stop()       # kills every process it started; the PVC directories stay

Not played: image contents (commands run from this machine's PATH, the venv's bin first), init
containers, restarts (restartPolicy), probes, resource limits, volumes other than PVCs and
emptyDirs, users (processes run as the runner's user).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness import podenv
from harness.cluster import LOOPBACK_NODE, Component, loopback_node_manifest
from harness.runtime_status import (
    PID_SCHEME,
    config_error_status,
    exit_code,
    started_status,
    terminated_status,
)
from jupyternetes.kube.client import now_rfc3339
from jupyternetes.kube.errors import KubeError, WatchExpired, api_message
from jupyternetes.kube.informer import DELETED, KubeSource, ListWatcher
from jupyternetes.kube.listwatch import WatchStream

log = logging.getLogger(__name__)

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a deleted pod's processes
REAP_INTERVAL = 0.2


def ensure_loopback_node(api: client.ApiClient, pod_cidr: str, name: str = LOOPBACK_NODE,
                         timeout: float = 60.0) -> str:
    """Create the loopback node on a running cluster (kwok must manage nodes annotated
    `kwok.x-k8s.io/node=fake`, as the harness's does) and wait until kwok reports it Ready."""
    core = client.CoreV1Api(api)
    try:
        core.create_node(loopback_node_manifest(name, pod_cidr))
    except ApiException as exc:
        if exc.status != 409:
            raise
        existing = core.read_node(name).spec.pod_cidr
        if existing != pod_cidr:
            raise RuntimeError(f"node {name} exists with podCIDR {existing}, not {pod_cidr}; a "
                               "node's podCIDR cannot change: delete the node first") from exc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conditions = core.read_node(name).status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return name
        time.sleep(0.2)
    raise TimeoutError(f"node {name} not Ready after {timeout:.0f} s: is kwok running with "
                       "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake?")


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    ip: str
    sandbox: Path
    processes: dict[str, Component] = field(default_factory=dict)  # container name -> process
    started: dict[str, str] = field(default_factory=dict)  # container name -> startedAt


class PodRunner:
    """Runs the pods of one kwok node as local processes (see the module docstring)."""

    def __init__(self, api: client.ApiClient, state_dir: Path, node: str = LOOPBACK_NODE,
                 stop_grace: float = STOP_GRACE) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.node = node
        self.state_dir = Path(state_dir)
        self.stop_grace = stop_grace
        self._lock = threading.RLock()
        self._running: dict[str, RunningPod] = {}  # pod uid -> processes
        self._finished: set[str] = set()  # uids whose processes ended: never started again
        self._config_errors: dict[str, str] = {}  # uid -> last CreateContainerConfigError
        self._volumes: set[str] = set()  # PersistentVolumes made by provide_volume
        self._stop = threading.Event()
        self._watcher = ListWatcher(f"pods on {node}", KubeSource(self._list, self._watch),
                                    self._on_event, resync_seconds=2.0)
        self._reaper = threading.Thread(target=self._reap_loop, name="podrunner-reaper",
                                        daemon=True)

    # ---- public ----------------------------------------------------------------------------

    def start(self) -> PodRunner:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._watcher.start()
        self._reaper.start()
        if not self._watcher.wait_synced(30):
            self.stop()
            raise TimeoutError(f"pod runner: could not list pods on node {self.node}")
        return self

    def stop(self) -> None:
        """Stop watching and kill every process (the pods stay as they are; PVC dirs stay)."""
        self._stop.set()
        self._watcher.stop()
        if self._reaper.is_alive():
            self._reaper.join(5)
        with self._lock:
            for uid in list(self._running):
                self._kill(uid)

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        """Where the claim's data lives on this machine (outlives every pod that mounts it)."""
        return self.state_dir / "pvcs" / namespace / claim

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The container's stdout+stderr (appended across pods of the same name)."""
        return self.state_dir / "logs" / namespace / pod / f"{container}.log"

    def pids(self, namespace: str, pod: str) -> dict[str, int]:
        """Container name -> pid of the pod's running processes ({} when none run)."""
        with self._lock:
            for running in self._running.values():
                if (running.namespace, running.name) == (namespace, pod):
                    return {n: p.proc.pid for n, p in running.processes.items() if p.proc}
        return {}

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The host folder a pod mounting `claim` sees, found as a kubelet finds it: the claim's
        bound PersistentVolume (spec.volumeName) and its hostPath. A claim of the same name
        made later binds another volume and so sees another folder. Falls back to `pvc_dir`
        for a claim without a hostPath volume (not bound yet, or another kind of volume)."""
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(claim, namespace)
            volume = pvc.spec.volume_name if pvc.spec else None
            if volume:
                pv = self.core.read_persistent_volume(volume)
                if pv.spec and pv.spec.host_path and pv.spec.host_path.path:
                    return Path(pv.spec.host_path.path)
        except ApiException as exc:
            if exc.status != 404:
                raise
        return self.pvc_dir(namespace, claim)

    def provide_volume(self, namespace: str, claim: str, size: str = "1Gi",
                       storage_class: str = "") -> str:
        """A PersistentVolume pre-bound to `claim` (the harness has no provisioner; the
        scheduler holds a pod until its claim is bound), a hostPath at the claim's directory.

        When the volume provided before for that name was released (its claim was deleted: a
        Retain volume is never bound again), a new volume with a new folder is made, as a
        provisioner would: a new claim of the same name never sees the old claim's files."""
        # Readable, and unique per claim however long the names (a hash of both).
        digest = hashlib.sha256(f"{namespace}/{claim}".encode()).hexdigest()[:10]
        base = f"loopback-{f'{namespace}-{claim}'[:40].rstrip('-.')}-{digest}"
        for generation in range(1, 100):
            name = base if generation == 1 else f"{base}-{generation}"
            path = self.pvc_dir(namespace, claim)
            if generation > 1:
                path = path.with_name(f"{claim}.{generation}")
            try:
                existing = self.core.read_persistent_volume(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                existing = None
            if existing is not None and not self._released(existing, namespace, claim):
                return name  # provided before and still usable
            if existing is not None:
                continue  # released by a deleted claim: never reused
            path.mkdir(parents=True, exist_ok=True)
            self._volumes.add(name)
            with contextlib.suppress(ApiException):  # 409: provided concurrently
                self.core.create_persistent_volume({
                    "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                    "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                             "persistentVolumeReclaimPolicy": "Retain",
                             "storageClassName": storage_class,
                             "hostPath": {"path": str(path)},
                             "claimRef": {"namespace": namespace, "name": claim}},
                })
            return name
        raise RuntimeError(f"pod runner: 99 volumes for claim {namespace}/{claim} released")

    def _released(self, pv: client.V1PersistentVolume, namespace: str, claim: str) -> bool:
        """The volume was bound to an earlier claim of that name (Released, or still Bound to
        a claim uid that is gone: the PV controller has not caught up yet)."""
        if pv.status is not None and pv.status.phase in ("Released", "Failed"):
            return True
        ref = pv.spec.claim_ref if pv.spec else None
        if ref is None or not ref.uid:
            return False
        try:
            current = self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return True
        return current.metadata.uid != ref.uid

    def delete_volumes(self) -> None:
        """Delete the PersistentVolumes `provide_volume` made (their directories stay)."""
        for name in sorted(self._volumes):
            with contextlib.suppress(ApiException):
                self.core.delete_persistent_volume(name)
        self._volumes.clear()

    # ---- watch -----------------------------------------------------------------------------

    def _list(self) -> tuple[list[dict], str]:
        try:
            resp = self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node}", _preload_content=False)
        except ApiException as exc:
            raise KubeError(exc.status, api_message(exc), f"list pods on {self.node}") from exc
        body = json.loads(resp.data)
        return list(body.get("items") or []), str(body["metadata"].get("resourceVersion", ""))

    def _watch(self, resource_version: str, timeout_seconds: int) -> WatchStream:
        try:
            resp = self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node}", watch=True,
                resource_version=resource_version or None, allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds, _preload_content=False,
                _request_timeout=(10, timeout_seconds + 30))
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(api_message(exc)) from exc
            raise KubeError(exc.status, api_message(exc), f"watch pods on {self.node}") from exc
        return WatchStream(resp, f"watch pods on {self.node}")

    def _on_event(self, event_type: str, pod: dict) -> None:
        meta = pod.get("metadata") or {}
        uid, ns, name = meta.get("uid", ""), meta.get("namespace", ""), meta.get("name", "")
        status = pod.get("status") or {}
        with self._lock:
            if self._stop.is_set():
                return
            # A pod of the same name but another uid replaced one we ran (seen only by a relist).
            for other in [r for r in self._running.values()
                          if (r.namespace, r.name) == (ns, name) and r.uid != uid]:
                self._kill(other.uid)
            if event_type == DELETED or meta.get("deletionTimestamp"):
                self._kill(uid)
                self._finished.discard(uid)
                self._config_errors.pop(uid, None)
                return
            if status.get("phase") in ("Failed", "Succeeded"):
                self._kill(uid)
                self._finished.add(uid)
                return
            ip = status.get("podIP")
            if not ip or uid in self._running or uid in self._finished:
                return
            # kwok reuses an IP as soon as its pod is gone: never two processes on one IP.
            for other in [r for r in self._running.values() if r.ip == ip]:
                log.warning("pod runner: %s/%s got IP %s still used by %s/%s; stopping that one",
                            ns, name, ip, other.namespace, other.name)
                self._kill(other.uid)
            self._start_pod(pod, ip)

    # ---- processes -------------------------------------------------------------------------

    def _lookup(self, kind: str, namespace: str):  # -> podenv.Lookup
        def read(name: str) -> dict[str, str] | None:
            try:
                if kind == "Secret":
                    obj = self.core.read_namespaced_secret(name, namespace)
                    return {k: base64.b64decode(v).decode("utf-8", "replace")
                            for k, v in (obj.data or {}).items()}
                return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return read

    def _start_pod(self, pod: dict, ip: str) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        sandbox = self.state_dir / "pods" / uid
        running = RunningPod(uid, ns, name, ip, sandbox)
        secrets, configmaps = self._lookup("Secret", ns), self._lookup("ConfigMap", ns)
        try:
            plans = []
            for container in spec.get("containers") or []:
                env = podenv.container_env(pod, container, secrets=secrets, configmaps=configmaps)
                plans.append((container, env))
        except podenv.ContainerConfigError as exc:
            message = str(exc)
            if self._config_errors.get(uid) != message:
                self._config_errors[uid] = message
                log.warning("pod runner: %s", message)
                self._patch_status(ns, name, config_error_status(pod, message, now_rfc3339()))
            return  # retried on the next event or resync (every 2 s), like a kubelet
        self._config_errors.pop(uid, None)
        for container, env in plans:
            cname = container["name"]
            mounts, warnings = podenv.container_mounts(
                pod, container, rootfs=sandbox / "rootfs",
                claim_dir=lambda claim: self.claim_dir(ns, claim),
                empty_dir=lambda volume: sandbox / "volumes" / volume)
            workdir = podenv.working_dir(container, mounts)
            for d in [mounts.rootfs, workdir, *mounts.by_path.values()]:
                d.mkdir(parents=True, exist_ok=True)
            home = sandbox / "home"
            home.mkdir(parents=True, exist_ok=True)
            base = {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                             os.environ.get("PATH", "/usr/bin:/bin")]),
                    "HOME": str(home), "HOSTNAME": name, "LANG": "C.UTF-8"}
            full_env = {**base, **env}
            argv = podenv.container_argv(container, full_env)
            if podenv.is_singleuser(argv):
                argv += podenv.singleuser_flags(ip, workdir, as_root=os.geteuid() == 0)
            program = shutil.which(argv[0], path=full_env.get("PATH")) or argv[0]
            logfile = self.log_path(ns, name, cname)
            logfile.parent.mkdir(parents=True, exist_ok=True)
            with logfile.open("a") as out:
                out.write(f"===== pod {ns}/{name} uid {uid} ip {ip} at {now_rfc3339()}\n"
                          f"===== cwd {workdir}\n===== argv {argv}\n")
                for warning in warnings:
                    out.write(f"===== warning: {warning}\n")
            proc = Component(f"{ns}/{name}/{cname}", [program, *argv[1:]], logfile,
                             env=full_env, cwd=workdir)
            try:
                proc.start()
            except OSError as exc:
                # The runtime's "executable not found": the container exits 127 at once.
                with logfile.open("a") as out:
                    out.write(f"===== cannot start {argv[0]!r}: {exc}\n")
                running.started[cname] = now_rfc3339()
                self._running[uid] = running
                self._finish(running, {cname: 127})
                return
            running.processes[cname] = proc
            running.started[cname] = now_rfc3339()
        self._running[uid] = running
        log.info("pod runner: started %s/%s on %s: %s", ns, name, ip,
                 {c: p.proc.pid for c, p in running.processes.items() if p.proc})
        self._patch_started(pod, running)

    def _patch_started(self, pod: dict, running: RunningPod) -> None:
        ids = {c: f"{PID_SCHEME}{p.proc.pid}" for c, p in running.processes.items() if p.proc}
        self._patch_status(running.namespace, running.name,
                           started_status(pod, running.started, ids, now_rfc3339()))

    def _kill(self, uid: str) -> None:
        running = self._running.pop(uid, None)
        if running is None:
            return
        for proc in running.processes.values():
            proc.stop(grace=self.stop_grace)
        shutil.rmtree(running.sandbox, ignore_errors=True)
        log.info("pod runner: stopped %s/%s", running.namespace, running.name)

    def _finish(self, running: RunningPod, codes: dict[str, int]) -> None:
        """Some process of the pod ended: stop the rest, mark the pod terminated."""
        self._running.pop(running.uid, None)
        self._finished.add(running.uid)
        for cname, proc in running.processes.items():
            proc.stop(grace=self.stop_grace)  # also sweeps what an exited process left behind
            if cname not in codes and proc.proc is not None:
                codes[cname] = exit_code(proc.proc.returncode or 0)
        pod = self._watcher.get(f"{running.namespace}/{running.name}") or {}
        if (pod.get("metadata") or {}).get("uid") != running.uid:
            return  # already gone
        exits = {c: (code, running.started.get(c, now_rfc3339()),
                     f"{PID_SCHEME}{p.proc.pid}" if (p := running.processes.get(c)) and p.proc
                     else "")
                 for c, code in codes.items()}
        log.info("pod runner: %s/%s exited %s", running.namespace, running.name, codes)
        self._patch_status(running.namespace, running.name,
                           terminated_status(pod, exits, now_rfc3339()))
        shutil.rmtree(running.sandbox, ignore_errors=True)

    def _reap_loop(self) -> None:
        while not self._stop.wait(REAP_INTERVAL):
            with self._lock:
                for running in list(self._running.values()):
                    codes = {c: exit_code(p.proc.returncode)
                             for c, p in running.processes.items()
                             if p.proc is not None and p.proc.poll() is not None}
                    if codes and not self._stop.is_set():
                        self._finish(running, codes)

    def _patch_status(self, namespace: str, name: str, status: dict) -> None:
        try:
            self.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("pod runner: status of %s/%s: %s", namespace, name,
                            api_message(exc))


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.podrunner --kubeconfig K --state-dir D`: create the
    loopback node if needed and run its pods until Ctrl-C (e.g. beside `harness.cluster up`)."""
    import argparse
    import signal
    from urllib.parse import urlparse

    from harness.cluster import loopback_cidr
    from jupyternetes.kube.client import api_client

    parser = argparse.ArgumentParser(prog="python -m harness.podrunner",
                                     description=main.__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", type=Path, required=True,
                        help="PVC directories, process logs, per-pod folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    api = api_client(args.kubeconfig)
    port = urlparse(api.configuration.host).port or 0
    node = ensure_loopback_node(api, loopback_cidr(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with PodRunner(api, args.state_dir, node=node):
        log.info("running the pods of node %s (pod CIDR %s); state in %s", node,
                 loopback_cidr(port), args.state_dir)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
