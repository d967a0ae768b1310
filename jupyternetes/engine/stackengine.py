"""The stack engine: one Pulumi stack per instance, its operations run in worker processes.

Every engine operation (up, preview, destroy, repair, forget) runs in a worker process
(`python -m jupyternetes.engine.runtime.worker`, pool.py), never in the operator: a hung or crashed
Pulumi CLI, SDK or program cannot take the operator down, and the operator's own threads never
touch Pulumi's runtime state. A worker runs several operations at once, each in a thread (the
SDK keeps a deployment's state in contextvars), and many in its life: Python, the SDK imports
and the CLI's version check are paid once per worker, not once per operation. It dies with the
thread that started it (PR_SET_PDEATHSIG, set by the worker itself) so an operator killed with
SIGKILL leaves no engine holding a stack lock, and a timed-out operation is cancelled. Answers
carry the engine time, so callers see the overhead around it.

The worker runs no CLI command an operation does not need (command.EventCommand): an `up` of an
existing stack on a file:// backend is one `pulumi up` process. A killed CLI can leave the file
backend's files half-written; repair.py fixes them at start and when an operation cannot load
its checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

from jupyternetes.crd import naming
from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.results import OperationResult, PreviewResult, utc_now
from jupyternetes.engine.runtime import listing, pool
from jupyternetes.engine.settings import StackConfigError, StackSettings
from jupyternetes.engine.state import diystate, statedirs
from jupyternetes.engine.state.backendurl import file_backend_path
from jupyternetes.engine.state.locks import is_locked_error
from jupyternetes.engine.state.repair import StateRepair

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 600.0
# Idle workers kept pre-started (Python and the Pulumi SDK loaded), see pool.
DEFAULT_PRESTARTED_WORKERS = 1


class StackEngine:
    """Runs stack operations, each in a fresh worker process. Thread-safe; operations on one
    stack are serialised here as well as by the caller's queue (a second line of defence)."""

    def __init__(self, settings: StackSettings, env: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 prestart: int = DEFAULT_PRESTARTED_WORKERS) -> None:
        self.settings = settings
        self.timeout = timeout
        # Environment of the worker (PATH must find `pulumi`); default: this process's.
        self._env = dict(os.environ if env is None else env)
        # Filled after the first operation; idle workers are stopped when the engine is
        # closed or garbage-collected, and die with this process in any case (PDEATHSIG).
        concurrency, reuse = engine_settings.worker_limits(self._env)
        self._pool = pool.WorkerPool(self._env, prestart, concurrency, reuse)
        weakref.finalize(self, self._pool.close)
        self._stack_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._repair = StateRepair(settings, _repair_by_name(weakref.ref(self)))

    # -- public operations --------------------------------------------------------------------

    def stack_name(self, namespace: str, name: str) -> str:
        return naming.stack_name(namespace, name)

    def up(self, namespace: str, name: str, rendered: Any, secret_values: Collection[str],
           refresh: bool = False) -> OperationResult:
        """Create/update the instance's objects. refresh=True refreshes first (drift seen)."""
        request = self._request("up", namespace, name, rendered, secret_values, refresh=refresh)
        return self._operation(request)

    def preview(self, namespace: str, name: str, rendered: Any, secret_values: Collection[str],
                refresh: bool = True) -> PreviewResult:
        """What `up` would do, per object; the stack is not changed (and not left behind when
        it did not exist before)."""
        request = self._request("preview", namespace, name, rendered, secret_values,
                                refresh=refresh)
        started = time.monotonic()
        answer = self._run(request)
        answer["wall_seconds"] = time.monotonic() - started
        return PreviewResult.from_dict(answer)

    def destroy(self, namespace: str, name: str, stack: str | None = None) -> OperationResult:
        """Delete the instance's objects (PVCs are retained) and remove the stack. `stack`
        overrides the name (an orphaned stack found by `list_stacks`)."""
        return self._operation(self._request("destroy", namespace, name, (), (), stack=stack))

    def forget(self, namespace: str, name: str) -> OperationResult:
        """Remove the stack's state without touching its objects (`pulumi stack rm --force`):
        the last step of a force-delete, whose pods were deleted with the plain client."""
        return self._operation(self._request("forget", namespace, name, (), ()))

    def list_stacks(self) -> list[str]:
        """Names of every stack of the project in the backend (`pulumi stack ls --all`; on the
        operator's file:// backend, the checkpoints of the root and of every bucket).
        Raises StackConfigError when the CLI cannot list them."""
        root = file_backend_path(self.settings.backend_url)
        if root is not None:
            try:
                return statedirs.checkpoint_stacks(root, self.settings.project)
            except OSError as exc:
                raise StackConfigError(f"listing stacks in {root}: {exc}") from exc
        # In a worker (listing.py), like every CLI run: it dies with this process and is
        # bounded in time. Not under a stack's lock: it writes nothing.
        request = {"op": listing.LIST_OP, "stack": "", "instance": {},
                   "settings": self.settings.to_request(), "objects": [],
                   "secret_values": []}
        answer = self._work(request)
        if answer.get("result") != "succeeded":
            raise StackConfigError(answer.get("message") or "listing stacks failed")
        return stack_names(str(answer.get("stdout") or ""), self.settings.project)

    def repair(self, namespace: str, name: str, stack: str | None = None) -> OperationResult:
        """Refresh with pending CREATEs cleared: converges a stack an interrupted `up` left.
        `stack` overrides the name (a shortened stack name cannot be parsed back)."""
        return self._operation(self._request("repair", namespace, name, (), (), stack=stack))


    # -- state repair (repair.py) ---------------------------------------------------------------

    @property
    def leader_since(self) -> float | None:
        """When this operator acquired the Lease (None: no leader election); it decides which
        other hosts' locks are provably stale (locks.py)."""
        return self._repair.leader_since

    @property
    def lock_since(self) -> Callable[[str], float | None] | None:
        """Sharded replicas: stack -> when this replica acquired the stack's shard Lease (None
        while it does not hold it); replaces leader_since in the lock rule (locks.py)."""
        return self._repair.lock_since

    @lock_since.setter
    def lock_since(self, since: Callable[[str], float | None] | None) -> None:
        self._repair.lock_since = since

    def clear_stale_locks(self, leader_since: float | None = None,
                          stacks: Callable[[str], bool] | None = None) -> list[str]:
        """At operator start: remove what crashed operations left (workspace folders, stale
        locks, half-written files) and repair stacks with pending operations (repair.py).
        `stacks`: only the stacks it accepts (a sharded replica: those of its shards).
        Returns what was done, one line per action (for logs)."""
        return self._repair.clear_stale_locks(leader_since, stacks)

    def clear_stack_locks(self, stack: str) -> list[str]:
        """Remove the locks of one stack whose holder is provably gone (locks.py). Call with
        the stack's thread lock held; returns the removals."""
        return self._repair.clear_stack_locks(stack)

    def repair_state(self, stack: str) -> list[str]:
        """Fix the file-backend files of `stack` a killed CLI left half-written (diystate).
        Call with the stack's thread lock held. Returns the actions, logged."""
        return self._repair.repair_state(stack)

    def close(self) -> None:
        """Stop the pre-started idle workers (running operations are not affected)."""
        self._pool.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, op: str, namespace: str, name: str, rendered: Any,
                 secret_values: Collection[str], refresh: bool = False,
                 stack: str | None = None) -> dict[str, Any]:
        objects = rendered.objects() if hasattr(rendered, "objects") else rendered
        stack = stack or self.stack_name(namespace, name)
        settings = self.settings.to_request()
        # On the operator's file:// backend each stack lives in its hash bucket (statedirs).
        settings["backend_url"] = statedirs.stack_url(self.settings.backend_url,
                                                      self.settings.project, stack)
        return {
            "op": op,
            "stack": stack,
            "instance": {"namespace": namespace, "name": name},
            "settings": settings,
            "objects": [_object_dict(o) for o in objects],
            "secret_values": sorted({s for s in secret_values if s}),
            "refresh": refresh,
        }

    def _operation(self, request: dict[str, Any]) -> OperationResult:
        started_at, started = utc_now(), time.monotonic()
        answer = self._run(request)
        return OperationResult(
            operation=request["op"],
            result=answer.get("result", "failed"),
            started_at=answer.get("started_at") or started_at,
            finished_at=answer.get("finished_at") or utc_now(),
            change_summary=dict(answer.get("change_summary") or {}),
            outputs=dict(answer.get("outputs") or {}),
            message=answer.get("message", ""),
            engine_seconds=float(answer.get("engine_seconds") or 0.0),
            wall_seconds=time.monotonic() - started,
            timings=dict(answer.get("timings") or {}),
            replica=self.settings.replica,
            worker_pid=answer.get("worker_pid"),
        )

    def _lock_for(self, stack: str) -> threading.Lock:
        with self._guard:
            return self._stack_locks.setdefault(stack, threading.Lock())

    def _work(self, request: dict[str, Any]) -> dict[str, Any]:
        # engineprocs.Refused (the stack's Lease was lost just now) propagates: the caller
        # drops the key; it is not a failed operation of the instance.
        return self._pool.run(request, self.timeout)

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock_for(request["stack"]):
            answer = self._work(request)
            # A CLI that died (or lost its database) after taking the lock left it behind
            # while this operator runs: clear it by the lock rule, and try once more.
            if (answer.get("result") == "failed" and is_locked_error(answer.get("message", ""))
                    and self.clear_stack_locks(request["stack"])):
                answer = self._work(request)
            if (answer.get("result") != "failed"
                    or not diystate.is_checkpoint_load_error(answer.get("message", ""))):
                return answer
            actions = self.repair_state(request["stack"])
            if diystate.changed_anything(actions):
                # The files an interrupted write left are fixed: the operation can run now.
                answer = self._work(request)
            if answer.get("result") == "failed" and actions:
                answer["message"] = (f"{answer.get('message', '')}\nstate repair of stack "
                                     f"{request['stack']}: " + "; ".join(actions))
            return answer


def _repair_by_name(ref: weakref.ref[StackEngine]) -> Any:
    """The `repair` of a stack by its name (a shortened, hashed stack name cannot be parsed
    back into namespace and name); holds the engine weakly, so that it can be collected."""
    def repair(stack: str) -> OperationResult:
        engine = ref()
        if engine is None:
            raise StackConfigError(f"stack {stack}: the stack engine was closed")
        return engine.repair(stack.partition(".")[0], "", stack=stack)
    return repair


def stack_names(listing: str, project: str) -> list[str]:
    """Stack names from `pulumi stack ls --json` output (names may be qualified:
    `organization/<project>/<stack>` on DIY backends, `<org>/<project>/<stack>` elsewhere)."""
    try:
        entries = json.loads(listing or "[]")
    except ValueError as exc:
        raise StackConfigError(f"`pulumi stack ls --json` did not print JSON: {exc}") from exc
    names = []
    for entry in entries if isinstance(entries, list) else []:
        full = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(full, str):
            continue
        parts = full.split("/")
        if len(parts) >= 2 and parts[-2] != project:
            continue
        names.append(parts[-1])
    return sorted(set(names))


def _object_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return {"group": obj["group"], "entry": obj["entry"], "manifest": obj["manifest"]}
    return {"group": obj.group, "entry": obj.entry, "manifest": obj.manifest}
