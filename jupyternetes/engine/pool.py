"""Stack worker processes: the request/answer exchange, starting one, a pool of idle ones.

`run_worker` sends one request (JSON on stdin) to a worker process (`python -m
jupyternetes.engine.worker`) and reads its answer (one JSON object on stdout); the worker's logs
come on stderr, masked, and are logged at debug level. A worker that times out is stopped:
SIGTERM (it cancels its Pulumi CLI, which finishes in-flight steps, writes the checkpoint and
releases the lock, within CANCEL_GRACE_SECONDS), then SIGKILL of its process group. The
constants of that exchange (exit codes, environment names, the grace) live here, in a module
both the engine and the worker import.

A worker spends its first fraction of a second (more on a loaded node) starting Python and
importing the Pulumi SDK before it can read its request. A pre-started worker has done that
already and waits on stdin, so the operation does not wait for it. Isolation is unchanged:
every worker runs exactly one operation and exits; the pool only starts the next one early.

PR_SET_PDEATHSIG (set by the worker) fires when the *thread* that started the process ends,
not the process. So pooled workers are started by one long-lived thread of the pool, which
stays until the pool is closed and no worker it started is still running an operation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

from jupyternetes.engine import backendurl, engineprocs
from jupyternetes.engine.masking import mask_forms, mask_secrets, trim_message
from jupyternetes.engine.results import utc_now
from jupyternetes.engine.settings import StackConfigError

log = logging.getLogger(__name__)

# A pre-started worker that got no request for this long exits (with WORKER_IDLE_EXIT), so an
# operator that has nothing to do does not keep one forever; the next operation then starts
# one the ordinary way, and the pool refills after it.
WORKER_IDLE_SECONDS = 900.0
WORKER_IDLE_EXIT = 75
ENV_PARENT_PID = "JUPYTERNETES_WORKER_PARENT_PID"
ENV_IDLE_SECONDS = "JUPYTERNETES_WORKER_IDLE_SECONDS"
# After SIGTERM the worker asks the Pulumi CLI to cancel (SIGINT), which finishes in-flight
# steps, writes the checkpoint and releases the lock; this is how long that may take.
CANCEL_GRACE_SECONDS = 20.0
WORKER_MODULE = "jupyternetes.engine.worker"


def start_worker(env: Mapping[str, str], idle_seconds: float | None = None) -> subprocess.Popen:
    """`python -m jupyternetes.engine.worker`, waiting for its request on stdin."""
    worker_env = dict(env)
    worker_env[ENV_PARENT_PID] = str(os.getpid())
    if idle_seconds:
        worker_env[ENV_IDLE_SECONDS] = str(idle_seconds)
    # The passphrase travels in the request (stdin), never in argv or the environment.
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=worker_env, start_new_session=True,  # own process group: killable as a whole
    )


def end_idle_worker(proc: subprocess.Popen) -> None:
    """Stop a worker that has no request (it holds nothing: no CLI, no lock)."""
    with contextlib.suppress(ProcessLookupError, OSError):
        proc.terminate()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


class WorkerPool:
    """Keeps `size` pre-started workers. `take()` hands one out (or None: start one yourself),
    `done()` says its operation is over; the pool refills after an operation, not during one,
    so starting the next worker never competes with an operation's own start for the CPU."""

    def __init__(self, env: Mapping[str, str], size: int,
                 idle_seconds: float = WORKER_IDLE_SECONDS) -> None:
        self._env = dict(env)
        self._size = max(0, size)
        self._idle_seconds = idle_seconds
        self._idle: list[subprocess.Popen] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._fill = False  # refill requested (after an operation)
        self._closed = False
        self._running = 0  # operations running in workers this pool started

    @property
    def size(self) -> int:
        return self._size

    def idle_pids(self) -> list[int]:
        with self._cond:
            return [p.pid for p in self._idle if p.poll() is None]

    def take(self) -> subprocess.Popen | None:
        with self._cond:
            if self._closed or not self._size:
                return None
            while self._idle:
                proc = self._idle.pop(0)
                if proc.poll() is None:
                    self._running += 1
                    return proc
                # Expired while idle (WORKER_IDLE_EXIT): reaped by poll(); try the next one.
            return None

    def done(self, proc: subprocess.Popen | None) -> None:
        """An operation ended (in `proc` if it came from take(), else in a worker of its own)."""
        with self._cond:
            if proc is not None:
                self._running -= 1
            if self._closed or not self._size:
                self._cond.notify_all()
                return
            self._fill = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._starter, daemon=True,
                                                name="stack-worker-starter")
                self._thread.start()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the idle workers; workers running an operation finish it."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for proc in idle:
            end_idle_worker(proc)

    def _starter(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (self._fill and len(self._idle) < self._size):
                    self._cond.wait()
                if self._closed:
                    # Ending this thread would SIGTERM (PDEATHSIG) the workers it started that
                    # still run an operation: wait for them.
                    while self._running > 0:
                        self._cond.wait()
                    return
            try:
                proc = start_worker(self._env, self._idle_seconds)
            except OSError as exc:
                log.warning("cannot pre-start a stack worker: %s", exc)
                with self._cond:
                    self._fill = False
                continue
            with self._cond:
                if self._closed:
                    stale = proc
                else:
                    self._idle.append(proc)
                    self._fill = len(self._idle) < self._size
                    stale = None
            if stale is not None:
                end_idle_worker(stale)


def run_worker(request: Mapping[str, Any], env: Mapping[str, str], timeout: float,
               pool: WorkerPool | None = None) -> dict[str, Any]:
    """Run one request in a worker of its own (pre-started from `pool` when one is idle, else
    started now); its JSON answer.

    Engine failures come back as an answer with result "failed"; a worker that cannot run at
    all (no pulumi CLI, bad settings) raises StackConfigError; a timeout or a crashed worker is
    an answer with result "failed" naming what happened.
    """
    proc = pool.take() if pool is not None else None
    try:
        answer = _run_in(proc, request, timeout) if proc is not None else None
        if answer is None:  # no idle worker, or it expired just as it was taken
            answer = _run_in(start_worker(env), request, timeout)
        assert answer is not None
        return answer
    finally:
        if pool is not None:
            pool.done(proc)


def _run_in(proc: subprocess.Popen, request: Mapping[str, Any],
            timeout: float) -> dict[str, Any] | None:
    """The answer of `proc` to `request`; None when `proc` was a pre-started worker that exited
    idle before reading it (the caller then starts a new one)."""
    started_at = utc_now()
    try:
        with engineprocs.running(request["stack"], proc.pid):
            stdout, stderr = proc.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = stop_worker(proc)
        log.error("stack %s: %s timed out after %.0fs", request["stack"], request["op"], timeout)
        return failed_answer(
            request, started_at,
            f"Pulumi {request['op']} of stack {request['stack']} did not finish within "
            f"{timeout:.0f}s and was cancelled; the next reconcile retries it",
            stderr.decode(errors="replace"))
    except BaseException:
        stop_worker(proc)
        raise
    # The worker masks its own output; masked again here in case it died before it could.
    err_text = mask_secrets(stderr.decode(errors="replace"),
                            mask_forms(backendurl.request_mask_values(request)))
    for line in err_text.splitlines():
        log.debug("worker %s %s: %s", request["op"], request["stack"], line)
    try:
        answer = json.loads(stdout.decode() or "null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if proc.returncode == WORKER_IDLE_EXIT:
            return None
        return failed_answer(
            request, started_at,
            f"the stack worker for {request['stack']} exited with code {proc.returncode} "
            "without an answer", err_text)
    if answer.get("config_error"):
        raise StackConfigError(answer["config_error"])
    return answer


def stop_worker(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """SIGTERM (the worker cancels its Pulumi CLI gracefully), then SIGKILL the whole group."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=CANCEL_GRACE_SECONDS + 5)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return b"", b""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


def failed_answer(request: Mapping[str, Any], started_at: str, message: str,
                  stderr: str = "") -> dict[str, Any]:
    masked = backendurl.request_mask_values(request)
    detail = trim_message([], stderr, masked)
    full = f"{message}: {detail}" if detail else message
    return {"result": "failed", "message": mask_secrets(full, masked),
            "started_at": started_at, "finished_at": utc_now(), "change_summary": {},
            "outputs": {}, "engine_seconds": 0.0, "steps": []}
