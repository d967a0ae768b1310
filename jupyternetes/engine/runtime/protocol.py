"""What the engine and its worker processes say to each other (imported by both sides).

A worker (`python -m jupyternetes.engine.runtime.worker`) reads messages on stdin, writes answers on
stdout, one JSON object per line; its logs go to stderr (masked by the worker).

- `{"id": N, "request": {...}}`: run an operation (stackengine.StackEngine._request builds it).
  The worker runs each in a thread of its own, several at once (never two of one stack: the
  engine serialises a stack's operations).
- `{"id": N, "cancel": true}`: cancel operation N like Ctrl-C does (SIGINT to its Pulumi CLI,
  which finishes in-flight steps, writes the checkpoint and releases the lock; SIGKILL after
  CANCEL_GRACE_SECONDS). Its answer still comes.
- end of stdin: finish the running operations, then exit.

Answers: `{"id": N, "answer": {...}}` (see operation.run), one per request. A worker with nothing
to do for its idle time exits with WORKER_IDLE_EXIT; it then has read no request that it did
not answer, so the engine can send an unanswered one to another worker.
"""

from __future__ import annotations

import json
from typing import Any

# A worker that got no request for this long exits (with WORKER_IDLE_EXIT), so an operator
# that has nothing to do does not keep one forever.
WORKER_IDLE_SECONDS = 900.0
WORKER_IDLE_EXIT = 75
ENV_PARENT_PID = "JUPYTERNETES_WORKER_PARENT_PID"
ENV_IDLE_SECONDS = "JUPYTERNETES_WORKER_IDLE_SECONDS"
# After a cancel the worker gives the Pulumi CLI this long to finish in-flight steps, write the
# checkpoint and release the lock; then it kills it.
CANCEL_GRACE_SECONDS = 20.0
WORKER_MODULE = "jupyternetes.engine.runtime.worker"


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any] | None:
    """One message; None for an empty or unparseable line (ignored by both sides)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
