"""Process sampling from /proc: CPU, RSS and PSS of process trees (the operator and its engine)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from benchlib.cli import BenchError
from benchlib.summaries import mib
from harness.operator_process import process_tree

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
    """When the machine booted, as a Unix time, to 10 ms: now minus /proc/uptime (/proc/stat's
    btime is a whole second, which could put a process's start up to a second early)."""
    with open("/proc/uptime") as handle:
        up = float(handle.read().split()[0])
    if up <= 0:
        raise BenchError("no uptime in /proc/uptime")
    return time.time() - up


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


def operator_cpu_split(root: int) -> dict[str, float]:
    """CPU-seconds so far of an operator (`root`), split: `operator` (its own process),
    `worker_python` (the engine workers' own time) and `cli_and_provider` (what the workers'
    reaped children used: the pulumi CLIs and, reaped by them, the providers)."""
    top = read_proc(root)
    out = {"operator": 0.0 if top is None else top.cpu_ticks / CLOCK_TICKS,
           "worker_python": 0.0, "cli_and_provider": 0.0}
    for pid in process_tree(root)[1:]:
        proc = read_proc(pid)
        if proc is not None and engine_kind(proc, root) == "worker":
            out["worker_python"] += proc.cpu_ticks / CLOCK_TICKS
            out["cli_and_provider"] += proc.children_cpu_ticks / CLOCK_TICKS
    return out


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

    def cpu_seconds_by_kind(self) -> dict[str, float]:
        """CPU seconds of every descendant seen so far, by kind and, for the pulumi CLI, by
        command: each process's ticks at its last sample, so a process's last `interval`
        before it exits is missed (a lower bound per kind). `cpu_since` gives a window's."""
        with self._lock:
            items = [(p, self.cmdlines.get(ident) or []) for ident, p in self.seen.items()]
        totals: dict[str, float] = {}
        for proc, args in items:
            kind = engine_kind(proc, self.root)
            if kind == "pulumi_cli":
                kind += " " + next((a for a in args[1:] if not a.startswith("-")), "")
            totals[kind] = totals.get(kind, 0.0) + proc.cpu_ticks / CLOCK_TICKS
        return {k: round(v, 2) for k, v in sorted(totals.items())}

    @staticmethod
    def cpu_since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """What each kind used between two `cpu_seconds_by_kind()` totals (a process that
        started before the window counts only its share inside it)."""
        return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()
                if v - before.get(k, 0.0) > 0}

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


