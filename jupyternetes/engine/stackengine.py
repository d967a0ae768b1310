"""One Pulumi stack per instance: settings, backend, passphrase, and the isolated stack engine.

Every engine operation (up, preview, destroy, repair) runs in its own worker subprocess
(`python -m jupyternetes.stackworker`): Pulumi's Python runtime keeps process-global state
(settings, the language server, mocks), so two inline programs in one process interfere. The
worker gets a JSON request on stdin and answers with one JSON object on stdout; its logs go to
stderr. It dies with the thread that started it (PR_SET_PDEATHSIG, set by the worker itself) so
an operator killed with SIGKILL leaves no engine holding a stack lock, and it is killed after a
timeout. The worker's answer carries the engine time, so callers see the subprocess overhead.

To keep that overhead off an operation: one worker is kept pre-started (workerpool: Python and
the Pulumi SDK loaded, waiting for its request; still one operation per process), the CLI's
version is asked once per engine instead of once per operation, and the worker runs no CLI
command the operation does not need (see stackworker.EventStack): an `up` of an existing stack
on a file:// backend is one `pulumi up` process. A killed CLI can leave the file backend's files
half-written; diystate repairs them at start and when an operation cannot load its checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from jupyternetes import backendurl, diystate, locks, naming, pgstate, workerpool, workspaces
from jupyternetes.masking import MESSAGE_LIMIT, clean_line, mask_forms, mask_secrets, trim_message
from jupyternetes.procs import pid_alive

log = logging.getLogger(__name__)

PROJECT = "jupyternetes-instances"
DEFAULT_STATE_DIR = "~/.jupyternetes/state"
PASSPHRASE_FILE = "passphrase"
DEFAULT_SECRET_VARIABLES = frozenset({"jupyterhub.api_token"})
DEFAULT_TIMEOUT_SECONDS = 600.0
# After SIGTERM the worker asks the Pulumi CLI to cancel (SIGINT), which finishes in-flight
# steps, writes the checkpoint and releases the lock; this is how long that may take.
CANCEL_GRACE_SECONDS = 20.0
# Idle workers kept pre-started (Python and the Pulumi SDK loaded), see workerpool.
DEFAULT_PRESTARTED_WORKERS = 1

# Pulumi's DIY backend keeps a lock file per running operation here (pkg/backend/diy/lock.go):
# .pulumi/locks/<organization>/<project>/<stack>/<lock-id>.json holding {pid, hostname, ...}.
DIY_ORGANIZATION = "organization"


class StackConfigError(RuntimeError):
    """The stack engine is misconfigured (no pulumi CLI, unreadable passphrase file, ...)."""


@dataclass(frozen=True)
class StackSettings:
    backend_url: str
    passphrase: str
    kubeconfig: str | None
    context: str | None
    pulumi_home: str | None
    project: str = PROJECT
    # Root of persistent per-stack Pulumi workspaces (Pulumi.yaml + Pulumi.<stack>.yaml), kept
    # for inspection; None (the default): a temporary directory per operation.
    work_dir: str | None = None
    secret_variables: frozenset[str] = DEFAULT_SECRET_VARIABLES

    def secret_values(self, variables: Mapping[str, str]) -> frozenset[str]:
        """The values of the secret variables among `variables` (names are case-insensitive,
        like placeholders); empty values are ignored, they would match every string."""
        wanted = {name.lower() for name in self.secret_variables}
        return frozenset(v for k, v in variables.items() if k.lower() in wanted and v)

    def to_request(self) -> dict[str, Any]:
        data = asdict(self)
        data["secret_variables"] = sorted(self.secret_variables)
        return data

    def __repr__(self) -> str:  # never print the passphrase in logs or tracebacks
        return (f"StackSettings(backend_url={backendurl.redact(self.backend_url)!r}, "
                f"kubeconfig={self.kubeconfig!r}, "
                f"context={self.context!r}, project={self.project!r}, passphrase=***)")


@dataclass(frozen=True)
class OperationResult:
    operation: str
    result: str  # "succeeded" | "failed"
    started_at: str
    finished_at: str
    change_summary: dict[str, int]
    # {"objects": [{group, entry, apiVersion, kind, name, namespace, uid}], "errors": {...}}
    outputs: dict
    message: str
    engine_seconds: float
    # Wall time of the whole operation including the worker process (engine_seconds <= this).
    wall_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.result == "succeeded"

    @property
    def objects(self) -> list[dict]:
        return list(self.outputs.get("objects") or [])

    @property
    def errors(self) -> dict[str, str]:
        """Per-resource errors (`pods/notebook` -> apiserver message) of a failed operation."""
        return dict(self.outputs.get("errors") or {})


@dataclass(frozen=True)
class PreviewStep:
    op: str  # create | update | replace | delete | same | create-replacement | ...
    urn: str
    type: str
    name: str  # resource name in the stack, e.g. pods/notebook
    object_name: str | None
    changed: tuple[str, ...]
    # path -> {"kind": "add|update|delete|...-replace", "old": value, "new": value}
    detailed_diff: dict[str, dict]

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class PreviewResult:
    result: str
    steps: tuple[PreviewStep, ...]
    change_summary: dict[str, int]
    message: str
    engine_seconds: float
    wall_seconds: float = 0.0

    @property
    def has_changes(self) -> bool:
        return any(op != "same" and count for op, count in self.change_summary.items())

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PreviewResult:
        steps = tuple(PreviewStep(
            op=s["op"], urn=s["urn"], type=s["type"], name=s["name"],
            object_name=s.get("object_name"), changed=tuple(s.get("changed") or ()),
            detailed_diff=dict(s.get("detailed_diff") or {}),
        ) for s in data.get("steps") or ())
        return PreviewResult(
            result=data["result"], steps=steps,
            change_summary=dict(data.get("change_summary") or {}),
            message=data.get("message", ""),
            engine_seconds=float(data.get("engine_seconds") or 0.0),
            wall_seconds=float(data.get("wall_seconds") or 0.0),
        )


# ---------------------------------------------------------------------------------------------
# Settings from the command line (shared by `operator` and `preview`)


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Pulumi stacks")
    group.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                       help="local state: the default file:// backend and the generated "
                            "passphrase file (default %(default)s)")
    group.add_argument("--backend-url", default=None,
                       help="any Pulumi backend URL without a password (s3://, azblob://, "
                            "gs://, https://api.pulumi.com); one with credentials "
                            "(postgres://user:password@host:port/db) goes in "
                            "$PULUMI_BACKEND_URL or --backend-url-file; default "
                            "file://<state-dir>")
    group.add_argument("--backend-url-file", default=None, metavar="PATH",
                       help="file holding the backend URL (e.g. a mounted Secret); its "
                            "password is masked in every log line, Event and status")
    group.add_argument("--kubeconfig", default=None,
                       help="kubeconfig for the stacks' Kubernetes provider "
                            "(default: in-cluster config, else $KUBECONFIG)")
    group.add_argument("--context", default=None, help="kubeconfig context to use")
    group.add_argument("--secret-variable", action="append", default=[], metavar="NAME",
                       help="instance variable whose value is a Pulumi secret (repeatable; "
                            "jupyterhub.api_token always is)")
    group.add_argument("--pulumi-home", default=None,
                       help="PULUMI_HOME holding the Kubernetes provider plugin "
                            "(default: $PULUMI_HOME or ~/.pulumi)")


def settings_from_args(args: argparse.Namespace,
                       environ: Mapping[str, str] | None = None) -> StackSettings:
    env = os.environ if environ is None else environ
    state_dir = Path(os.path.expanduser(args.state_dir)).absolute()
    ensure_private_dir(state_dir)
    backend_url = backendurl.resolve(
        getattr(args, "backend_url", None), read_backend_url_file(
            getattr(args, "backend_url_file", None)), env, file_backend_url(state_dir))
    return StackSettings(
        backend_url=backend_url,
        passphrase=resolve_passphrase(state_dir, env),
        kubeconfig=os.path.abspath(os.path.expanduser(args.kubeconfig)) if args.kubeconfig
        else None,
        context=args.context,
        pulumi_home=args.pulumi_home or env.get("PULUMI_HOME") or None,
        # Temporary workspace per operation: the passphrase salt lives in the stack's state,
        # so nothing in a workspace needs to persist, and nothing accumulates per instance.
        work_dir=None,
        secret_variables=DEFAULT_SECRET_VARIABLES | frozenset(args.secret_variable or ()),
    )


def read_backend_url_file(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(os.path.expanduser(path)).read_text(encoding="utf-8")
    except OSError as exc:
        raise StackConfigError(f"cannot read --backend-url-file {path}: "
                               f"{exc.strerror or exc}") from exc


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def file_backend_url(state_dir: Path) -> str:
    return f"file://{state_dir}"


def file_backend_path(backend_url: str) -> Path | None:
    """The directory of a `file://` backend URL, None for any other backend."""
    parsed = urlparse(backend_url)
    if parsed.scheme != "file":
        return None
    # file://~ is Pulumi's spelling of the home directory; file:///abs and file://abs both occur.
    raw = unquote(parsed.netloc + parsed.path)
    return Path(os.path.expanduser(raw))


def resolve_passphrase(state_dir: Path, environ: Mapping[str, str]) -> str:
    """PULUMI_CONFIG_PASSPHRASE, else PULUMI_CONFIG_PASSPHRASE_FILE, else <state-dir>/passphrase
    (created once with a random value, mode 0600, and reused)."""
    if environ.get("PULUMI_CONFIG_PASSPHRASE"):
        return environ["PULUMI_CONFIG_PASSPHRASE"]
    if environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return read_passphrase_file(Path(environ["PULUMI_CONFIG_PASSPHRASE_FILE"]))
    path = state_dir / PASSPHRASE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_passphrase_file(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    log.info("created Pulumi passphrase file %s (mode 0600); keep it with the state", path)
    return read_passphrase_file(path)


def read_passphrase_file(path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StackConfigError(f"cannot read the Pulumi passphrase file {path}: "
                               f"{exc.strerror or exc}") from exc
    if not value:
        raise StackConfigError(f"the Pulumi passphrase file {path} is empty; write a "
                               "passphrase into it or remove it to have one generated")
    return value


# ---------------------------------------------------------------------------------------------
# Pure helpers: summaries (messages: masking.py)


def summarize_changes(change_summary: Mapping[str, int]) -> str:
    """`2 to create, 1 to replace` style line; `no changes` when only `same` is counted."""
    order = ("create", "update", "replace", "delete", "create-replacement", "delete-replaced",
             "read", "refresh", "import")
    parts = [f"{change_summary[op]} {op}" for op in order if change_summary.get(op)]
    parts += [f"{n} {op}" for op, n in sorted(change_summary.items())
              if op not in order and op != "same" and n]
    unchanged = change_summary.get("same", 0)
    if not parts:
        return f"no changes ({unchanged} unchanged)"
    return ", ".join(parts) + (f", {unchanged} unchanged" if unchanged else "")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ---------------------------------------------------------------------------------------------
# Stale locks of the file backend


def lock_dir(backend_dir: Path, project: str) -> Path:
    return backend_dir / ".pulumi" / "locks" / DIY_ORGANIZATION / project


def stale_lock_files(backend_dir: Path, project: str, hostname: str | None = None,
                     pid_alive=pid_alive, leader_since: float | None = None) -> list[Path]:
    """Lock files of our project whose holder is provably gone (the rule is in locks.py:
    same host and pid not running; another host's only for the Lease holder, and only when
    written before `leader_since`, the Unix time it acquired the Lease)."""
    root = lock_dir(backend_dir, project)
    return [lock.path for lock, verdict in locks.judge_all(root, leader_since, hostname,
                                                           pid_alive) if verdict.stale]


def locked_stacks(backend_dir: Path, project: str, hostname: str | None = None,
                  pid_alive=pid_alive, leader_since: float | None = None) -> set[str]:
    """Stacks with a lock file whose holder may be alive (see stale_lock_files)."""
    root = lock_dir(backend_dir, project)
    return {lock.stack for lock, verdict in locks.judge_all(root, leader_since, hostname,
                                                            pid_alive) if not verdict.stale}


def stacks_with_pending_operations(backend_dir: Path, project: str) -> list[str]:
    """Stacks of the file backend whose checkpoint lists pending operations (a crashed `up`)."""
    root = backend_dir / ".pulumi" / "stacks" / project
    found: list[str] = []
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*.json")):
        try:
            checkpoint = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        deployment = (checkpoint.get("checkpoint") or {}).get("latest") or {}
        if deployment.get("pending_operations"):
            found.append(path.name[: -len(".json")])
    return found


# ---------------------------------------------------------------------------------------------
# The engine


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
        self._pool = workerpool.WorkerPool(self._env, prestart)
        weakref.finalize(self, self._pool.close)
        self._stack_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cli_version: str | None = None
        # When this operator acquired the Lease (see clear_stale_locks, locks.py).
        self.leader_since: float | None = None

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
        """Names of every stack of the project in the backend (`pulumi stack ls --all`).
        Raises StackConfigError when the CLI cannot list them."""
        env = {**self._env, "PULUMI_BACKEND_URL": self.settings.backend_url,
               "PULUMI_CONFIG_PASSPHRASE": self.settings.passphrase,
               "PULUMI_SKIP_UPDATE_CHECK": "true"}
        if self.settings.pulumi_home:
            env["PULUMI_HOME"] = self.settings.pulumi_home
        command = ["pulumi", "stack", "ls", "--all", "--json", "--project",
                   self.settings.project]
        # An empty folder as cwd: no Pulumi.yaml (this repository has one) may pick a project.
        with tempfile.TemporaryDirectory(prefix="jupyternetes-ls-") as cwd:
            try:
                done = subprocess.run(command, env=env, cwd=cwd, capture_output=True,
                                      timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                raise StackConfigError(f"listing stacks: {exc}") from exc
        if done.returncode != 0:
            raise StackConfigError(
                "listing stacks with `pulumi stack ls` failed: "
                + clean_line(done.stderr.decode(errors="replace"))[:MESSAGE_LIMIT])
        return stack_names(done.stdout.decode(errors="replace"), self.settings.project)

    def repair(self, namespace: str, name: str, stack: str | None = None) -> OperationResult:
        """Refresh with pending CREATEs cleared: converges a stack an interrupted `up` left.
        `stack` overrides the name (a shortened stack name cannot be parsed back)."""
        return self._operation(self._request("repair", namespace, name, (), (), stack=stack))

    def clear_stale_locks(self, leader_since: float | None = None) -> list[str]:
        """At operator start: remove the workspace folders of killed workers (jupyternetes.
        workspaces) and lock files (rows on postgres://) left by crashed operations, and repair
        stacks with pending operations. Returns what was done, one line per action (for logs).

        `leader_since`: Unix time this operator acquired the Lease (None: no leader
        election). It is kept for later repairs too: it decides which other hosts' locks
        are provably stale (locks.py)."""
        self.leader_since = leader_since
        # Workspace folders of workers killed mid-operation (any backend).
        actions: list[str] = workspaces.sweep_stale_workspaces(
            project=self.settings.project, pulumi_home=self.settings.pulumi_home)
        if backendurl.is_postgres(self.settings.backend_url):
            for line in actions:
                log.warning("%s", line)
            return actions + self._clear_postgres_locks(leader_since)
        backend_dir = file_backend_path(self.settings.backend_url)
        if backend_dir is None:
            # Cloud buckets lock the same way but need credentials of their own here; Pulumi
            # Cloud has `pulumi cancel`.
            log.info("stale lock clean-up applies to file:// and postgres:// backends; %s "
                     "skipped", urlparse(self.settings.backend_url).scheme)
            for line in actions:
                log.warning("%s", line)
            return actions
        root = lock_dir(backend_dir, self.settings.project)
        for lock, verdict in locks.judge_all(root, leader_since):
            if not verdict.stale:
                log.warning("stack lock %s/%s kept: %s", lock.stack, lock.path.name,
                            verdict.reason)
                continue
            # fileblob's attributes file of the lock goes with it.
            lock.path.with_name(lock.path.name + diystate.ATTRS).unlink(missing_ok=True)
            try:
                lock.path.unlink()
            except FileNotFoundError:
                continue
            # One line per removal with the holder and the reason: the audit trail that no
            # live lock was removed.
            log.warning("removed stale lock %s/%s (pid=%s host=%s): %s", lock.stack,
                        lock.path.name, lock.pid, lock.hostname, verdict.reason)
            actions.append(f"removed stale lock {lock.stack}/{lock.path.name}")
        locked = locked_stacks(backend_dir, self.settings.project, leader_since=leader_since)
        for stack in diystate.project_stacks(backend_dir, self.settings.project):
            if stack in locked:
                actions.append(f"stack {stack}: state files not checked, a running Pulumi "
                               "operation holds its lock")
                continue
            actions += diystate.repair_stack(backend_dir, self.settings.project, stack)
        for stack in stacks_with_pending_operations(backend_dir, self.settings.project):
            # By stack name: a shortened (hashed) stack name cannot be parsed back.
            result = self.repair(stack.partition(".")[0], "", stack=stack)
            actions.append(f"stack {stack}: cleared pending operations ({result.result}"
                           f"{': ' + result.message if result.message else ''})")
        for line in actions:
            if not line.startswith("removed stale lock"):  # logged above, with the reason
                log.warning("%s", line)
        return actions

    def _clear_postgres_locks(self, leader_since: float | None) -> list[str]:
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
                    verdict = locks.judge(lock, host, leader_since)
                    if not verdict.stale:
                        log.warning("stack lock %s/%s kept: %s", lock.stack, lock.path.name,
                                    verdict.reason)
                        continue
                    if not pgstate.delete_key(conn, table, str(lock.path)):
                        continue
                    log.warning("removed stale lock %s/%s (pid=%s host=%s): %s", lock.stack,
                                lock.path.name, lock.pid, lock.hostname, verdict.reason)
                    actions.append(f"removed stale lock {lock.stack}/{lock.path.name}")
                locked = {lock.stack for lock in pgstate.read_locks(
                    conn, target, DIY_ORGANIZATION, self.settings.project)}
                pending = [s for s in pgstate.stacks_with_pending_operations(
                    conn, target, self.settings.project) if s not in locked]
        except pgstate.PostgresStateError as exc:
            log.error("stale lock clean-up skipped: %s", exc)
            return []
        for stack in pending:
            result = self.repair(stack.partition(".")[0], "", stack=stack)
            line = (f"stack {stack}: cleared pending operations ({result.result}"
                    f"{': ' + result.message if result.message else ''})")
            log.warning("%s", line)
            actions.append(line)
        return actions

    def close(self) -> None:
        """Stop the pre-started idle workers (running operations are not affected)."""
        self._pool.close()

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, op: str, namespace: str, name: str, rendered: Any,
                 secret_values: Collection[str], refresh: bool = False,
                 stack: str | None = None) -> dict[str, Any]:
        objects = rendered.objects() if hasattr(rendered, "objects") else rendered
        return {
            "op": op,
            "stack": stack or self.stack_name(namespace, name),
            "instance": {"namespace": namespace, "name": name},
            "settings": self.settings.to_request(),
            "objects": [_object_dict(o) for o in objects],
            "secret_values": sorted({s for s in secret_values if s}),
            "refresh": refresh,
            "pulumi_version": self.cli_version(),
        }

    def cli_version(self) -> str | None:
        """The Pulumi CLI's version, asked once and passed to every worker so that each
        operation does not start a `pulumi version` process of its own. None when the CLI
        cannot be run: the worker then runs it itself and reports what is wrong."""
        with self._guard:
            if self._cli_version is None:
                self._cli_version = pulumi_cli_version(self._env)
            return self._cli_version

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
        )

    def _lock_for(self, stack: str) -> threading.Lock:
        with self._guard:
            return self._stack_locks.setdefault(stack, threading.Lock())

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock_for(request["stack"]):
            answer = run_worker(request, self._env, self.timeout, self._pool)
            # A CLI that died (or lost its database) after taking the lock left it behind
            # while this operator runs: clear it by the lock rule, and try once more.
            if (answer.get("result") == "failed" and is_locked_error(answer.get("message", ""))
                    and self.clear_stack_locks(request["stack"])):
                answer = run_worker(request, self._env, self.timeout, self._pool)
            if (answer.get("result") != "failed"
                    or not diystate.is_checkpoint_load_error(answer.get("message", ""))):
                return answer
            actions = self.repair_state(request["stack"])
            if diystate.changed_anything(actions):
                # The files an interrupted write left are fixed: the operation can run now.
                answer = run_worker(request, self._env, self.timeout, self._pool)
            if answer.get("result") == "failed" and actions:
                answer["message"] = (f"{answer.get('message', '')}\nstate repair of stack "
                                     f"{request['stack']}: " + "; ".join(actions))
            return answer

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
                        verdict = locks.judge(lock, host, self.leader_since)
                        if verdict.stale and pgstate.delete_key(conn, target.table,
                                                                str(lock.path)):
                            removed.append(self._log_removal(lock, verdict))
                        elif not verdict.stale:
                            log.info("stack lock %s/%s kept: %s", stack, lock.path.name,
                                     verdict.reason)
            except pgstate.PostgresStateError as exc:
                log.warning("stack %s: its locks could not be checked: %s", stack, exc)
            return removed
        backend_dir = file_backend_path(url)
        if backend_dir is None:
            return removed
        root = lock_dir(backend_dir, self.settings.project)
        for lock, verdict in locks.judge_all(root, self.leader_since, host):
            if lock.stack != stack:
                continue
            if not verdict.stale:
                log.info("stack lock %s/%s kept: %s", stack, lock.path.name, verdict.reason)
                continue
            lock.path.with_name(lock.path.name + diystate.ATTRS).unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                lock.path.unlink()
                removed.append(self._log_removal(lock, verdict))
        return removed

    @staticmethod
    def _log_removal(lock: locks.LockFile, verdict: locks.Verdict) -> str:
        log.warning("removed stale lock %s/%s (pid=%s host=%s): %s", lock.stack,
                    lock.path.name, lock.pid, lock.hostname, verdict.reason)
        return f"removed stale lock {lock.stack}/{lock.path.name}"

    def repair_state(self, stack: str) -> list[str]:
        """Fix the file-backend files of `stack` that a killed Pulumi CLI left half-written
        (see diystate). Call with the stack's thread lock held. Returns the actions, logged."""
        backend_dir = file_backend_path(self.settings.backend_url)
        if backend_dir is None:
            return []
        if stack in locked_stacks(backend_dir, self.settings.project,
                                  leader_since=self.leader_since):
            log.warning("stack %s: its checkpoint cannot be loaded, but a running Pulumi "
                        "operation holds its lock; not touching its files", stack)
            return []
        actions = diystate.repair_stack(backend_dir, self.settings.project, stack)
        for line in actions:
            log.warning("%s", line)
        return actions


# The DIY backend's error when another lock is held on the stack (pkg/backend/diy/lock.go).
LOCKED_ERROR = re.compile(r"the stack is currently locked by \d+ lock")


def is_locked_error(message: str) -> bool:
    return bool(LOCKED_ERROR.search(message or ""))


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


def pulumi_cli_version(env: Mapping[str, str]) -> str | None:
    """`pulumi version` of the CLI on env's PATH ("3.274.1"); None when it cannot be run."""
    try:
        done = subprocess.run(["pulumi", "version"],
                              env={**env, "PULUMI_SKIP_UPDATE_CHECK": "true"},
                              capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    version = done.stdout.decode(errors="replace").strip().removeprefix("v")
    return version if re.fullmatch(r"\d+\.\d+\.\d+\S*", version) else None


def _object_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return {"group": obj["group"], "entry": obj["entry"], "manifest": obj["manifest"]}
    return {"group": obj.group, "entry": obj.entry, "manifest": obj.manifest}


def run_worker(request: Mapping[str, Any], env: Mapping[str, str], timeout: float,
               pool: workerpool.WorkerPool | None = None) -> dict[str, Any]:
    """Run one request in a worker of its own (pre-started from `pool` when one is idle, else
    started now); its JSON answer.

    Engine failures come back as an answer with result "failed"; a worker that cannot run at
    all (no pulumi CLI, bad settings) raises StackConfigError; a timeout or a crashed worker is
    an answer with result "failed" naming what happened.
    """
    proc = pool.take() if pool is not None else None
    try:
        answer = _run_in(proc, request, timeout) if proc is not None else None
        if answer is None:  # no idle worker, or it expired just as it was taken
            answer = _run_in(workerpool.start_worker(env), request, timeout)
        assert answer is not None
        return answer
    finally:
        if pool is not None:
            pool.done(proc)


def _run_in(proc: subprocess.Popen, request: Mapping[str, Any],
            timeout: float) -> dict[str, Any] | None:
    """The answer of `proc` to `request`; None when `proc` was a pre-started worker that exited
    idle before reading it (the caller then starts a new one)."""
    started_at = utc_now()
    try:
        stdout, stderr = proc.communicate(json.dumps(request).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = stop_worker(proc)
        log.error("stack %s: %s timed out after %.0fs", request["stack"], request["op"], timeout)
        return failed_answer(
            request, started_at,
            f"Pulumi {request['op']} of stack {request['stack']} did not finish within "
            f"{timeout:.0f}s and was cancelled; the next reconcile retries it",
            stderr.decode(errors="replace"))
    except BaseException:
        stop_worker(proc)
        raise
    # The worker masks its own output; masked again here in case it died before it could.
    err_text = mask_secrets(stderr.decode(errors="replace"),
                            mask_forms(backendurl.request_mask_values(request)))
    for line in err_text.splitlines():
        log.debug("worker %s %s: %s", request["op"], request["stack"], line)
    try:
        answer = json.loads(stdout.decode() or "null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if proc.returncode == workerpool.WORKER_IDLE_EXIT:
            return None
        return failed_answer(
            request, started_at,
            f"the stack worker for {request['stack']} exited with code {proc.returncode} "
            "without an answer", err_text)
    if answer.get("config_error"):
        raise StackConfigError(answer["config_error"])
    return answer


def stop_worker(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """SIGTERM (the worker cancels its Pulumi CLI gracefully), then SIGKILL the whole group."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=CANCEL_GRACE_SECONDS + 5)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return b"", b""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


def failed_answer(request: Mapping[str, Any], started_at: str, message: str,
                  stderr: str = "") -> dict[str, Any]:
    masked = backendurl.request_mask_values(request)
    detail = trim_message([], stderr, masked)
    full = f"{message}: {detail}" if detail else message
    return {"result": "failed", "message": mask_secrets(full, masked),
            "started_at": started_at, "finished_at": utc_now(), "change_summary": {},
            "outputs": {}, "engine_seconds": 0.0, "steps": []}
