"""Stack worker processes: starting one, and a small pool of pre-started idle ones.

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
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)

# A pre-started worker that got no request for this long exits (with WORKER_IDLE_EXIT), so an
# operator that has nothing to do does not keep one forever; the next operation then starts
# one the ordinary way, and the pool refills after it.
WORKER_IDLE_SECONDS = 900.0
WORKER_IDLE_EXIT = 75
ENV_PARENT_PID = "JUPYTERNETES_WORKER_PARENT_PID"
ENV_IDLE_SECONDS = "JUPYTERNETES_WORKER_IDLE_SECONDS"


def start_worker(env: Mapping[str, str], idle_seconds: float | None = None) -> subprocess.Popen:
    """`python -m jupyternetes.stackworker`, waiting for its request on stdin."""
    worker_env = dict(env)
    worker_env[ENV_PARENT_PID] = str(os.getpid())
    if idle_seconds:
        worker_env[ENV_IDLE_SECONDS] = str(idle_seconds)
    # The passphrase travels in the request (stdin), never in argv or the environment.
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "jupyternetes.stackworker"],
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
