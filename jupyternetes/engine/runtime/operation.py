"""One stack operation (up, preview, destroy, forget, repair) through the Automation API; the
list of every stack is listing.py.

`run(request)` opens the stack's workspace (a temporary folder), runs the operation with the
inline program (program.py) and answers with plain data: result, change summary, outputs, the
steps of a preview, a masked message. It runs inside a worker process (worker.py), never in the
operator; whatever fails comes back as an answer with result "failed".
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.masking import mask_secrets, trim_message
from jupyternetes.engine.results import utc_now
from jupyternetes.engine.runtime import listing, prewarm, workspaces
from jupyternetes.engine.runtime import program as stack_program
from jupyternetes.engine.runtime.command import EventCommand
from jupyternetes.engine.runtime.events import (
    Collector,
    dry_run_replacements,
    objects_from_events,
    op_name,
)
from jupyternetes.engine.state import backendurl, diystate, stackseed, statedirs
from jupyternetes.engine.state.backendurl import file_backend_path

log = logging.getLogger(__name__)


_cli_guard = threading.Lock()
_cli: EventCommand | None = None


def cli() -> EventCommand:
    """This process's Pulumi CLI (made once: its constructor runs `pulumi version`)."""
    global _cli
    with _cli_guard:
        if _cli is None:
            _cli = EventCommand()
        return _cli


def warm_cli() -> None:
    """Make the CLI object ahead of the first request (a pre-started worker does this while it
    waits). Errors are left for the operation to report (no `pulumi` on PATH, ...)."""
    with contextlib.suppress(Exception):
        cli()


def workspace_options(settings: Mapping[str, Any], stack: str, temp_root: list[str],
                      command: auto.PulumiCommand | None = None) -> auto.LocalWorkspaceOptions:
    """The workspace of one operation: the CLI's environment (every setting the operator
    applies, see settings.cli_env), a temporary folder (added to `temp_root`, removed after the
    operation) or `<work_dir>/<stack>`, the project settings, and the CLI `command`."""
    env_vars = {
        "PULUMI_CONFIG_PASSPHRASE": settings["passphrase"],
        # The URL; for postgres:// its password in PGPASSWORD, out of what the CLI writes.
        **backendurl.cli_environment(settings["backend_url"]),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # No network: a missing plugin must fail with a message, not hang on a download.
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        **engine_settings.cli_env(settings["backend_url"]),
    }
    if settings.get("pulumi_home"):
        env_vars["PULUMI_HOME"] = settings["pulumi_home"]
    if settings.get("work_dir"):
        work_dir = Path(settings["work_dir"]) / stack
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    else:
        work_dir = workspaces.make_workspace()  # named after this worker's pid: see sweep
        temp_root.append(str(work_dir))
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        pulumi_home=settings.get("pulumi_home"),
        env_vars=env_vars,
        secrets_provider="passphrase",
        # A URL with a password reaches the CLI only through PULUMI_BACKEND_URL (which the CLI
        # reads), not through the Pulumi.yaml the Automation API writes to disk.
        project_settings=auto.ProjectSettings(
            name=settings["project"], runtime="python",
            backend=None if backendurl.password(settings["backend_url"])
            else auto.ProjectBackend(url=settings["backend_url"])),
        pulumi_command=command,
    )


def open_stack(request: Mapping[str, Any], program: Callable[[], None], create: bool,
               temp_root: list[str],
               collector: Collector) -> tuple[auto.Stack | None, bool]:
    """(stack, existed_before). With create=False a missing stack gives (None, False). Call
    inside `cli().answering(...)` for the stack, with exists=False (this fills it in).

    On a file:// backend whether the stack exists is read from the backend folder, so
    `Stack.select` needs no `pulumi stack select` run (EventCommand answers it); other
    backends are asked with `stack select`."""
    settings = request["settings"]
    name = request["stack"]
    project = settings["project"]
    opts = workspace_options(settings, name, temp_root, cli())
    if opts.project_settings is not None and opts.project_settings.main is None:
        opts.project_settings.main = os.getcwd()  # as auto.select_stack does for inline programs
    backend_dir = file_backend_path(settings["backend_url"])
    if backend_dir is not None:
        statedirs.ensure_bucket(backend_dir)  # a stack's bucket folder (statedirs)
    shortcuts = backend_dir is not None and engine_settings.shortcuts_enabled()
    exists = diystate.stack_exists(backend_dir, project, name) if backend_dir else None
    # In the operator's file backend a new stack is one file: written directly, it saves a
    # whole `pulumi stack init` process and its key derivation (see stackseed).
    seeded = (exists is False and create and shortcuts
              and stackseed.create_from_sibling(backend_dir, project, name,
                                                settings["passphrase"], cli().version))
    if seeded:
        log.info("stack %s created from a sibling's secrets state (no stack init)", name)
    # The stack's own salt in the temporary workspace: one key derivation, not two (see
    # stackseed.stack_salt).
    salt = stackseed.stack_salt(backend_dir, project, name) if shortcuts else None
    workspace = auto.LocalWorkspace(
        work_dir=opts.work_dir, pulumi_home=opts.pulumi_home, program=program,
        env_vars=opts.env_vars, secrets_provider=opts.secrets_provider,
        project_settings=opts.project_settings, pulumi_command=opts.pulumi_command,
        stack_settings={name: auto.StackSettings(encryption_salt=salt)} if salt else None)
    if seeded:
        remember_seed(backend_dir, project, name)
    if exists or seeded:
        cli().mark_exists(name)
        return auto.Stack.select(name, workspace), bool(exists)
    if exists is None:
        try:
            return auto.Stack.select(name, workspace), True
        except auto.StackNotFoundError:
            pass
    if not create:
        return None, False
    stack = auto.Stack.create(name, workspace)
    cli().mark_exists(name)
    if shortcuts and backend_dir is not None:
        remember_seed(backend_dir, project, name)
    return stack, False


def remember_seed(backend_dir: Path, project: str, stack: str) -> None:
    """Keep the new stack's secrets state as the project's seed (stackseed.remember), so the
    next new stack needs no `stack init` even after every stack is gone. Best effort: a seed
    that cannot be written costs a later `stack init`, not this operation."""
    try:
        if stackseed.remember(backend_dir, project, stack):
            log.info("stack %s: its secrets state is now the seed of project %s", stack, project)
    except OSError as exc:
        log.warning("stack %s: could not keep its secrets state as the project's seed: %s",
                    stack, exc)


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in outputs.items()}


def run(request: Mapping[str, Any], timings: dict[str, float] | None = None) -> dict[str, Any]:
    """The answer to `request`. `timings`: the worker's own figures so far (imports, wait),
    completed with this operation's (workspace, engine, worker_total)."""
    t_start = time.monotonic()
    op = request["op"]
    if op == listing.LIST_OP:  # `pulumi stack ls`: no stack, no workspace
        return listing.run(request)
    settings = request["settings"]
    # Masked in every text: the instance's secrets and the backend URL's password.
    secret_values: list[str] = backendurl.request_mask_values(request)
    collector = Collector(
        {f"{o['group']}/{o['entry']}": o["manifest"] for o in request.get("objects") or []},
        secret_values)
    temp_root: list[str] = []
    timings = dict(timings or {})
    answer: dict[str, Any] = {"result": "failed", "message": "", "change_summary": {},
                              "outputs": {}, "steps": [], "engine_seconds": 0.0,
                              "started_at": utc_now()}
    # The create guard's client is built while the CLI starts, not when it runs (prewarm).
    prewarm.start(request)
    if op in ("up", "preview"):
        who = request.get("instance") or {}
        program = stack_program.make_program(
            request.get("objects") or [], settings.get("kubeconfig"), settings.get("context"),
            list(request.get("secret_values") or []),
            instance=(who["namespace"], who["name"]) if who.get("name") else None)
    else:
        program = stack_program.empty_program
    try:
        with cli().answering(request["stack"], False, collector):
            t0 = time.monotonic()
            stack, existed = open_stack(request, program, create=op in ("up", "preview"),
                                        temp_root=temp_root, collector=collector)
            timings["workspace"] = time.monotonic() - t0
            engine_started = time.monotonic()
            try:
                execute(op, stack, existed, request, collector, answer, temp_root)
            except auto.CommandError as exc:
                answer["result"] = "failed"
                answer["message"] = trim_message(collector.errors, str(exc), secret_values)
                answer["outputs"] = {"objects": objects_from_events(collector),
                                     "errors": collector.errors_by_resource(secret_values)}
            finally:
                answer["engine_seconds"] = time.monotonic() - engine_started
                # A preview must not leave a stack behind for an instance never deployed.
                if op == "preview" and stack is not None and not existed:
                    with contextlib.suppress(auto.CommandError):
                        stack.workspace.remove_stack(request["stack"])
    finally:
        for path in temp_root:
            # The CLI's settings file of this workspace holds the backend URL (password too).
            workspaces.cli_settings_file(path, settings["project"], settings.get(
                "pulumi_home")).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
    answer["steps"] = list(collector.steps.values()) if op == "preview" else []
    answer["finished_at"] = utc_now()
    timings["engine"] = answer["engine_seconds"]
    # Process start and imports (counted by the worker) plus this operation.
    timings["worker_total"] = timings.get("imports", 0.0) + time.monotonic() - t_start
    answer["timings"] = timings
    answer["message"] = mask_secrets(answer["message"], secret_values)
    return answer


def execute(op: str, stack: auto.Stack | None, existed: bool, request: Mapping[str, Any],
            collector: Collector, answer: dict[str, Any], temp_root: list[str]) -> None:
    """Run `op` on `stack` (None: it does not exist), filling in `answer`. Raises
    auto.CommandError when the CLI fails."""
    settings = request["settings"]
    # `pulumi stack history` names the operator replica of each update (several replicas
    # share one backend).
    message = (f"jupyternetes {op} by replica {settings['replica']}"
               if settings.get("replica") else None)
    if op in ("up", "preview"):
        assert stack is not None, "open_stack creates the stack of an up or a preview"
    if op == "up":
        # A stack created just now has nothing to refresh.
        result = stack.up(refresh=bool(request.get("refresh")) and existed,
                          on_event=collector, message=message,
                          color="never", suppress_progress=True)
        answer["change_summary"] = dict(result.summary.resource_changes or {})
        answer["outputs"] = {
            **plain_outputs(result.outputs),
            "errors": {},
        }
        answer["result"] = "succeeded"
    elif op == "preview":
        answer["change_summary"] = run_preview(stack, request, collector)
        answer["result"] = "succeeded"
    elif op == "destroy":
        if stack is None:
            answer.update(result="succeeded", message="no stack to destroy")
        else:
            result = stack.destroy(on_event=collector, color="never", message=message,
                                   suppress_progress=True, remove=True)
            answer["change_summary"] = dict(result.summary.resource_changes or {})
            answer["result"] = "succeeded"
            if settings.get("work_dir"):  # the stack is gone; so is its workspace
                temp_root.append(str(Path(settings["work_dir"]) / request["stack"]))
    elif op == "forget":
        if stack is None:
            answer.update(result="succeeded", message="no stack to remove")
        else:
            stack.workspace.remove_stack(request["stack"], force=True)
            answer.update(result="succeeded", message=f"stack {request['stack']} removed")
    elif op == "repair":
        if stack is None:
            answer.update(result="succeeded", message="no stack to repair")
        else:
            result = stack.refresh(clear_pending_creates=True, on_event=collector,
                                   message=message,
                                   color="never", suppress_progress=True)
            answer["change_summary"] = dict(result.summary.resource_changes or {})
            answer["result"] = "succeeded"
    else:
        raise ValueError(f"unknown operation {op!r}")


def run_preview(stack: auto.Stack, request: Mapping[str, Any],
                collector: Collector) -> dict[str, int]:
    """The change summary of a preview; pod replacements are previewed around the provider's
    dry-run limitation (see dry_run_replacements) by previewing everything else without them."""
    def preview(**extra: Any) -> dict[str, int]:
        result = stack.preview(refresh=bool(request.get("refresh")), on_event=collector,
                               color="never", diff=True, suppress_progress=True, **extra)
        return {op_name(k): v for k, v in (result.change_summary or {}).items()}

    try:
        return preview()
    except auto.CommandError:
        urns = dry_run_replacements(collector)
        if not urns:
            raise
    log.info("previewing %d replacement(s) without their dry-run: %s", len(urns), urns)
    collector.errors.clear()
    collector.error_urns.clear()
    summary = preview(exclude=urns)
    summary["replace"] = summary.get("replace", 0) + len(urns)
    if summary.get("same", 0) >= len(urns):
        summary["same"] -= len(urns)  # excluded resources are counted as unchanged
    return summary
