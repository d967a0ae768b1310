"""`python -m jupyternetes.engine.worker`: the process that runs ONE stack operation and exits.

Request: one JSON object on stdin (see stackengine.StackEngine._request). Answer: one JSON
object on stdout. Logs: stderr, masked. The operation itself is operation.run. A fresh process
per operation because Pulumi's Python runtime (settings, language server, mocks) keeps state per
process; see stackengine.py. Shared constants come from pool.py, which both sides import.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

T_START = time.monotonic()

# Imported after T_START on purpose: the import cost of the Pulumi SDK is part of the measured
# worker overhead.
from pulumi import automation as auto  # noqa: E402

from jupyternetes.engine import backendurl, operation, pool  # noqa: E402
from jupyternetes.engine import program as stack_program  # noqa: E402
from jupyternetes.engine.masking import (  # noqa: E402
    MaskingFilter,
    install,
    mask_secrets,
    trim_message,
)
from jupyternetes.engine.procs import pid_alive  # noqa: E402
from jupyternetes.engine.results import utc_now  # noqa: E402

T_IMPORTED = time.monotonic()
# When the request was read: later than T_IMPORTED for a pre-started worker, which waited.
T_REQUEST = T_IMPORTED

log = logging.getLogger("jupyternetes.engine.worker")

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM when the thread that started us dies (set here, not in preexec_fn, because
    preexec_fn is unsafe in a multi-threaded parent such as the operator)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:  # not Linux: the timeout in the parent still bounds us
        return
    expected = os.environ.get(pool.ENV_PARENT_PID)
    # The parent may have died before prctl took effect; then we are already orphaned.
    if expected and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def on_sigterm(_signum: int, _frame: Any) -> None:
    """Cancel the Pulumi CLI like Ctrl-C does (it finishes in-flight steps, saves the
    checkpoint and releases the stack lock), then make sure nothing of ours is left."""
    log.warning("terminating: cancelling the Pulumi CLI")
    children = child_pids()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + pool.CANCEL_GRACE_SECONDS
    while time.monotonic() < deadline and any(pid_alive(p) for p in children):
        time.sleep(0.2)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os._exit(143)


def main() -> int:
    logging.basicConfig(level=os.environ.get("JUPYTERNETES_WORKER_LOG", "INFO"),
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    die_with_parent()
    signal.signal(signal.SIGTERM, on_sigterm)
    # `pulumi version` (the CLI object's public constructor runs it) before the request
    # comes: a pre-started worker does it while it waits.
    operation.warm_cli()
    request = read_request()
    if request is None:
        return pool.WORKER_IDLE_EXIT
    secret_values = backendurl.request_mask_values(request)
    # Everything this process writes to stderr (logs, tracebacks) is masked: the operator logs
    # it at debug level.
    mask = MaskingFilter(secret_values)
    for handler in logging.getLogger().handlers:
        install(handler, mask)
    try:
        # A pre-started worker's imports were done before the request came: off the clock.
        answer = operation.run(request, {"imports": T_IMPORTED - T_START,
                                         "waited_for_request": T_REQUEST - T_IMPORTED})
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
                  "message": f"stack {request.get('stack')}: {op_label(request)}: "
                             f"{trim_message([], str(exc), mask.forms())}"}
    except Exception as exc:  # an engine/SDK error outside CommandError: report, don't crash
        sys.stderr.write(mask_secrets(traceback.format_exc(), mask.forms()))
        answer = {"result": "failed", "started_at": utc_now(), "finished_at": utc_now(),
                  "message": mask_secrets(f"stack {request.get('stack')}: {op_label(request)}: "
                                          f"{type(exc).__name__}: {exc}", mask.forms())}
    for key in ("message", "config_error"):  # whatever path built it, no secret leaves
        if isinstance(answer.get(key), str):
            answer[key] = mask_secrets(answer[key], mask.forms())
    if answer.get("result") == "failed" and isinstance(answer.get("message"), str):
        # "could not list bucket: ... connection refused" means: the state database is down.
        answer["message"] = backendurl.explain_unreachable(
            answer["message"], str((request.get("settings") or {}).get("backend_url") or ""))
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0


def read_request() -> dict[str, Any] | None:
    """The request on stdin. A pre-started worker (see pool.py) waits at most its idle time
    for it, and None means: no request came (timeout, or stdin closed by a closing pool)."""
    global T_REQUEST
    idle = float(os.environ.get(pool.ENV_IDLE_SECONDS) or 0)
    if idle > 0 and not select.select([sys.stdin], [], [], idle)[0]:
        return None
    raw = sys.stdin.buffer.read()
    T_REQUEST = time.monotonic()
    if not raw.strip():
        return None
    return json.loads(raw)


def op_label(request: Mapping[str, Any]) -> str:
    return str(request.get("op"))


if __name__ == "__main__":
    sys.exit(main())
