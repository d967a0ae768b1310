"""Orphaned stacks: stacks whose instance no longer exists are destroyed (PVCs are kept).

An instance can vanish without its `destroy`: its finalizer stripped by hand while the operator
was stopped, a force-delete whose stack could not be removed, a namespace deleted while the
destroy failed. Its stack would then keep the objects it made. At start and periodically the
collector lists the backend's stacks, then the instances, and destroys every stack of a served
namespace that no instance names.

Order matters: stacks first, instances second. An instance created between the two lists is in
the second one, so the stack its first `up` is creating right now is never taken for an orphan;
the other order could destroy it.

Destroys take seconds each, and a round may hold many, so the lists grow old while it runs: a
user may start a server of the same name meanwhile, and its first `up` takes the stack over.
Right before each destroy the collector lists its namespace's instances again (`recheck`) and
keeps the stack when an instance names it now. What is left is the moment between that list and
the destroy's own lock on the stack; an `up` that starts in it finds the stack locked and is
retried after the destroy, recreating the objects (PVCs were kept): nothing of the user's is
lost.

Sharded replicas (`owns`): each destroys only the orphaned stacks of the shards it holds, so a
stack is only ever written by the holder of its shard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol

from jupyternetes.crd.naming import stack_name

log = logging.getLogger(__name__)


class OrphanEngine(Protocol):
    def list_stacks(self) -> list[str]: ...
    def destroy(self, namespace: str, name: str, stack: str | None = None) -> Any: ...


def stack_namespace(stack: str) -> str:
    """The namespace part of a stack name (`<namespace>.<name>`, naming.stack_name); also right
    for shortened names (`<namespace>..<hash>`)."""
    return stack.partition(".")[0]


def orphaned_stacks(stacks: Iterable[str], instances: Iterable[tuple[str, str]],
                    namespaces: Collection[str] = ()) -> list[str]:
    """Stacks of the served `namespaces` (all when empty) that no (namespace, name) of
    `instances` names. `instances` must be listed after `stacks` (module docstring)."""
    live = {stack_name(ns, name) for ns, name in instances}
    served = set(namespaces)
    return sorted(s for s in set(stacks)
                  if s not in live and (not served or stack_namespace(s) in served))


class OrphanCollector:
    """Runs `collect` once at start and then every `interval` seconds in its own thread."""

    def __init__(self, engine: OrphanEngine, list_instances: Callable[[], list[tuple[str, str]]],
                 namespaces: Collection[str] = (), interval: float = 600.0,
                 observe: Callable[[str, str, float], None] | None = None,
                 owns: Callable[[str], bool] | None = None,
                 recheck: Callable[[str], list[tuple[str, str]]] | None = None,
                 served: Callable[[], Collection[str]] | None = None) -> None:
        self.engine = engine
        # Label-selected scopes: the namespaces served now (namespacescope.py). None: the fixed
        # `namespaces` (empty: all). An empty answer judges nothing: with no namespace known
        # to be served, no stack is known to be an orphan.
        self.served = served
        # (namespace) -> its instances now, fresh from the apiserver (module docstring).
        self.recheck = recheck
        self.owns = owns
        self.list_instances = list_instances
        self.namespaces = tuple(namespaces)
        self.interval = interval
        self.observe = observe  # (operation, result, seconds): the engine operation metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def collect(self) -> list[str]:
        """Destroy the orphaned stacks now; returns the ones destroyed."""
        namespaces: Collection[str] = self.namespaces
        if self.served is not None:
            namespaces = tuple(self.served())
            if not namespaces:
                return []
        try:
            stacks = self.engine.list_stacks()
            instances = self.list_instances()
        except Exception as exc:
            log.warning("orphaned stacks: cannot list stacks and instances (%s); next check in "
                        "%.0fs", exc, self.interval)
            return []
        destroyed = []
        for stack in orphaned_stacks(stacks, instances, namespaces):
            if self._stop.is_set():
                break
            if self.owns is not None and not self.owns(stack):
                continue  # another replica's shard: its holder decides
            if not self.still_orphaned(stack):
                continue
            started = time.monotonic()
            result = self.engine.destroy(stack_namespace(stack), "", stack=stack)
            outcome = getattr(result, "result", "failed")
            if self.observe is not None:
                self.observe("destroy", outcome, time.monotonic() - started)
            if outcome == "succeeded":
                destroyed.append(stack)
                log.warning("destroyed orphaned stack %s: no instance names it any more "
                            "(PVCs kept)", stack)
            else:
                log.warning("orphaned stack %s: destroy failed, retried in %.0fs: %s", stack,
                            self.interval, getattr(result, "message", ""))
        return destroyed

    def still_orphaned(self, stack: str) -> bool:
        """Whether no instance names `stack` right now; False when that cannot be known (the
        next round looks again)."""
        if self.recheck is None:
            return True
        namespace = stack_namespace(stack)
        try:
            instances = self.recheck(namespace)
        except Exception as exc:
            log.warning("orphaned stack %s: cannot list the instances of %s again (%s); kept "
                        "until the next check", stack, namespace, exc)
            return False
        if orphaned_stacks([stack], instances):
            return True
        log.info("stack %s: an instance names it again (created since the orphan check "
                 "began); kept", stack)
        return False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="orphans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.collect()
            if self.interval <= 0 or self._stop.wait(self.interval):
                return
