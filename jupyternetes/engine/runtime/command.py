"""The Pulumi CLI of a worker: Pulumi's own `PulumiCommand`, minus three read-backs.

The Automation API runs more CLI processes than an operation needs. `Stack.select` runs `pulumi
stack select` although every later command names the stack (`--stack`); after `up`, `refresh`
and `destroy` it reads back what the event stream has already delivered: `stack output --json`
twice (with and without `--show-secrets`: each of those loads the stack's secrets, one
passphrase key derivation each) and `stack history --page-size 1` (with `--show-secrets`: one
more). That is up to four CLI processes per operation, each a Go start and a backend read.

`EventCommand` is a `PulumiCommand` (built with its public constructor) whose `run` answers those
exact commands itself, from what the operation registered (`answering`): that the stack exists,
and the operation's events (the summary event, the stack resource's outputs). Any other command,
and these when an answer is missing (an event did not arrive, an output is a secret: events show
secrets masked), run the real CLI as before. Only the public `PulumiCommand.run` is overridden;
tests/unit/test_command.py pins the command lines the SDK sends (so an SDK upgrade that changes
them shows up as a failing test, not as silently slower operations).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi import automation as auto

from jupyternetes.engine.masking import SECRET_MASK
from jupyternetes.engine.runtime.events import (
    SUMMARY_WAIT_SECONDS,
    Collector,
    is_secret_wrapper,
    op_name,
)

# The SDK's time format in `stack history --json` (what UpdateSummary parsing expects).
HISTORY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.000Z"


@dataclass
class Known:
    """What one running operation knows about its stack."""

    exists: bool
    collector: Collector
    cancelled: bool = False


class EventCommand(auto.PulumiCommand):
    """`pulumi` (from PATH, or `<root>/bin/pulumi`), with local answers for registered stacks.

    The constructor runs `pulumi version` once (PulumiCommand's public constructor always does):
    a worker makes one and keeps it for every operation it runs. Thread-safe: operations of
    different stacks may run at once; two operations of one stack never do (the engine
    serialises them)."""

    def __init__(self, root: str | None = None) -> None:
        super().__init__(root=root, skip_version_check=True)
        self._known: dict[str, Known] = {}
        self._guard = threading.Lock()
        self.local_answers = 0  # how many CLI runs were answered locally (for tests, timings)

    @contextlib.contextmanager
    def answering(self, stack: str, exists: bool, collector: Collector) -> Iterator[None]:
        """While the block runs, answer `stack`'s read-backs from `collector`; `exists`: the
        stack is known to exist (`stack select` needs no CLI run)."""
        with self._guard:
            self._known[stack] = Known(exists, collector)
        try:
            yield
        finally:
            with self._guard:
                self._known.pop(stack, None)

    def mark_exists(self, stack: str) -> None:
        """The stack has just been created (by a write of its checkpoint or `stack init`)."""
        with self._guard:
            if stack in self._known:
                self._known[stack].exists = True

    def cancel(self, stack: str) -> None:
        """The operation on `stack` is cancelled: it starts no further CLI run."""
        with self._guard:
            if stack in self._known:
                self._known[stack].cancelled = True

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: auto.OnOutput | None = None,
            on_error: auto.OnOutput | None = None) -> auto.CommandResult:
        stack = args[args.index("--stack") + 1] if "--stack" in args[:-1] else None
        with self._guard:
            known = self._known.get(stack) if stack else None
            if known is not None and known.cancelled:
                raise auto.CommandError(auto.CommandResult(
                    stdout="", stderr=f"the operation on stack {stack} was cancelled", code=-2))
        answer = self.local_answer(args)
        if answer is not None:
            with self._guard:
                self.local_answers += 1
            return auto.CommandResult(stdout=answer, stderr="", code=0)
        return super().run(args, cwd, additional_env, on_output, on_error)

    def local_answer(self, args: list[str]) -> str | None:
        """The stdout of `args` when it can be answered without the CLI, else None."""
        if len(args) < 4 or args[0] != "stack" or args[-2] != "--stack":
            return None
        with self._guard:
            known = self._known.get(args[-1])
        if known is None:
            return None
        flags = args[1:-2]
        if flags == ["select"]:
            return "" if known.exists else None
        if flags in (["output", "--json"], ["output", "--json", "--show-secrets"]):
            return stack_outputs_json(known.collector)
        if flags in (["history", "--json", "--show-secrets", "--page-size", "1", "--page", "1"],
                     ["history", "--json", "--page-size", "1", "--page", "1"]):
            return last_update_json(known.collector)
        return None


def stack_outputs_json(collector: Collector) -> str | None:
    """`stack output --json` from the stack resource's outputs event; None when it did not come
    or holds a secret (events show secrets masked: only the CLI has their values)."""
    collector.finished.wait(SUMMARY_WAIT_SECONDS)
    outputs = collector.stack_outputs
    if outputs is None or any(is_secret_wrapper(v) or v == SECRET_MASK for v in outputs.values()):
        return None
    return json.dumps(outputs)


def last_update_json(collector: Collector) -> str | None:
    """`stack history --json --page-size 1` from the summary event: what the SDK reads of it is
    the change summary; the times are the time of this answer."""
    collector.finished.wait(SUMMARY_WAIT_SECONDS)
    summary = collector.summary
    if summary is None:
        return None
    now = time.strftime(HISTORY_TIME_FORMAT, time.gmtime())
    entry: dict[str, Any] = {
        "kind": "update", "startTime": now, "endTime": now, "message": "", "environment": {},
        "config": {}, "result": "succeeded",
        "resourceChanges": {op_name(k): v for k, v in (summary.resource_changes or {}).items()},
    }
    return json.dumps([entry])
