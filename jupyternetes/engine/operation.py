"""One stack operation (up, preview, destroy, forget, repair) through the Automation API.

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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from pulumi.automation._stack import StackInitMode
from semver import VersionInfo

from jupyternetes.engine import backendurl, diystate, prewarm, stackseed, workspaces
from jupyternetes.engine import program as stack_program
from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.backendurl import file_backend_path
from jupyternetes.engine.events import (
    SUMMARY_WAIT_SECONDS,
    Collector,
    dry_run_replacements,
    is_secret_wrapper,
    objects_from_events,
    op_name,
)
from jupyternetes.engine.masking import SECRET_MASK, mask_secrets, trim_message
from jupyternetes.engine.results import utc_now

log = logging.getLogger(__name__)


class EventStack(auto.Stack):
    """An Automation API stack that is neither selected nor read back through extra CLI runs.

    Every command already names the stack (`--stack`), so `pulumi stack select` is not needed
    when we know the stack exists; and after up/refresh/destroy the SDK runs `stack output`
    twice and `stack history` once for data the event stream has already delivered (summary
    event, the stack resource's outputs). Falls back to the SDK's calls when an event is missing.
    """

    def __init__(self, name: str, workspace: auto.LocalWorkspace, collector: Collector) -> None:
        # Deliberately not Stack.__init__: it runs `stack select`/`stack init` (done by
        # open_stack only when needed). These are the attributes Stack.__init__ sets.
        self.name = name
        self.workspace = workspace
        self._mode = StackInitMode.SELECT
        self.collector = collector

    def outputs(self) -> auto.OutputMap:
        self.collector.finished.wait(SUMMARY_WAIT_SECONDS)
        outputs = self.collector.stack_outputs
        # Events show secrets masked; only `stack output --show-secrets` has their values.
        if outputs is None or any(is_secret_wrapper(v) or v == SECRET_MASK
                                  for v in outputs.values()):
            return super().outputs()
        return {key: auto.OutputValue(value=value, secret=False)
                for key, value in outputs.items()}

    def info(self, show_secrets: bool = True) -> auto.UpdateSummary | None:
        self.collector.finished.wait(SUMMARY_WAIT_SECONDS)
        summary = self.collector.summary
        if summary is None:
            return super().info(show_secrets)
        changes = {op_name(k): v for k, v in (summary.resource_changes or {}).items()}
        return auto.UpdateSummary(kind="update", start_time=None, message="", environment={},
                                  config={}, result="succeeded", resource_changes=changes)


def pulumi_command(version: str | None) -> auto.PulumiCommand:
    """The CLI, without a `pulumi version` run per operation when the parent StackEngine has
    already asked the CLI for its version (it does so once and passes it in the request)."""
    if not version:
        return auto.PulumiCommand(skip_version_check=True)
    command = object.__new__(auto.PulumiCommand)  # PulumiCommand.__init__ runs `pulumi version`
    command.command = "pulumi"
    command.version = VersionInfo.parse(version.removeprefix("v"))
    return command


def workspace_options(settings: Mapping[str, Any], stack: str, temp_root: list[str],
                      cli_version: str | None = None) -> auto.LocalWorkspaceOptions:
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
        pulumi_command=pulumi_command(cli_version),
    )


def open_stack(request: Mapping[str, Any], program: Callable[[], None], create: bool,
               temp_root: list[str],
               collector: Collector | None = None) -> tuple[EventStack | None, bool]:
    """(stack, existed_before). With create=False a missing stack gives (None, False).

    On a file:// backend whether the stack exists is read from the backend folder, which
    saves the `pulumi stack select` run; other backends are asked with `stack select`."""
    settings = request["settings"]
    name = request["stack"]
    opts = workspace_options(settings, name, temp_root, request.get("pulumi_version"))
    opts.program = program
    if opts.project_settings is not None and opts.project_settings.main is None:
        opts.project_settings.main = os.getcwd()  # as auto.select_stack does for inline programs
    workspace = auto.LocalWorkspace(**opts.__dict__)
    backend_dir = file_backend_path(settings["backend_url"])
    exists = (diystate.stack_exists(backend_dir, settings["project"], name)
              if backend_dir is not None else None)
    if exists is None:
        try:
            workspace.select_stack(name)
            exists = True
        except auto.StackNotFoundError:
            exists = False
    if not exists:
        if not create:
            return None, False
        # In the operator's file backend a new stack is one file: written directly, it saves a
        # whole `pulumi stack init` process and its key derivation (see stackseed).
        if backend_dir is not None and engine_settings.shortcuts_enabled() \
                and stackseed.create_from_sibling(backend_dir, settings["project"], name):
            log.info("stack %s created from a sibling's secrets state (no stack init)", name)
        else:
            workspace.create_stack(name)
    if backend_dir is not None and engine_settings.shortcuts_enabled():
        # The stack's own salt in the temporary workspace: one key derivation, not two (see
        # stackseed.stack_salt).
        salt = stackseed.stack_salt(backend_dir, settings["project"], name)
        if salt:
            workspace.save_stack_settings(name, auto.StackSettings(encryption_salt=salt))
    return EventStack(name, workspace, collector or Collector()), exists


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in outputs.items()}


def run(request: Mapping[str, Any], timings: dict[str, float] | None = None) -> dict[str, Any]:
    """The answer to `request`. `timings`: the worker's own figures so far (imports, wait),
    completed with this operation's (workspace, engine, worker_total)."""
    t_start = time.monotonic()
    op = request["op"]
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
    t0 = time.monotonic()
    stack, existed = open_stack(request, program, create=op in ("up", "preview"),
                                temp_root=temp_root, collector=collector)
    timings["workspace"] = time.monotonic() - t0
    engine_started = time.monotonic()
    try:
        if op == "up":
            # A stack created just now has nothing to refresh.
            result = stack.up(refresh=bool(request.get("refresh")) and existed,
                              on_event=collector,
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
                result = stack.destroy(on_event=collector, color="never",
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
                                       color="never", suppress_progress=True)
                answer["change_summary"] = dict(result.summary.resource_changes or {})
                answer["result"] = "succeeded"
        else:
            raise ValueError(f"unknown operation {op!r}")
    except auto.CommandError as exc:
        answer["result"] = "failed"
        answer["message"] = trim_message(collector.errors, str(exc), secret_values)
        answer["outputs"] = {"objects": objects_from_events(collector),
                             "errors": collector.errors_by_resource(secret_values)}
    finally:
        answer["engine_seconds"] = time.monotonic() - engine_started
        # A preview must not leave a stack behind for an instance that was never deployed.
        if op == "preview" and stack is not None and not existed:
            with contextlib.suppress(auto.CommandError):
                stack.workspace.remove_stack(request["stack"])
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
