"""State repair: stale locks and half-written state a killed Pulumi CLI left behind.

A killed CLI (operator SIGKILL, a timeout) can leave its stack lock (a file, or a row on
postgres://), pending operations in the checkpoint and, on file://, half-written files. At
operator start `clear_stale_locks` removes the locks whose holder is provably gone (locks.py),
fixes the files (diystate) and converges stacks with pending operations (a `repair` operation:
refresh with pending creates cleared). During operation the engine calls `clear_stack_locks`
when an operation meets a lock, and `repair_state` when it cannot load its checkpoint.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from jupyternetes.engine.results import OperationResult
from jupyternetes.engine.runtime import workspaces
from jupyternetes.engine.settings import StackSettings
from jupyternetes.engine.state import backendurl, diystate, locks, pgstate, statedirs
from jupyternetes.engine.state.backendurl import file_backend_path
from jupyternetes.engine.state.locks import DIY_ORGANIZATION, lock_dir, locked_stacks

log = logging.getLogger(__name__)


class StateRepair:
    """The repairs of one engine's backend. `repair_stack(stack)` runs the engine's `repair`
    operation (refresh with pending creates cleared) on a stack by its name."""

    def __init__(self, settings: StackSettings,
                 repair_stack: Callable[[str], OperationResult]) -> None:
        self.settings = settings
        self._repair_stack = repair_stack
        # When this operator acquired the Lease (see clear_stale_locks, locks.py).
        self.leader_since: float | None = None
        # Sharded replicas: stack -> when this replica acquired the stack's shard Lease (None
        # while it does not hold it); replaces leader_since in the lock rule (locks.py).
        self.lock_since: Callable[[str], float | None] | None = None

    def since(self, stack: str) -> float | None:
        """The lock rule's reference time for the locks of `stack` (locks.py)."""
        return self.lock_since(stack) if self.lock_since is not None else self.leader_since

    def clear_stale_locks(self, leader_since: float | None = None,
                          stacks: Callable[[str], bool] | None = None) -> list[str]:
        """At operator start: remove the workspace folders of killed workers (jupyternetes.
        workspaces) and lock files (rows on postgres://) left by crashed operations, and repair
        stacks with pending operations. Returns what was done, one line per action (for logs).

        `leader_since`: Unix time this operator acquired the Lease (None: no leader
        election). It is kept for later repairs too: it decides which other hosts' locks
        are provably stale (locks.py). `stacks`: only the stacks it accepts (a sharded replica:
        the stacks of the shards it holds), asked again right before each repair."""
        self.leader_since = leader_since
        # Workspace folders of workers killed mid-operation (any backend).
        actions: list[str] = workspaces.sweep_stale_workspaces(
            project=self.settings.project, pulumi_home=self.settings.pulumi_home)
        if backendurl.is_postgres(self.settings.backend_url):
            for line in actions:
                log.warning("%s", line)
            return actions + self._clear_postgres_locks(stacks)
        backend_dir = file_backend_path(self.settings.backend_url)
        if backend_dir is None:
            # Cloud buckets lock the same way but need credentials of their own here; Pulumi
            # Cloud has `pulumi cancel`.
            log.info("stale lock clean-up applies to file:// and postgres:// backends; %s "
                     "skipped", urlparse(self.settings.backend_url).scheme)
            for line in actions:
                log.warning("%s", line)
            return actions
        for folder in statedirs.backend_dirs(backend_dir):
            actions += self._clear_folder(folder, leader_since, stacks)
        for line in actions:
            if not line.startswith("removed stale lock"):  # logged above, with the reason
                log.warning("%s", line)
        return actions

    def _clear_folder(self, backend_dir: Path, leader_since: float | None,
                      stacks: Callable[[str], bool] | None) -> list[str]:
        """clear_stale_locks in one file:// backend folder (the root or a bucket, statedirs):
        stale lock files, half-written files, stacks with pending operations."""
        actions: list[str] = []
        root = lock_dir(backend_dir, self.settings.project)
        host = socket.gethostname()
        for lock in map(locks.read_lock, locks.lock_files(root)):
            if stacks is not None and not stacks(lock.stack):
                continue
            if line := self._remove_if_stale(lock, host, lambda lock=lock: _unlink(lock)):
                actions.append(line)
        locked = locked_stacks(backend_dir, self.settings.project, leader_since=leader_since)
        # One listing of the stacks folder for all stacks (one per stack is quadratic).
        index = diystate.tmp_index(diystate.stacks_dir(backend_dir, self.settings.project))
        for stack in diystate.project_stacks(backend_dir, self.settings.project):
            if stacks is not None and not stacks(stack):
                continue
            if stack in locked:
                actions.append(f"stack {stack}: state files not checked, a running Pulumi "
                               "operation holds its lock")
                continue
            actions += diystate.repair_stack(backend_dir, self.settings.project, stack, index)
        for stack in diystate.stacks_with_pending_operations(backend_dir, self.settings.project):
            if stacks is not None and not stacks(stack):
                continue
            actions.append(self._repair_pending(stack))
        return actions

    def _clear_postgres_locks(self, stacks: Callable[[str], bool] | None) -> list[str]:
        """clear_stale_locks for a postgres:// backend: lock rows judged by the lock rule
        (locks.py), then the repair of stacks with pending operations. Blobs are written in
        one statement each, so there are no half-written files to fix (pgstate)."""
        url = self.settings.backend_url
        target = pgstate.parse_url(url)
        table = target.table
        actions: list[str] = []
        host = socket.gethostname()
        try:
            with pgstate.connect(url) as conn:
                for lock in pgstate.read_locks(conn, target, DIY_ORGANIZATION,
                                               self.settings.project):
                    if stacks is not None and not stacks(lock.stack):
                        continue
                    if line := self._remove_if_stale(
                            lock, host,
                            lambda lock=lock: pgstate.delete_key(conn, table, str(lock.path))):
                        actions.append(line)
                locked = {lock.stack for lock in pgstate.read_locks(
                    conn, target, DIY_ORGANIZATION, self.settings.project)}
                pending = [s for s in pgstate.stacks_with_pending_operations(
                    conn, target, self.settings.project)
                    if s not in locked and (stacks is None or stacks(s))]
        except pgstate.PostgresStateError as exc:
            log.error("stale lock clean-up skipped: %s", exc)
            return []
        for stack in pending:
            if stacks is not None and not stacks(stack):
                continue  # no longer ours (a shard lost meanwhile)
            line = self._repair_pending(stack)
            log.warning("%s", line)
            actions.append(line)
        return actions

    def clear_stack_locks(self, stack: str) -> list[str]:
        """Remove the locks of one stack whose holder is provably gone (locks.py), on a file://
        or postgres:// backend. Call with the stack's thread lock held; returns the removals."""
        removed: list[str] = []
        host = socket.gethostname()
        url = self.settings.backend_url
        if backendurl.is_postgres(url):
            target = pgstate.parse_url(url)
            try:
                with pgstate.connect(url) as conn:
                    for lock in pgstate.read_locks(conn, target, DIY_ORGANIZATION,
                                                   self.settings.project):
                        if lock.stack != stack:
                            continue
                        if line := self._remove_if_stale(
                                lock, host, lambda lock=lock: pgstate.delete_key(
                                    conn, target.table, str(lock.path)), logging.INFO):
                            removed.append(line)
            except pgstate.PostgresStateError as exc:
                log.warning("stack %s: its locks could not be checked: %s", stack, exc)
            return removed
        state_root = file_backend_path(url)
        if state_root is None:
            return removed
        backend_dir = statedirs.stack_dir(state_root, self.settings.project, stack)
        root = lock_dir(backend_dir, self.settings.project)
        for lock in map(locks.read_lock, locks.lock_files(root)):
            if lock.stack != stack:
                continue
            if line := self._remove_if_stale(lock, host, lambda lock=lock: _unlink(lock),
                                             logging.INFO):
                removed.append(line)
        return removed

    def _remove_if_stale(self, lock: locks.LockFile, host: str, remove: Callable[[], bool],
                         kept_level: int = logging.WARNING) -> str | None:
        """Judge one lock by the lock rule (locks.py) against its stack's reference time;
        `remove` it when its holder is provably gone. Returns the removal's action line, None
        when it is kept (logged at `kept_level`) or was gone already."""
        verdict = locks.judge(lock, host, self.since(lock.stack))
        if not verdict.stale:
            log.log(kept_level, "stack lock %s/%s kept: %s", lock.stack, lock.path.name,
                    verdict.reason)
            return None
        return self._log_removal(lock, verdict) if remove() else None

    def _repair_pending(self, stack: str) -> str:
        """Converge a stack with pending operations (the engine's `repair`); the action line.
        By stack name: a shortened (hashed) stack name cannot be parsed back."""
        result = self._repair_stack(stack)
        return (f"stack {stack}: cleared pending operations ({result.result}"
                f"{': ' + result.message if result.message else ''})")

    @staticmethod
    def _log_removal(lock: locks.LockFile, verdict: locks.Verdict) -> str:
        # One line per removal with the holder and the reason: the audit trail that no live
        # lock was removed.
        log.warning("removed stale lock %s/%s (pid=%s host=%s): %s", lock.stack,
                    lock.path.name, lock.pid, lock.hostname, verdict.reason)
        return f"removed stale lock {lock.stack}/{lock.path.name}"

    def repair_state(self, stack: str) -> list[str]:
        """Fix the file-backend files of `stack` that a killed Pulumi CLI left half-written
        (see diystate). Call with the stack's thread lock held. Returns the actions, logged."""
        state_root = file_backend_path(self.settings.backend_url)
        if state_root is None:
            return []
        backend_dir = statedirs.stack_dir(state_root, self.settings.project, stack)
        if stack in locked_stacks(backend_dir, self.settings.project,
                                  leader_since=self.since(stack)):
            log.warning("stack %s: its checkpoint cannot be loaded, but a running Pulumi "
                        "operation holds its lock; not touching its files", stack)
            return []
        actions = diystate.repair_stack(backend_dir, self.settings.project, stack)
        for line in actions:
            log.warning("%s", line)
        return actions


def _unlink(lock: locks.LockFile) -> bool:
    """Remove a lock file and fileblob's attributes file beside it; False when it was gone."""
    lock.path.with_name(lock.path.name + diystate.ATTRS).unlink(missing_ok=True)
    try:
        lock.path.unlink()
    except FileNotFoundError:
        return False
    return True
