"""Which stack worker process runs which stack's operation right now, so that the operations of
some stacks can be killed without touching the others.

A replica that loses one shard's Lease must stop that shard's engine operations before the Lease
can lapse for another replica (coordination/lease.py), while the operations of the shards it
still holds go on. The pool (pool.py) registers each operation with its worker for the time it
runs; `kill` SIGKILLs the workers running a selected stack with everything below them (Pulumi
CLI, language host, provider): the same as a killed container, which the lock rule (locks.py)
already handles. A long-lived worker runs several stacks' operations at once: the others in a
killed worker fail and are retried by the reconcile that asked for them (a lost shard is rare:
a replica that cannot renew its Leases), which is simpler and safer than picking one
operation's CLI out of a running worker.

The `gate` (coordination/fence.py's, set by an operator with Leases) is asked under the
registry's lock when a worker is about to get its request: an operation of a stack whose Lease
is not held is refused. Registration and
`kill` take the same lock, and the shard manager marks a shard lost before it calls `kill`, so an
operation that passed the gate is registered before the kill looks, and one after the loss is
refused: no operation of a lost shard outlives its `kill`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from jupyternetes.coordination.fence import Fenced
from jupyternetes.engine.runtime import procs

_lock = threading.Lock()
_running: dict[object, tuple[int, str]] = {}  # operation -> (worker pid, stack)
KILL_WAIT_SECONDS = 2.0  # a killed process takes a moment to exit on a busy node
_gate: Callable[[str], bool] | None = None


class Refused(Fenced):
    """The gate refused the operation: this replica does not hold the stack's Lease."""


def set_gate(gate: Callable[[str], bool] | None) -> None:
    global _gate
    with _lock:
        _gate = gate


@contextlib.contextmanager
def running(stack: str, pid: int, operation: object = None) -> Iterator[None]:
    """Register worker `pid` as running an operation of `stack` for the `with` block
    (`operation`: a key of its own, when one worker runs several at once); raises Refused when
    the gate says this replica may not write the stack."""
    key = operation if operation is not None else object()
    with _lock:
        # stack "": the list of all stacks (listing.py), which writes none.
        if _gate is not None and stack and not _gate(stack):
            raise Refused(f"stack {stack}: operation not started, this replica does not hold "
                          "the stack's Lease (any more); its holder runs it")
        _running[key] = (pid, stack)
    try:
        yield
    finally:
        with _lock:
            _running.pop(key, None)


def stacks() -> list[str]:
    """Stacks with an operation running in a worker now (one entry per operation)."""
    with _lock:
        return sorted(stack for _, stack in _running.values())


def kill(select: Callable[[str], bool], wait_seconds: float = KILL_WAIT_SECONDS) -> list[int]:
    """SIGKILL the workers running a stack `select` accepts: first the worker's whole process
    group (its CLIs and providers are in it, including one forked a moment ago), then every
    process below it read before (one that left the group). Waits (at most `wait_seconds`)
    until they are gone. Returns the pids signalled."""
    with _lock:
        chosen = sorted({pid for pid, stack in _running.values() if select(stack)})
    killed: list[int] = []
    for pid in chosen:
        tree = [pid, *procs.descendants(pid)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # workers start a session (and group) of their own
        for target in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)
            killed.append(target)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and any(procs.pid_alive(p) for p in killed):
        time.sleep(0.02)  # polling the kernel: no event tells that a process has exited
    return killed
