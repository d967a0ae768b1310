"""Which stack worker process runs which stack's operation right now, so that the operations of
some stacks can be killed without touching the others.

A replica that loses one shard's Lease must stop that shard's engine operations before the Lease
can lapse for another replica (operator/shardleases.py), while the operations of the shards it
still holds go on. The engine (stacks.py) registers each worker for the time its operation runs;
`kill` SIGKILLs the selected workers with everything below them (Pulumi CLI, language host,
provider): the same as a killed container, which the lock rule (locks.py) already handles.

The `gate` (set by a sharded operator) is asked under the registry's lock when a worker is about
to get its request: an operation of a stack whose shard is not held is refused. Registration and
`kill` take the same lock, and the shard manager marks a shard lost before it calls `kill`, so an
operation that passed the gate is registered before the kill looks, and one after the loss is
refused: no operation of a lost shard outlives its `kill`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

from jupyternetes.engine import procs

_lock = threading.Lock()
_running: dict[int, str] = {}  # worker pid -> stack
_gate: Callable[[str], bool] | None = None


class Refused(RuntimeError):
    """The gate refused the operation: this replica does not hold the stack's shard."""


def set_gate(gate: Callable[[str], bool] | None) -> None:
    global _gate
    with _lock:
        _gate = gate


@contextlib.contextmanager
def running(stack: str, pid: int) -> Iterator[None]:
    """Register worker `pid` as running an operation of `stack` for the `with` block; raises
    Refused when the gate says this replica may not write the stack."""
    with _lock:
        if _gate is not None and not _gate(stack):
            raise Refused(f"stack {stack}: operation not started, this replica does not hold "
                          "the stack's shard (any more); its holder runs it")
        _running[pid] = stack
    try:
        yield
    finally:
        with _lock:
            _running.pop(pid, None)


def stacks() -> list[str]:
    """Stacks with an operation running in a worker now (one entry per worker)."""
    with _lock:
        return sorted(_running.values())


def kill(select: Callable[[str], bool]) -> list[int]:
    """SIGKILL the workers of the stacks `select` accepts, and every process below them
    (children read before the parent dies, so none is missed). Returns the pids signalled."""
    with _lock:
        chosen = [pid for pid, stack in _running.items() if select(stack)]
    killed: list[int] = []
    for pid in chosen:
        tree = [pid, *procs.descendants(pid)]
        for target in tree:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(target, signal.SIGKILL)
                killed.append(target)
    return killed
