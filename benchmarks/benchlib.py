"""Shared plumbing of the benchmark scripts: cluster, seed template, operator subprocess, probes.

Every benchmark runs against a real control plane (the harness's DevCluster on loopback, or the
cluster named by $JUPYTERNETES_BENCH_KUBECONFIG) and the real `jupyternetes operator` running as
a subprocess with the harness-built Pulumi CLI and Kubernetes provider. What is measured comes
from outside the operator where possible (our own pod watch, /proc), and from its /metrics and
log where only the operator knows (time spent in the engine, reconcile counts).

Scripts print progress on stderr and exactly one JSON object on stdout. `Bench` owns everything
it starts or creates and removes it on exit, on error and on Ctrl-C alike.
"""

from __future__ import annotations

import argparse
import calendar
import concurrent.futures
import contextlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from harness import pulumi_env as harness_pulumi
from harness.cluster import DevCluster
from harness.crds import apply_crds
from harness.examples import load_example, shared_template, strip_server_fields
from harness.operator_process import (
    MetricsSnapshot,
    OperatorError,
    OperatorProcess,
    console_command,
    poll,
    process_tree,
)
from jupyternetes.crd.definitions import load_crd_documents
from jupyternetes.crd.model import Instance, Template
from jupyternetes.crd.naming import object_name
from jupyternetes.render.objects import render

EXTERNAL_KUBECONFIG_ENV = "JUPYTERNETES_BENCH_KUBECONFIG"
GROUP, VERSION = "kadense.io", "v1"
INSTANCES, TEMPLATES = "jupyternotebookinstances", "jupyternotebooktemplates"
HUB_NAMESPACE = "kadense"
SEED_TEMPLATE = "default-template"
BENCH_LABEL = "jupyternetes.kadense.io/benchmark"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    """Progress for the human running the script; stdout is reserved for the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(result: Mapping[str, Any]) -> None:
    print(json.dumps(result, indent=2, sort_keys=False), flush=True)


def arguments(doc: str | None, count: int,
              count_help: str = "instances") -> argparse.ArgumentParser:
    """The options every benchmark has: `--count` (what N is), the operator's `--workers` and
    the process tree's `--sample-interval`; the description is the docstring's first
    paragraph."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=count,
                        help=f"{count_help} (default {count})")
    parser.add_argument("--workers", type=int, default=4, help="operator --workers (default 4)")
    # Every benchmark samples the operator's process tree (engine processes, memory).
    parser.add_argument("--sample-interval", type=float, default=0.1,
                        help="seconds between /proc samples (default 0.1)")
    return parser


def run_main(main: Callable[[], int]) -> None:
    """Exit with main's code: 130 on Ctrl-C/SIGTERM, 1 (with the reason on stderr) when the
    benchmark could not run."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except (BenchError, OperatorError) as exc:
        log(f"benchmark failed: {exc}")
        sys.exit(1)


# ---- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """p50/p95/mean/min/max of a sample, rounded for reading."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50), digits),
        "p95": rounded(percentile(values, 95), digits),
        "mean": rounded(sum(values) / len(values), digits),
        "min": rounded(min(values), digits),
        "max": rounded(max(values), digits),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


# ---- waiting ---------------------------------------------------------------------------------


class BenchError(RuntimeError):
    """The benchmark could not run; the message says what was being waited for."""


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2,
               describe: Callable[[], str] | None = None) -> Any:
    value = poll(check, timeout, interval)
    if value:
        return value
    detail = f"\n{describe()}" if describe else ""
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


# ---- /proc: process tree and memory -----------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks since boot: with pid, identifies a process across pid reuse
    comm: str
    rss: int  # bytes
    cpu_ticks: int = 0  # utime + stime of this process
    children_cpu_ticks: int = 0  # cutime + cstime: of its descendants it has waited for


def read_proc(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode(errors="replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: it ends at the last ')'.
    open_paren, close_paren = raw.find("("), raw.rfind(")")
    fields = raw[close_paren + 2:].split()
    # fields[0] is field 3 (state) of proc(5): ppid = 4, utime/stime = 14/15, cutime/cstime
    # = 16/17, starttime = 22, rss = 24.
    return Proc(pid=pid, ppid=int(fields[1]), start=int(fields[19]),
                comm=raw[open_paren + 1:close_paren], rss=int(fields[21]) * PAGE_SIZE,
                cpu_ticks=int(fields[11]) + int(fields[12]),
                children_cpu_ticks=int(fields[13]) + int(fields[14]))


def read_pss(pid: int) -> int | None:
    """Proportional set size in bytes (/proc/<pid>/smaps_rollup): each shared page counted
    once in total, split between the processes mapping it, so a sum over processes is the
    real footprint (summed RSS counts a shared page once per process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds (user + system) used so far by `root` and every descendant: its own time,
    its reaped children's (cutime/cstime, which include their own reaped descendants), and the
    live descendants' own time. None when `root` is gone."""
    top = read_proc(root)
    if top is None:
        return None
    ticks = top.cpu_ticks + top.children_cpu_ticks
    for pid in process_tree(root)[1:]:
        proc = read_proc(pid)
        if proc is not None:
            ticks += proc.cpu_ticks + proc.children_cpu_ticks
    return ticks / CLOCK_TICKS


def boot_time() -> float:
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise BenchError("no btime in /proc/stat")


def started_wall(proc: Proc, btime: float) -> float:
    """When a process started, as a Unix time (resolution: one clock tick, 10 ms)."""
    return btime + proc.start / CLOCK_TICKS


def read_cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
    except OSError:
        return []


def engine_kind(proc: Proc, root: int | None = None) -> str:
    """Which part of an engine operation a descendant of the operator (`root`) is.

    comm is cut at 15 characters. A process caught between fork and exec still carries its
    parent's name: a python child of anything but the operator is such a fork (the worker
    launching the pulumi CLI), not a worker."""
    if proc.comm.startswith("pulumi-resource"):
        return "provider"
    if proc.comm == "pulumi":
        return "pulumi_cli"
    if proc.comm.startswith("python") and (root is None or proc.ppid == root):
        return "worker"  # `python -m jupyternetes.engine.runtime.worker`
    return "other"


def peak_rss_hwm(pid: int) -> int | None:
    """VmHWM: the kernel's own peak resident set of a live process, in bytes."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def mib(value: float | None) -> float | None:
    return None if value is None else round(value / (1024 * 1024), 1)


class TreeSampler:
    """Samples the operator's process tree every `interval` seconds from a thread.

    Records the operator's RSS, the summed RSS of all its descendants (the engine: worker
    subprocesses, the pulumi CLI, provider plugins), per kind, and every descendant ever seen
    (so the benchmark can count engine processes and make sure none outlives it). RSS counts
    shared pages once per process, so the sum is an upper bound of the engine's real footprint.
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.samples = 0
        self.peak_operator_rss = 0
        self.peak_engine_rss = 0
        self.peak_operator_pss = 0
        self.peak_engine_pss = 0
        self.peak_pss_by_kind: dict[str, int] = {}
        self.peak_engine_processes = 0
        self.peak_workers = 0
        self.peak_by_kind: dict[str, int] = {}
        self.seen: dict[tuple[int, int], Proc] = {}
        self.cmdlines: dict[tuple[int, int], list[str]] = {}
        self.btime = boot_time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample_once(self) -> None:
        root = read_proc(self.root)
        if root is None:
            return
        below = [p for p in map(read_proc, process_tree(self.root)[1:]) if p is not None]
        by_kind: dict[str, int] = {}
        pss_by_kind: dict[str, int] = {}
        for proc in below:
            kind = engine_kind(proc, self.root)
            by_kind[kind] = by_kind.get(kind, 0) + proc.rss
            pss_by_kind[kind] = pss_by_kind.get(kind, 0) + (read_pss(proc.pid) or 0)
        operator_pss = read_pss(self.root) or 0
        with self._lock:
            self.peak_operator_pss = max(self.peak_operator_pss, operator_pss)
            self.peak_engine_pss = max(self.peak_engine_pss, sum(pss_by_kind.values()))
            for kind, pss in pss_by_kind.items():
                self.peak_pss_by_kind[kind] = max(self.peak_pss_by_kind.get(kind, 0), pss)
            self.samples += 1
            self.peak_operator_rss = max(self.peak_operator_rss, root.rss)
            self.peak_engine_rss = max(self.peak_engine_rss, sum(p.rss for p in below))
            self.peak_engine_processes = max(self.peak_engine_processes, len(below))
            self.peak_workers = max(self.peak_workers,
                                    sum(1 for p in below if engine_kind(p, self.root) == "worker"))
            for kind, rss in by_kind.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), rss)
            # New processes, and processes that exec'd since the last sample (a fork seen
            # before its exec carries its parent's name and command line).
            new = [p for p in below if (old := self.seen.get((p.pid, p.start))) is None
                   or old.comm != p.comm]
            for proc in below:
                self.seen[(proc.pid, proc.start)] = proc
        for proc in new:  # outside the lock
            cmdline = read_cmdline(proc.pid)
            with self._lock:
                self.cmdlines[(proc.pid, proc.start)] = cmdline

    def started(self, kind: str, first_arg: str | None = None,
                after: float = 0.0) -> list[float]:
        """Start times (Unix) of the seen engine processes of `kind` (and with `first_arg` as
        their command, e.g. `up` for the pulumi CLI), started at or after `after`."""
        with self._lock:
            items = list(self.seen.items())
            cmdlines = dict(self.cmdlines)
        times = []
        for ident, proc in items:
            if engine_kind(proc, self.root) != kind:
                continue
            args = cmdlines.get(ident) or []
            # The Automation API puts `--non-interactive` before the command.
            command = next((a for a in args[1:] if not a.startswith("-")), None)
            if first_arg is not None and command != first_arg:
                continue
            at = started_wall(proc, self.btime)
            if at >= after - 0.02:  # one tick of slack
                times.append(at)
        return sorted(times)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):  # a process vanishing mid-scan is normal
                self.sample_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def commands(self) -> dict[str, int]:
        """How many engine processes of each kind/command were seen, e.g. `pulumi_cli up`.
        Processes shorter than the sampling interval can be missed."""
        with self._lock:
            items = [(engine_kind(p, self.root), self.cmdlines.get(ident) or [])
                     for ident, p in self.seen.items()]
        counts: dict[str, int] = {}
        for kind, args in items:
            command = next((a for a in args[1:] if not a.startswith("-")), "") \
                if kind == "pulumi_cli" else ""
            label = f"{kind} {command}".strip()
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sample_interval_s": self.interval,
                "samples": self.samples,
                "peak_operator_rss_mib": mib(self.peak_operator_rss),
                "peak_engine_rss_sum_mib": mib(self.peak_engine_rss),
                "peak_engine_rss_by_kind_mib": {k: mib(v) for k, v in
                                                sorted(self.peak_by_kind.items())},
                "peak_operator_pss_mib": mib(self.peak_operator_pss),
                "peak_engine_pss_sum_mib": mib(self.peak_engine_pss),
                "peak_engine_pss_by_kind_mib": {k: mib(v) for k, v in
                                                sorted(self.peak_pss_by_kind.items())},
                "peak_engine_processes": self.peak_engine_processes,
                "peak_concurrent_workers": self.peak_workers,
                "engine_processes_seen": len(self.seen),
            }

    def full_report(self) -> dict[str, Any]:
        return {**self.report(), "engine_processes_seen_by_command": self.commands()}


# ---- Prometheus /metrics -----------------------------------------------------------------------


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in sorted(set(after) | set(before))
            if after.get(k, 0.0) != before.get(k, 0.0)}


# ---- the operator subprocess -------------------------------------------------------------------


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


def sweep(procs: Iterable[Proc]) -> list[str]:
    """SIGKILL the given processes that still run (same pid and start time); what was killed."""
    killed: list[str] = []
    for proc in procs:
        current = read_proc(proc.pid)
        if current is None or current.start != proc.start:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(f"{proc.pid}:{proc.comm}")
    return killed


# ---- watching pods from the outside -------------------------------------------------------------


class PodWatch:
    """Records when each pod of some namespaces is first seen (ADDED), by our own watch."""

    def __init__(self, api: client.ApiClient, namespaces: Sequence[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.namespaces = list(namespaces)
        self.first_seen: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._synced: list[threading.Event] = []

    def start(self) -> PodWatch:
        for ns in self.namespaces:
            synced = threading.Event()
            thread = threading.Thread(target=self._run, args=(ns, synced), daemon=True,
                                      name=f"podwatch-{ns}")
            thread.start()
            self._threads.append(thread)
            self._synced.append(synced)
        for synced in self._synced:
            if not synced.wait(30):
                raise BenchError("the benchmark's own pod watch did not start within 30s")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _record(self, obj: dict, seen_at: float) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self._cond:
            if key not in self.first_seen:
                self.first_seen[key] = seen_at
                self._cond.notify_all()

    def _run(self, namespace: str, synced: threading.Event) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    resp = self.core.list_namespaced_pod(namespace, _preload_content=False)
                    listing = json.loads(resp.data)
                    now = time.time()
                    for item in listing.get("items") or []:
                        self._record(item, now)
                    rv = listing["metadata"]["resourceVersion"]
                    synced.set()
                # Short server-side timeout: the loop notices stop() within seconds.
                resp = self.core.list_namespaced_pod(
                    namespace, watch=True, resource_version=rv, timeout_seconds=5,
                    allow_watch_bookmarks=True, _preload_content=False)
                try:
                    for line in iter_resp_lines(resp):
                        seen_at = time.time()
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            rv = ""  # 410 Gone: relist
                            break
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if event.get("type") == "ADDED":
                            self._record(obj, seen_at)
                finally:
                    resp.release_conn()
            except Exception as exc:
                if self._stop.is_set():
                    return
                log(f"pod watch on {namespace} failed ({exc}); retrying")
                time.sleep(0.5)

    def wait_for(self, keys: Iterable[str], timeout: float) -> dict[str, float]:
        wanted = list(keys)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [k for k in wanted if k not in self.first_seen]
                if not missing:
                    return {k: self.first_seen[k] for k in wanted}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"timed out after {timeout:.0f}s waiting for pods "
                                     f"{', '.join(missing[:10])}"
                                     f"{' ...' if len(missing) > 10 else ''}")
                self._cond.wait(min(left, 1.0))


# ---- the cluster, the seed, cleanup --------------------------------------------------------------


def kubernetes_provider_version() -> str:
    return metadata.version("pulumi-kubernetes")


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
        body = shared_template(strip_server_fields(load_example("seed-template.yaml")))
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATES,
                                                        body)
            if self.external:
                self._stack.callback(_ignore_404, self.custom.delete_namespaced_custom_object,
                                     GROUP, VERSION, HUB_NAMESPACE, TEMPLATES, SEED_TEMPLATE)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self.template = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, HUB_NAMESPACE, TEMPLATES, SEED_TEMPLATE)

    def _namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name, "labels": {BENCH_LABEL: "true"}}})
        self._stack.callback(self._delete_namespace, name)
        return name

    def _delete_namespace(self, name: str) -> None:
        if not self.external:
            return  # the whole DevCluster goes away
        # The operator is stopped by now: drop our finalizers so the namespace can go.
        with contextlib.suppress(client.ApiException):
            items = self.custom.list_namespaced_custom_object(GROUP, VERSION, name, INSTANCES)
            for item in items.get("items") or []:
                with contextlib.suppress(client.ApiException):
                    self.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, name, INSTANCES, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
        _ignore_404(self.core.delete_namespace, name, propagation_policy="Background")

    # ---- objects ------------------------------------------------------------------------

    def instance_body(self, name: str, namespace: str | None = None,
                      user: str | None = None) -> dict:
        """The seed instance, renamed; `user` gives each instance its own hub user."""
        ns = namespace or self.namespace
        body = strip_server_fields(load_example("seed-instance.yaml"))
        body["metadata"] = {"name": name, "namespace": ns}
        body["spec"]["template"] = {"name": SEED_TEMPLATE, "namespace": HUB_NAMESPACE}
        variables = body["spec"]["variables"]
        variables["jupyternetes.instance.name"] = name
        variables["jupyternetes.instance.namespace"] = ns
        if user:
            variables["jupyterhub.user.name"] = user
        return body

    def create_instance(self, name: str, user: str | None = None) -> dict:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, INSTANCES, self.instance_body(name, user=user))

    def create_instances(self, names: Sequence[str], parallel: int = 8) -> None:
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            list(pool.map(lambda n: self.create_instance(n, user=n), names))

    def rendered_objects(self, instance_name: str, namespace: str) -> list[dict]:
        """What the operator would create for this instance: PVC manifests, then pods."""
        template = Template.from_dict(self.template, source="seed template")
        body = self.instance_body(instance_name, namespace, user=instance_name)
        return render(template, Instance.from_dict(body, source="bench")).manifests()

    def provide_volume(self, namespace: str, instance: str, entry: str = "workspace") -> None:
        """A static PV pre-bound to the PVC name the instance will get (the harness has no
        provisioner): the pod gets scheduled and kwok runs it, as on a real cluster."""
        claim = object_name(instance, entry)
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
            GROUP, VERSION, self.namespace, INSTANCES).get("items") or []

    def instance_events(self, name: str) -> list[dict]:
        resp = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}",
            _preload_content=False)
        return json.loads(resp.data).get("items") or []

    # ---- operator -----------------------------------------------------------------------

    def start_operator(self, *, workers: int = 4, resync_seconds: float = 300.0,
                       sample_interval: float = 0.1, extra: Sequence[str] = ()
                       ) -> BenchOperator:
        op = BenchOperator(self.kubeconfig, self.pulumi_env, self.tmp / "operator-state",
                           self.pulumi_home, [self.namespace],
                           self.tmp / f"operator-{len(self._operators)}.log",
                           workers=workers, resync_seconds=resync_seconds, extra=extra,
                           sample_interval=sample_interval)
        self._operators.append(op)
        log(f"starting the operator ({workers} workers, resync {resync_seconds:g}s)")
        op.start(timeout=120.0)
        log(f"operator pid {op.pid} healthy after {op.healthy_at - op.spawned_at:.1f}s")
        return op

    def result(self, benchmark: str, what: str) -> dict[str, Any]:
        """The first fields of every benchmark's JSON: which, what, where and on what box."""
        return {"benchmark": benchmark, "what": what,
                "cluster": "external" if self.external else "harness DevCluster (kwok node)",
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


def machine() -> dict[str, Any]:
    """Context for reading the figures: the box is small and may be shared with other work."""
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "pulumi_kubernetes": kubernetes_provider_version(),
            "loadavg_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()]}
