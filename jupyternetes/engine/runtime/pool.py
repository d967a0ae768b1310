"""The engine's worker processes: starting them, sending them operations, recycling them.

Each worker (`python -m jupyternetes.engine.runtime.worker`; worker.py, protocol.py) runs up to
`concurrency` operations at once and `reuse` operations in its life; then it is recycled (its
stdin is closed: it finishes what it runs and exits). A worker idle for WORKER_IDLE_SECONDS exits
by itself. After the first operation the pool keeps `prestart` workers with room ready, so an
operation does not wait for a Python start. `concurrency=1, reuse=1` is one process per
operation, as the engine used to run (see settings.worker_limits).

PR_SET_PDEATHSIG (set by the worker) fires when the *thread* that started the process ends, not
the process. So every worker is started by one long-lived thread of the pool, which stays until
the pool is closed and no worker it started is alive. After `close` an operation still runs, in
a worker of its own started by the calling thread (which waits for it).

A timed-out operation is cancelled in its worker (its Pulumi CLI gets SIGINT: in-flight steps
finish, the checkpoint is written, the lock released; SIGKILL after CANCEL_GRACE_SECONDS); a
worker that does not answer even then is killed as a whole.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from jupyternetes.engine.masking import mask_forms, mask_secrets, trim_message
from jupyternetes.engine.results import utc_now
from jupyternetes.engine.runtime import engineprocs, protocol
from jupyternetes.engine.settings import StackConfigError
from jupyternetes.engine.state import backendurl

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
RETRIES = 3  # sends of one request to workers that exited idle before reading it


def start_worker(env: Mapping[str, str], idle_seconds: float | None = None) -> subprocess.Popen:
    """`python -m jupyternetes.engine.runtime.worker`, waiting for messages on stdin."""
    worker_env = dict(env)
    worker_env[protocol.ENV_PARENT_PID] = str(os.getpid())
    if idle_seconds:
        worker_env[protocol.ENV_IDLE_SECONDS] = str(idle_seconds)
    # The passphrase travels in the request (stdin), never in argv or the environment.
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    worker_env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    return subprocess.Popen(
        [sys.executable, "-m", protocol.WORKER_MODULE],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=worker_env, start_new_session=True,  # own process group: killable as a whole
    )


class Pending:
    """One request sent to a worker: its answer (None: the worker ended without one)."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] | None = None
        self.exit_code: int | None = None
        self.done = threading.Event()


class WorkerProcess:
    """One worker and the operations sent to it (a reader thread matches answers to them)."""

    def __init__(self, proc: subprocess.Popen, concurrency: int, reuse: int,
                 on_change: threading.Condition | None = None) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.concurrency = max(1, concurrency)
        self.reuse = max(1, reuse)
        self.sent = 0  # slots taken (reserved or sent) in its life
        self.alive = True
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._pending: dict[int, Pending] = {}
        self._reserved = 0
        self._masks: set[str] = set()
        self._lock = threading.Lock()
        self._on_change = on_change
        self._logs = threading.Thread(target=self._read_logs, daemon=True,
                                      name=f"stack-worker-{self.pid}-err")
        self._logs.start()
        threading.Thread(target=self._read_answers, daemon=True,
                         name=f"stack-worker-{self.pid}-out").start()

    def running(self) -> int:
        with self._lock:
            return len(self._pending) + self._reserved

    def has_room(self) -> bool:
        with self._lock:
            return (self.alive and self.sent < self.reuse
                    and len(self._pending) + self._reserved < self.concurrency)

    def reserve(self) -> bool:
        """Take a slot for an operation about to be sent (False: no room)."""
        with self._lock:
            if not (self.alive and self.sent < self.reuse
                    and len(self._pending) + self._reserved < self.concurrency):
                return False
            self.sent += 1
            self._reserved += 1
            return True

    def unreserve(self) -> None:
        """Give back a slot reserved for an operation that was not sent after all."""
        with self._lock:
            self._reserved -= 1
            self.sent -= 1
        self._changed()

    def send(self, op_id: int, request: Mapping[str, Any]) -> Pending:
        """Send a request on a reserved slot. Its Pending ends with the answer, or None when
        the worker ends without one."""
        pending = Pending()
        with self._lock:
            self._reserved -= 1
            self._masks |= mask_forms(backendurl.request_mask_values(request))
            self._pending[op_id] = pending
            last = self.sent >= self.reuse
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(protocol.encode({"id": op_id, "request": dict(request)}))
            self.proc.stdin.flush()
            if last:  # recycled: it finishes what it runs, then exits
                self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is gone: the reader resolves the pending request
        return pending

    def cancel(self, op_id: int) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(protocol.encode({"id": op_id, "cancel": True}))
            self.proc.stdin.flush()

    def close(self) -> None:
        """No more requests: the worker finishes what it runs, then exits."""
        with self._lock:
            self.sent = self.reuse
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def kill(self) -> None:
        """SIGTERM (the worker cancels its CLIs), then SIGKILL of its whole process group."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=protocol.CANCEL_GRACE_SECONDS + 5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def masked(self, text: str) -> str:
        with self._lock:
            masks = set(self._masks)
        return mask_secrets(text, masks)

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = protocol.decode(line)
            if message is None or not isinstance(message.get("answer"), dict):
                continue
            with self._lock:
                pending = self._pending.pop(message.get("id"), None)
            if pending is not None:
                pending.answer = message["answer"]
                pending.done.set()
            self._changed()
        code = self.proc.wait()
        self._logs.join(5)  # its last words belong in the failure messages below
        with self._lock:
            self.alive = False
            left, self._pending = list(self._pending.values()), {}
        for pending in left:
            pending.exit_code = code
            pending.done.set()
        self._changed()

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            # The worker masks its own output; masked again here in case it could not.
            line = self.masked(raw.decode(errors="replace").rstrip("\n"))
            self.stderr_tail.append(line)
            log.debug("worker %s: %s", self.pid, line)

    def _changed(self) -> None:
        if self._on_change is not None:
            with self._on_change:
                self._on_change.notify_all()


class WorkerPool:
    """The workers of one engine (see the module's docstring). Thread-safe."""

    def __init__(self, env: Mapping[str, str], prestart: int, concurrency: int = 1,
                 reuse: int = 1, idle_seconds: float = protocol.WORKER_IDLE_SECONDS) -> None:
        self._env = dict(env)
        self._prestart = max(0, prestart)
        self._concurrency = max(1, concurrency)
        self._reuse = max(1, reuse)
        self._idle_seconds = idle_seconds
        self._workers: list[WorkerProcess] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._waiting = 0  # operations waiting for a worker with room
        self._fill = False  # spares wanted: set when an operation ends, cleared when ready
        self._closed = False
        self._ids = itertools.count(1)

    def pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._workers if w.alive]

    def idle_pids(self) -> list[int]:
        """Workers alive with no operation running."""
        with self._cond:
            return [w.pid for w in self._workers if w.alive and not w.running()]

    def run(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """The answer to `request` from a worker. Engine failures, a timeout and a crashed
        worker are answers with result "failed"; a worker that cannot run at all (no pulumi
        CLI, bad settings) raises StackConfigError."""
        started_at = utc_now()
        try:
            for _ in range(RETRIES):
                worker = self._acquire()
                answer = self._exchange(worker, request, timeout, started_at)
                if answer is not None:
                    return answer
        finally:
            with self._cond:
                self._fill = True
                self._cond.notify_all()
        return failed_answer(request, started_at,
                             f"no stack worker answered the {request['op']} of stack "
                             f"{request['stack']} (each exited idle before reading it)")

    def close(self) -> None:
        """No new operations in these workers: idle ones exit now, busy ones when done."""
        with self._cond:
            self._closed = True
            workers = list(self._workers)
            self._cond.notify_all()
        for worker in workers:
            worker.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _exchange(self, worker: WorkerProcess, request: Mapping[str, Any], timeout: float,
                  started_at: str) -> dict[str, Any] | None:
        """Send `request` on a slot reserved in `worker`; None: the worker exited idle before
        reading it (send it again). Raises engineprocs.Refused (the slot given back) when this
        replica does not hold the stack's shard (a sharded operator)."""
        op_id = next(self._ids)
        try:
            # Registered for the whole exchange: a lost shard kills the workers of its stacks.
            with engineprocs.running(request["stack"], worker.pid, op_id):
                return self._answer(worker, op_id, request, timeout, started_at)
        except engineprocs.Refused:
            worker.unreserve()
            raise

    def _answer(self, worker: WorkerProcess, op_id: int, request: Mapping[str, Any],
                timeout: float, started_at: str) -> dict[str, Any] | None:
        pending = worker.send(op_id, request)
        if not pending.done.wait(timeout):
            log.error("stack %s: %s timed out after %.0fs", request["stack"], request["op"],
                      timeout)
            worker.cancel(op_id)
            if not pending.done.wait(protocol.CANCEL_GRACE_SECONDS + 5):
                worker.kill()
                pending.done.wait(30)
            return failed_answer(
                request, started_at,
                f"Pulumi {request['op']} of stack {request['stack']} did not finish within "
                f"{timeout:.0f}s and was cancelled; the next reconcile retries it",
                str((pending.answer or {}).get("message") or "\n".join(worker.stderr_tail)))
        if pending.answer is None:
            if pending.exit_code == protocol.WORKER_IDLE_EXIT:
                return None
            return failed_answer(
                request, started_at,
                f"the stack worker for {request['stack']} exited with code "
                f"{pending.exit_code} without an answer", "\n".join(worker.stderr_tail))
        answer = pending.answer
        if answer.get("config_error"):
            raise StackConfigError(answer["config_error"])
        return answer

    def _acquire(self) -> WorkerProcess:
        """A worker with a slot reserved for one operation: a running one with room, else a
        new one (started by the pool's thread; by this thread after close)."""
        with self._cond:
            self._waiting += 1
            try:
                while not self._closed:
                    for worker in sorted(self._workers, key=lambda w: -w.running()):
                        if worker.reserve():  # the busiest with room: few processes
                            self._cond.notify_all()  # the starter may want a spare now
                            return worker
                    self._ensure_starter()
                    self._cond.notify_all()  # the starter sees this operation waiting
                    self._cond.wait()
            finally:
                self._waiting -= 1
        worker = WorkerProcess(start_worker(self._env), concurrency=1, reuse=1)
        worker.reserve()
        return worker

    def _ensure_starter(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._starter, daemon=True,
                                            name="stack-worker-starter")
            self._thread.start()

    def _wanted(self) -> bool:
        """Called with the condition held: should the starter start a worker now?"""
        self._workers = [w for w in self._workers if w.alive]
        with_room = sum(1 for w in self._workers if w.has_room())
        if self._waiting and not with_room:
            return True
        # Spares: keep `prestart` workers with room (a full or recycled worker does not
        # count), started after an operation ended, not during one (it would compete with
        # that operation's start for the CPU). One that expired idle is not replaced until
        # the next operation ends: an operator with nothing to do keeps none.
        if with_room >= self._prestart:
            self._fill = False
        return self._fill

    def _starter(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._wanted():
                    self._cond.wait()
                if self._closed:
                    # Ending this thread would SIGTERM (PDEATHSIG) the workers it started that
                    # still run an operation: wait until they are gone.
                    while any(w.alive for w in self._workers):
                        self._cond.wait(1.0)
                    return
            try:
                worker = WorkerProcess(start_worker(self._env, self._idle_seconds),
                                       self._concurrency, self._reuse, on_change=self._cond)
            except OSError as exc:
                log.warning("cannot start a stack worker: %s", exc)
                with self._cond:
                    self._cond.wait(1.0)
                continue
            with self._cond:
                self._workers.append(worker)
                closed = self._closed
                self._cond.notify_all()
            if closed:
                worker.close()


def failed_answer(request: Mapping[str, Any], started_at: str, message: str,
                  stderr: str = "") -> dict[str, Any]:
    masked = backendurl.request_mask_values(request)
    detail = trim_message([], stderr, masked)
    full = f"{message}: {detail}" if detail else message
    return {"result": "failed", "message": mask_secrets(full, masked),
            "started_at": started_at, "finished_at": utc_now(), "change_summary": {},
            "outputs": {}, "engine_seconds": 0.0, "steps": []}
