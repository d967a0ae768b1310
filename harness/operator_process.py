"""`jupyternetes operator` as a subprocess: the one launcher of the e2e tests, benchmarks and demo.

The operator runs exactly as an admin would run it (same CLI, same flags), against the harness's
Pulumi engine (`harness.pulumi_env`), with its output in a log file and /healthz +
/metrics on a free loopback port. Stopping it is explicit: SIGTERM (`terminate`), SIGKILL of the
operator alone (`kill`), or SIGKILL of its whole process tree (`kill_tree`), which is what a
killed container looks like to the Pulumi backend.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import free_port
from jupyternetes.engine.runtime.procs import descendants
from jupyternetes.engine.state import statedirs

REPO = Path(__file__).resolve().parents[1]
START_MARK = "===== start {n} ====="
T = TypeVar("T")


class OperatorError(RuntimeError):
    """The operator subprocess did not start or exited; the message carries its log tail."""


def module_command() -> list[str]:
    """`python -m jupyternetes.app.cli` with this interpreter (works from a source checkout)."""
    return [sys.executable, "-m", "jupyternetes.app.cli"]


def console_command() -> list[str]:
    """`.venv/bin/jupyternetes` beside the running interpreter, as an admin would run it."""
    script = Path(sys.executable).parent / "jupyternetes"
    return [str(script)] if script.is_file() else module_command()


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    # In the child before exec: SIGKILL when the parent dies, even by SIGKILL, so an
    # interrupted caller never leaves an operator behind.
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def process_tree(root: int) -> list[int]:
    """`root` and every process below it, parents before their children."""
    return [root, *descendants(root)]


def poll(check: Callable[[], T], timeout: float, interval: float = 0.25) -> T | None:
    """`check()` every `interval` seconds until it returns something truthy (returned), or
    None once `timeout` seconds have passed (it is called once more after the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


class MetricsSnapshot:
    """Parsed /metrics of the operator; `value(name, **labels)` sums the matching samples."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), float(sample.value)))

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in self.samples
                   if n == name and all(lab.get(k) == want for k, want in labels.items()))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, lab, v in self.samples:
            if n == name:
                out[lab.get(label, "")] = out.get(lab.get(label, ""), 0.0) + v
        return out

    # The operator's metric names (jupyternetes/operator/metrics.py).
    @property
    def reconciles(self) -> float:
        return self.value("jupyternetes_reconciles_total")

    @property
    def engine_operations(self) -> float:
        return self.value("jupyternetes_engine_operations_total")

    def engine_seconds(self, operation: str = "up") -> float:
        return self.value("jupyternetes_engine_operation_duration_seconds_sum",
                          operation=operation)

    def engine_count(self, operation: str = "up") -> float:
        return self.value("jupyternetes_engine_operation_duration_seconds_count",
                          operation=operation)

    @property
    def reconcile_seconds(self) -> float:
        return self.value("jupyternetes_reconcile_duration_seconds_sum")

    @property
    def queue_depth(self) -> float:
        return self.value("jupyternetes_queue_depth")

    @property
    def in_flight(self) -> float:
        return self.value("jupyternetes_reconciles_in_flight")


class OperatorProcess:
    """`jupyternetes operator ...` as a subprocess with its own log file.

    `env` is the engine's environment (`pulumi_env(...)`); `backend_url` None leaves the
    operator on its default `file://<state_dir>`. `workers`/`resync_seconds` None leave the
    operator's defaults. `extra` flags go last, so they win over the ones built here. Each
    `start()` appends a `===== start N =====` line to the log, so a restart's output can be
    told from the first run's."""

    def __init__(self, kubeconfig: Path, env: Mapping[str, str], state_dir: Path,
                 pulumi_home: Path | str, namespaces: Sequence[str], log_path: Path, *,
                 backend_url: str | None = None, workers: int | None = 4,
                 resync_seconds: float | None = None, log_format: str = "text",
                 log_level: str = "info", extra: Sequence[str] = (),
                 command: Sequence[str] | None = None, die_with_parent: bool = False,
                 http_timeout: float = 5.0) -> None:
        self.port = free_port()  # /healthz and /metrics share one server
        self.log_path = log_path
        self.state_dir = state_dir
        self.backend_url = backend_url
        self.http_timeout = http_timeout
        self.extra = tuple(extra)
        self.die_with_parent = die_with_parent
        self.env = dict(env)
        # The checkout first on the path: `-m jupyternetes.app.cli` runs this tree's code.
        self.env["PYTHONPATH"] = str(REPO)
        self.env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen
        self.args = [
            *(command or module_command()), "operator",
            "--kubeconfig", str(kubeconfig), "--state-dir", str(state_dir),
            *(("--backend-url", backend_url) if backend_url else ()),
            "--pulumi-home", str(pulumi_home),
            *(("--workers", str(workers)) if workers is not None else ()),
            *(("--resync-seconds", f"{resync_seconds:g}") if resync_seconds is not None
              else ()),
            "--health-port", str(self.port), "--metrics-port", str(self.port),
            "--bind-address", "127.0.0.1", "--log-format", log_format, "--log-level", log_level,
            *[arg for ns in namespaces for arg in ("--namespace", ns)], *extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.spawned_at = 0.0  # Unix times of the last start()
        self.healthy_at = 0.0

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the operator was never started"
        return self.proc.pid

    @property
    def backend_dir(self) -> Path:
        """The folder of the `file://` backend the operator uses."""
        if self.backend_url is None:
            return self.state_dir
        return Path(self.backend_url.removeprefix("file://"))

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Spawn the operator and wait until /healthz answers 200."""
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n{START_MARK.format(n=self.starts)}\n".encode())
            out.flush()
            self.spawned_at = time.time()
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=str(REPO), close_fds=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None)
        self.on_spawn()
        if not poll(lambda: self.http("/healthz")[0] == 200, timeout):
            raise OperatorError(
                f"the operator (pid {self.pid}) did not answer /healthz on 127.0.0.1:"
                f"{self.port} within {timeout:.0f}s; its log {self.log_path} ends:\n"
                f"{self.log_tail()}")
        self.healthy_at = time.time()
        return self

    def on_spawn(self) -> None:
        """Called right after the process is spawned, before /healthz answers (for samplers
        that must see the whole life of the process tree)."""

    def http(self, path: str) -> tuple[int, str]:
        """(status, body) of a GET on the operator's port; (0, "") while nothing listens."""
        if self.proc is not None and self.proc.poll() is not None:
            raise OperatorError(f"the operator exited with code {self.proc.returncode}; its log "
                                f"{self.log_path} ends:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=self.http_timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def metrics(self) -> MetricsSnapshot:
        status, text = self.http("/metrics")
        if status != 200:
            raise OperatorError(f"GET /metrics on the operator returned HTTP {status}")
        return MetricsSnapshot(text)

    @staticmethod
    def metric(text: str, prefix: str) -> float:
        """Sum of the exposition lines of `text` that start with `prefix` (a name, or a name
        with the start of its labels, e.g. `x_total{result="ok"}`)."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 90.0) -> int:
        """SIGTERM (the operator finishes in-flight work) and its exit code; raises
        subprocess.TimeoutExpired when it takes longer than `timeout`."""
        assert self.proc is not None, "the operator was never started"
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL of the operator alone (its children are left to themselves)."""
        assert self.proc is not None, "the operator was never started"
        self.proc.kill()
        return self.proc.wait(10)

    def tree(self) -> list[int]:
        """The operator's pid and those of every process under it, right now."""
        return process_tree(self.pid) if self.running() else []

    def freeze_tree(self) -> list[int]:
        """SIGSTOP the operator and every process under it, scanning again until no new one
        appears (a process may fork between a scan and its stop): nothing below it moves until
        `thaw_tree` or `kill_tree`. Returns the pids."""
        assert self.proc is not None, "the operator was never started"
        stopped: list[int] = []
        while new := [pid for pid in process_tree(self.proc.pid) if pid not in stopped]:
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            stopped += new
        return stopped

    def thaw_tree(self) -> None:
        assert self.proc is not None, "the operator was never started"
        for pid in process_tree(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def kill_tree_while(self, holds: Callable[[], Any]) -> list[int] | None:
        """SIGKILL the tree (kill_tree) if `holds()` is true with the tree frozen, so that what
        it saw (a stack's lock, say) cannot end between the look and the kill; else thaw it and
        return None (for wait_for)."""
        self.freeze_tree()
        if holds():
            return self.kill_tree()
        self.thaw_tree()
        return None

    def kill_tree(self) -> list[int]:
        """SIGKILL the operator and every process under it (stack workers, the Pulumi CLI,
        language host and provider), as when its container is killed: nothing gets to clean
        up, so locks and pending operations stay behind in the backend. Returns the pids."""
        assert self.proc is not None, "the operator was never started"
        pids = process_tree(self.proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        return pids

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stack_files(self) -> list[Path]:
        """Live stack checkpoints (Pulumi keeps `.bak` copies of removed stacks; not those), in
        the root and in every hash bucket of the state folder (engine/state/statedirs.py)."""
        return sorted(p for folder in statedirs.backend_dirs(self.backend_dir)
                      for p in (folder / ".pulumi" / "stacks").rglob("*")
                      if p.name.endswith((".json", ".json.gz")))
