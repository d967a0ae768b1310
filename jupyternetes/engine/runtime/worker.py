"""`python -m jupyternetes.engine.runtime.worker`: a long-lived process that runs stack operations.

Messages come on stdin and answers go to stdout, one JSON object per line (protocol.py); logs go
to stderr, masked. Each operation (operation.run) runs in a thread of its own, so one process
serves several operations at once and one after another: the Python start, the SDK imports and
the CLI's version check are paid once per process, not once per operation. Pulumi's Python
runtime keeps its per-deployment state in contextvars (each inline program runs in a context of
its own: automation/_server.py, runtime/settings.py), which is what makes that safe; the e2e
test tests/e2e/test_worker_threads.py runs several stacks' programs at once in one worker and
checks that each stack got exactly its own objects.

Crash safety is as before: the process dies with the thread that started it (PR_SET_PDEATHSIG)
and then cancels every CLI it started (SIGINT, SIGKILL after the grace); a cancel message does
the same for one operation's CLI only. The engine (pool.py) recycles a worker after a number of
operations and lets it exit when idle.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

T_START = time.monotonic()

# Imported after T_START on purpose: the import cost of the Pulumi SDK is part of the measured
# worker overhead (of the first operation of the process).
from pulumi import automation as auto  # noqa: E402

from jupyternetes.engine.masking import MaskingFilter, install, mask_secrets, trim_message  # noqa: E402
from jupyternetes.engine.results import utc_now  # noqa: E402
from jupyternetes.engine.runtime import operation, protocol  # noqa: E402
from jupyternetes.engine.runtime import program as stack_program  # noqa: E402
from jupyternetes.engine.runtime.procs import children, descendants, pid_alive  # noqa: E402
from jupyternetes.engine.state import backendurl  # noqa: E402

T_IMPORTED = time.monotonic()

log = logging.getLogger("jupyternetes.engine.worker")

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0


def die_with_parent() -> None:
    """SIGTERM when the thread that started us dies (set here, not in preexec_fn, because
    preexec_fn is unsafe in a multi-threaded parent such as the operator)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:  # not Linux: the timeout in the parent still bounds us
        return
    expected = os.environ.get(protocol.ENV_PARENT_PID)
    # The parent may have died before prctl took effect; then we are already orphaned.
    if expected and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)


def cli_pids(stack: str) -> list[int]:
    """This process's children that are a Pulumi CLI run for `stack` (`... --stack <stack>`)."""
    found = []
    for pid in children(os.getpid()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[:-1]):
            if arg == b"--stack" and argv[i + 1] == stack.encode():
                found.append(pid)
                break
    return found


def interrupt(pids: list[int], grace: float) -> None:
    """SIGINT `pids` (the CLI cancels: in-flight steps finish, the checkpoint is written, the
    lock released); after `grace` seconds, SIGKILL what is left and everything below it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in pids:
        for victim in [pid, *descendants(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def on_sigterm(_signum: int, _frame: Any) -> None:
    """Cancel every Pulumi CLI of this process like Ctrl-C does, then make sure nothing of ours
    is left (the operator died, or stops the worker after a cancel did not end it)."""
    log.warning("terminating: cancelling the Pulumi CLI")
    interrupt(children(os.getpid()), protocol.CANCEL_GRACE_SECONDS)
    os._exit(143)


class Operations:
    """The operations this process runs, each in a thread; answers are written as they end."""

    def __init__(self, mask: MaskingFilter) -> None:
        self.mask = mask
        self._lock = threading.Lock()
        self._write = threading.Lock()
        self._running: dict[Any, str] = {}  # id -> stack
        self.done = 0
        self.last_activity = time.monotonic()
        self.first_request_at: float | None = None

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def start(self, op_id: Any, request: dict[str, Any]) -> None:
        self.mask.add(backendurl.request_mask_values(request))
        now = time.monotonic()
        with self._lock:
            first = self.first_request_at is None
            if first:
                self.first_request_at = now
            self._running[op_id] = str(request.get("stack"))
            before = self.done + len(self._running) - 1
        # The first operation of a process carries its start-up; a pre-started process did it
        # before the request came (waited_for_request), off the operation's clock.
        timings = {"imports": T_IMPORTED - T_START if first else 0.0,
                   "waited_for_request": now - T_IMPORTED if first else 0.0,
                   "operations_before": float(before)}
        threading.Thread(target=self._run, args=(op_id, request, timings), daemon=True,
                         name=f"operation-{op_id}").start()

    def cancel(self, op_id: Any) -> None:
        with self._lock:
            stack = self._running.get(op_id)
        if stack is None:
            return
        log.warning("stack %s: cancelling its operation", stack)
        operation.cli().cancel(stack)
        threading.Thread(target=interrupt, args=(cli_pids(stack), protocol.CANCEL_GRACE_SECONDS),
                         daemon=True, name=f"cancel-{op_id}").start()

    def _run(self, op_id: Any, request: dict[str, Any], timings: dict[str, float]) -> None:
        try:
            answer = answer_to(request, timings, self.mask)
            with self._write:
                sys.stdout.buffer.write(protocol.encode({"id": op_id, "answer": answer}))
                sys.stdout.buffer.flush()
        finally:
            # Done only once the answer is out: a recycled worker whose stdin has ended exits
            # as soon as nothing runs (serve -> wait), and this daemon thread dies with it.
            with self._lock:
                self._running.pop(op_id, None)
                self.done += 1
                self.last_activity = time.monotonic()

    def wait(self) -> None:
        while self.running():
            time.sleep(0.1)


def answer_to(request: Mapping[str, Any], timings: dict[str, float],
              mask: MaskingFilter) -> dict[str, Any]:
    """operation.run's answer; what goes wrong outside the engine is an answer too."""
    forms = mask.forms()
    try:
        answer = operation.run(request, timings)
    except (FileNotFoundError, PermissionError) as exc:
        # Typically no `pulumi` on PATH or an unusable PULUMI_HOME / work dir.
        answer = {"config_error": f"cannot run the Pulumi CLI for stack {request.get('stack')}: "
                                  f"{exc}; check PATH (pulumi), --pulumi-home and --state-dir"}
    except stack_program.ProgramError as exc:
        answer = {"result": "failed", "message": f"invalid rendered objects: {exc}",
                  "started_at": utc_now(), "finished_at": utc_now()}
    except auto.CommandError as exc:
        # A CLI run before the operation itself (selecting or creating the stack) failed: its
        # error lines, not the exception's dump of code/stdout/stderr.
        answer = {"result": "failed", "started_at": utc_now(), "finished_at": utc_now(),
                  "message": f"stack {request.get('stack')}: {request.get('op')}: "
                             f"{trim_message([], str(exc), forms)}"}
    except Exception as exc:  # an engine/SDK error outside CommandError: report, don't crash
        sys.stderr.write(mask_secrets(traceback.format_exc(), forms))
        answer = {"result": "failed", "started_at": utc_now(), "finished_at": utc_now(),
                  "message": mask_secrets(f"stack {request.get('stack')}: {request.get('op')}: "
                                          f"{type(exc).__name__}: {exc}", forms)}
    for key in ("message", "config_error"):  # whatever path built it, no secret leaves
        if isinstance(answer.get(key), str):
            answer[key] = mask_secrets(answer[key], mask.forms())
    if answer.get("result") == "failed" and isinstance(answer.get("message"), str):
        # "could not list bucket: ... connection refused" means: the state database is down.
        answer["message"] = backendurl.explain_unreachable(
            answer["message"], str((request.get("settings") or {}).get("backend_url") or ""))
    answer["worker_pid"] = os.getpid()
    return answer


def serve(ops: Operations, idle_seconds: float) -> int:
    """Read messages until stdin ends (then finish what runs) or nothing came and nothing ran
    for `idle_seconds` (exit WORKER_IDLE_EXIT: every request read has been answered)."""
    fd = sys.stdin.fileno()
    buffer = b""
    while True:
        ready = select.select([fd], [], [], POLL_SECONDS)[0]
        if not ready:
            idle_for = time.monotonic() - ops.last_activity
            if idle_seconds > 0 and not buffer and not ops.running() and idle_for >= idle_seconds:
                return protocol.WORKER_IDLE_EXIT
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            ops.wait()
            return 0
        ops.last_activity = time.monotonic()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = protocol.decode(line)
            if message is None:
                continue
            if isinstance(message.get("request"), dict):
                ops.start(message.get("id"), message["request"])
            elif message.get("cancel"):
                ops.cancel(message.get("id"))


def main() -> int:
    logging.basicConfig(level=os.environ.get("JUPYTERNETES_WORKER_LOG", "INFO"),
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    die_with_parent()
    signal.signal(signal.SIGTERM, on_sigterm)
    # Everything this process writes to stderr (logs, tracebacks) is masked with the secret
    # values of every request it has seen: the operator logs it at debug level.
    mask = MaskingFilter()
    for handler in logging.getLogger().handlers:
        install(handler, mask)
    # `pulumi version` (the CLI object's public constructor runs it) before the first request:
    # a pre-started worker does it while it waits.
    operation.warm_cli()
    ops = Operations(mask)
    code = serve(ops, float(os.environ.get(protocol.ENV_IDLE_SECONDS) or 0))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
