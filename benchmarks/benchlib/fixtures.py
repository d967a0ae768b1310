"""Cluster fixtures: control plane, CRDs, seed template, namespaces, volumes, operator process.

`Bench` is one run: it owns everything it starts or creates and removes it on exit, on error and
on Ctrl-C alike.
"""

from __future__ import annotations

import calendar
import concurrent.futures
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from benchlib.cli import BenchError, log
from benchlib.procs import TreeSampler, sweep
from benchlib.summaries import kubernetes_provider_version, machine
from harness import pulumi_env as harness_pulumi
from harness.cluster import DevCluster
from harness.crds import apply_crds
from harness.examples import load_example, shared_template, strip_server_fields
from harness.operator_process import (
    MetricsSnapshot,
    OperatorProcess,
    console_command,
)
from jupyternetes.crd.definitions import (
    GROUP,
    INSTANCE_PLURAL,
    TEMPLATE_PLURAL,
    VERSION,
    load_crd_documents,
)
from jupyternetes.crd.labels import LABEL_PREFIX
from jupyternetes.crd.model import Instance, Template
from jupyternetes.crd.naming import object_name
from jupyternetes.render.objects import render

EXTERNAL_KUBECONFIG_ENV = "JUPYTERNETES_BENCH_KUBECONFIG"
HUB_NAMESPACE = "kadense"
SEED_TEMPLATE = "default-template"
SEED_VOLUME = "workspace"  # the seed template's one PVC entry
BENCH_LABEL = f"{LABEL_PREFIX}/benchmark"


_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z$")


def parse_log_ts(ts: str) -> float | None:
    """The operator's JSON log `ts` (UTC, milliseconds) as a Unix time."""
    match = _LOG_TS.match(ts or "")
    if not match:
        return None
    return calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")) + int(
        match.group(2)) / 1000.0


class BenchOperator(OperatorProcess):
    """The operator as a benchmark runs it: the console script, JSON logs, /metrics, its
    process tree sampled from the moment it is spawned, and nothing left behind on exit."""

    def __init__(self, kubeconfig: Path, env: Mapping[str, str], state_dir: Path,
                 pulumi_home: Path, namespaces: Sequence[str], log_path: Path, *,
                 workers: int = 4, resync_seconds: float = 300.0, extra: Sequence[str] = (),
                 sample_interval: float = 0.1) -> None:
        super().__init__(kubeconfig, env, state_dir, pulumi_home, namespaces, log_path,
                         workers=workers, resync_seconds=resync_seconds, log_format="json",
                         extra=extra, command=console_command(), die_with_parent=True,
                         http_timeout=10.0)
        self.sample_interval = sample_interval
        self.sampler: TreeSampler | None = None

    def on_spawn(self) -> None:
        # Always sampled: the samples also list every engine process, for the final sweep.
        self.sampler = TreeSampler(self.pid, self.sample_interval).start()

    def wait_idle(self, quiet: float = 1.5, timeout: float = 600.0) -> MetricsSnapshot:
        """Until nothing is queued or running and no reconcile happened for `quiet` seconds."""
        last: MetricsSnapshot | None = None
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            snap = self.metrics()
            busy = snap.queue_depth > 0 or snap.in_flight > 0
            if last is None or busy or snap.reconciles != last.reconciles:
                since = time.monotonic()
            elif time.monotonic() - since >= quiet:
                return snap
            last = snap
            time.sleep(0.1)
        raise BenchError(f"the operator did not go idle within {timeout:.0f}s\n{self.log_tail()}")

    def log_records(self) -> Iterator[dict[str, Any]]:
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    yield json.loads(line)

    def stop(self, timeout: float = 90.0) -> int | None:
        """SIGTERM (the operator finishes in-flight work), then SIGKILL; then end any engine
        process of this operator that is still alive (by pid + start time, never by name)."""
        if self.proc is None:
            return None
        if self.sampler is not None:
            with contextlib.suppress(Exception):
                self.sampler.sample_once()
        code: int | None = self.proc.returncode
        if self.running():
            try:
                code = self.terminate(timeout)
            except subprocess.TimeoutExpired:
                log(f"operator {self.pid} ignored SIGTERM for {timeout:.0f}s; killing it")
                code = self.kill()
        if self.sampler is not None:
            self.sampler.stop()
            leftovers = sweep(self.sampler.seen.values())
            if leftovers:
                log(f"killed {len(leftovers)} engine process(es) the operator left behind: "
                    f"{leftovers}")
        return code



@dataclass
class Bench:
    """One benchmark run: cluster, CRDs, seed template, a fresh namespace, a temp folder.

    Use as a context manager; everything created is removed on exit (a DevCluster is stopped
    whole; on an external cluster the namespaces, PVs, and whatever CRDs/template this run
    created are deleted)."""

    name: str
    floor_namespace: bool = False
    kubeconfig: Path = field(init=False)
    external: bool = field(init=False, default=False)
    namespace: str = field(init=False)
    floor_ns: str | None = field(init=False, default=None)
    tmp: Path = field(init=False)
    api: client.ApiClient = field(init=False)
    core: client.CoreV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)
    pulumi_env: dict[str, str] = field(init=False)
    pulumi_home: Path = field(init=False)
    template: dict = field(init=False)  # the seed template as the apiserver returned it
    # The harness's control plane when the run started one (its components' pids, for /proc).
    cluster: DevCluster | None = field(init=False, default=None)
    _stack: contextlib.ExitStack = field(init=False, default_factory=contextlib.ExitStack)
    _operators: list[BenchOperator] = field(init=False, default_factory=list)
    _volumes: list[str] = field(init=False, default_factory=list)

    def __enter__(self) -> Bench:
        # Ctrl-C and SIGTERM both unwind through __exit__, so the cleanup always runs.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        log("cleaning up")
        self._stack.close()

    def _setup(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"jupyternetes-bench-{self.name}-"))
        self._stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        self._check_engine()
        external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
        if external:
            self.kubeconfig = Path(external).expanduser()
            if not self.kubeconfig.is_file():
                raise BenchError(f"{EXTERNAL_KUBECONFIG_ENV}={external} is not a kubeconfig file")
            self.external = True
            log(f"using the cluster of {self.kubeconfig}")
        else:
            log("starting the harness DevCluster")
            cluster = DevCluster()
            self._stack.callback(cluster.stop)
            cluster.start()
            self.cluster = cluster
            self.kubeconfig = cluster.kubeconfig
            log(f"DevCluster up in {cluster.timing.get('total', 0):.1f}s at {cluster.server}")
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self._stack.callback(self.api.close)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._apply_crds()
        self._seed_template()
        suffix = uuid.uuid4().hex[:6]
        self.namespace = self._namespace(f"bench-{self.name}-{suffix}")
        if self.floor_namespace:
            self.floor_ns = self._namespace(f"bench-{self.name}-floor-{suffix}")
        # Registered last, so it runs first: operators stop before their namespace goes.
        self._stack.callback(self._stop_operators)
        self._stack.callback(self._delete_volumes)

        state_dir = self.tmp / "state"
        passphrase = secrets.token_urlsafe(24)
        self.pulumi_home = harness_pulumi.paths.pulumi_home()
        self.pulumi_env = harness_pulumi.pulumi_env(harness_pulumi.backend_url(state_dir),
                                                    passphrase, pulumi_home=self.pulumi_home)

    def _check_engine(self) -> None:
        harness_pulumi.pulumi_command()  # raises with the build command when the CLI is missing
        version = kubernetes_provider_version()
        plugin = harness_pulumi.kubernetes_plugin_dir(version)
        if not plugin.is_dir() or not any(plugin.iterdir()):
            raise BenchError(f"the Pulumi Kubernetes provider v{version} is not installed in "
                             f"{plugin}; build it with `bash tools/harness/build.sh`")

    def _apply_crds(self) -> None:
        docs = load_crd_documents()
        if self.external:
            # Remove afterwards only the CRDs this run brought to someone else's cluster.
            ext = client.ApiextensionsV1Api(self.api)
            existing = {crd.metadata.name for crd in ext.list_custom_resource_definition().items}
            for doc in docs:
                if doc["metadata"]["name"] not in existing:
                    self._stack.callback(_ignore_404, ext.delete_custom_resource_definition,
                                         doc["metadata"]["name"])
        apply_crds(self.api, docs)

    def _seed_template(self) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": HUB_NAMESPACE}})
            if self.external:
                self._stack.callback(_ignore_404, self.core.delete_namespace, HUB_NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        # Used from the bench namespaces: the template says so (spec.allowedNamespaces).
        body = shared_template(strip_server_fields(load_example("seed-template.yaml")))
        try:
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
            if self.external:
                self._stack.callback(_ignore_404, self.custom.delete_namespaced_custom_object,
                                     GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, SEED_TEMPLATE)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.template = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, SEED_TEMPLATE)

    def _namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name, "labels": {BENCH_LABEL: "true"}}})
        self._stack.callback(self._delete_namespace, name)
        return name

    def _delete_namespace(self, name: str) -> None:
        if not self.external:
            return  # the whole DevCluster goes away
        # The operator is stopped by now: drop our finalizers so the namespace can go.
        with contextlib.suppress(client.ApiException):
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, name, INSTANCE_PLURAL)
            for item in items.get("items") or []:
                with contextlib.suppress(client.ApiException):
                    self.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, name, INSTANCE_PLURAL, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
        _ignore_404(self.core.delete_namespace, name, propagation_policy="Background")

    # ---- objects ------------------------------------------------------------------------

    def instance_body(self, name: str, namespace: str | None = None) -> dict:
        """The seed instance, renamed, with a hub user of the same name: every instance is a
        user's own server, as the hub would create it."""
        ns = namespace or self.namespace
        body = strip_server_fields(load_example("seed-instance.yaml"))
        body["metadata"] = {"name": name, "namespace": ns}
        body["spec"]["template"] = {"name": SEED_TEMPLATE, "namespace": HUB_NAMESPACE}
        variables = body["spec"]["variables"]
        variables["jupyternetes.instance.name"] = name
        variables["jupyternetes.instance.namespace"] = ns
        variables["jupyterhub.user.name"] = name
        return body

    def create_instance(self, name: str) -> dict:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, INSTANCE_PLURAL, self.instance_body(name))

    def create_instances(self, names: Sequence[str], parallel: int = 8) -> None:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(self.create_instance, names))

    def rendered_objects(self, instance_name: str, namespace: str) -> list[dict]:
        """What the operator would create for this instance: PVC manifests, then pods."""
        template = Template.from_dict(self.template, source="seed template")
        body = self.instance_body(instance_name, namespace)
        return render(template, Instance.from_dict(body, source="bench")).manifests()

    def create_directly(self, instance_name: str, namespace: str) -> list[str]:
        """The instance's PVCs, then its pods, created with the kubernetes client in the
        operator's order, without the operator (a benchmark's floor or baseline); the pods'
        `namespace/name` keys, to wait for."""
        manifests = self.rendered_objects(instance_name, namespace)
        for manifest in manifests:
            if manifest["kind"] == "PersistentVolumeClaim":
                self.core.create_namespaced_persistent_volume_claim(namespace, manifest)
            elif manifest["kind"] == "Pod":
                self.core.create_namespaced_pod(namespace, manifest)
            else:
                raise BenchError(f"the seed template renders a {manifest['kind']}; a direct "
                                 "create only knows PVCs and pods")
        return [f"{namespace}/{m['metadata']['name']}" for m in manifests if m["kind"] == "Pod"]

    def provide_volume(self, namespace: str, instance: str) -> None:
        """A static PV pre-bound to the PVC name the instance will get (the harness has no
        provisioner): the pod gets scheduled and kwok runs it, as on a real cluster."""
        claim = object_name(instance, SEED_VOLUME)
        name = f"bench-{namespace}-{claim}"[:253]
        self.core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                     "hostPath": {"path": f"/tmp/jupyternetes-bench/{name}"},
                     "claimRef": {"namespace": namespace, "name": claim}}})
        self._volumes.append(name)

    def provide_volumes(self, namespace: str, instances: Sequence[str]) -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: self.provide_volume(namespace, n), instances))

    def numbered_instances(self, prefix: str, count: int) -> list[str]:
        """Names `prefix-000`...: instances to create in the benchmark's namespace, each with
        its volume already provided."""
        names = [f"{prefix}-{i:03d}" for i in range(count)]
        self.provide_volumes(self.namespace, names)
        return names

    def _delete_volumes(self) -> None:
        if not self.external:
            return
        for name in self._volumes:
            _ignore_404(self.core.delete_persistent_volume, name)

    def instances(self) -> list[dict]:
        return self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, INSTANCE_PLURAL).get("items") or []

    def instance_events(self, name: str) -> list[dict]:
        resp = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}",
            _preload_content=False)
        return json.loads(resp.data).get("items") or []

    # ---- operator -----------------------------------------------------------------------

    def start_operator(self, *, workers: int = 4, resync_seconds: float = 300.0,
                       sample_interval: float = 0.1,
                       extra: Sequence[str] = ()) -> BenchOperator:
        op = BenchOperator(self.kubeconfig, self.pulumi_env, self.tmp / "operator-state",
                           self.pulumi_home, [self.namespace],
                           self.tmp / f"operator-{len(self._operators)}.log",
                           workers=workers, resync_seconds=resync_seconds,
                           sample_interval=sample_interval, extra=extra)
        self._operators.append(op)
        log(f"starting the operator ({workers} workers, resync {resync_seconds:g}s)")
        op.start(timeout=120.0)
        log(f"operator pid {op.pid} healthy after {op.healthy_at - op.spawned_at:.1f}s")
        return op

    def result(self, benchmark: str, what: str) -> dict[str, Any]:
        """The first fields of every benchmark's JSON: which, what, where and on what box."""
        return {"benchmark": benchmark, "what": what,
                "cluster": "external" if self.external else "harness DevCluster (kwok node)",
                "operator_extra_args": sorted({a for op in self._operators for a in op.extra}),
                "machine": machine()}

    def _stop_operators(self) -> None:
        for op in self._operators:
            code = op.stop()
            if code not in (0, None):
                log(f"operator {op.pid} exited with code {code}\n{op.log_tail(20)}")


def provisioned_state(instance: dict) -> str:
    """Completed / Failed / Processing / Pending for the pods and PVCs of one instance."""
    status = instance.get("status") or {}
    states = {status.get("pvcsProvisioned"), status.get("podsProvisioned")}
    for state in ("Failed", "Processing", "Pending"):
        if state in states:
            return state
    return "Completed" if states == {"Completed"} else "Pending"


def count_states(instances: Iterable[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for inst in instances:
        state = provisioned_state(inst)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _ignore_404(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except client.ApiException as exc:
        if exc.status != 404:
            log(f"cleanup: {getattr(fn, '__name__', fn)}{args}: HTTP {exc.status} {exc.reason}")


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


