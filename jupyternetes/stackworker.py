"""`python -m jupyternetes.stackworker`: run ONE stack operation and exit.

Request: one JSON object on stdin (see stacks.StackEngine._request). Answer: one JSON object on
stdout. Logs: stderr. A fresh process per operation because Pulumi's Python runtime (settings,
language server, mocks) is process-global; see stacks.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

T_START = time.monotonic()

# Imported after T_START on purpose: the import cost of the Pulumi SDK is part of the measured
# worker overhead.
from pulumi import automation as auto  # noqa: E402
from pulumi.automation import events as auto_events  # noqa: E402
from pulumi.automation._stack import StackInitMode  # noqa: E402
from semver import VersionInfo  # noqa: E402

from jupyternetes import (  # noqa: E402
    backendurl,
    diystate,
    enginesettings,
    prewarm,
    stackseed,
    workerpool,
    workspaces,
)
from jupyternetes import program as stack_program  # noqa: E402
from jupyternetes.masking import (  # noqa: E402
    SECRET_MASK,
    MaskingFilter,
    install,
    mask_secrets,
    trim_message,
)
from jupyternetes.procs import pid_alive  # noqa: E402
from jupyternetes.stacks import (  # noqa: E402
    CANCEL_GRACE_SECONDS,
    file_backend_path,
    utc_now,
)

T_IMPORTED = time.monotonic()
# When the request was read: later than T_IMPORTED for a pre-started worker, which waited.
T_REQUEST = T_IMPORTED

log = logging.getLogger("jupyternetes.stackworker")

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM when the thread that started us dies (set here, not in preexec_fn, because
    preexec_fn is unsafe in a multi-threaded parent such as the operator)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:  # not Linux: the timeout in the parent still bounds us
        return
    expected = os.environ.get("JUPYTERNETES_WORKER_PARENT_PID")
    # The parent may have died before prctl took effect; then we are already orphaned.
    if expected and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def on_sigterm(_signum: int, _frame: Any) -> None:
    """Cancel the Pulumi CLI like Ctrl-C does (it finishes in-flight steps, saves the
    checkpoint and releases the stack lock), then make sure nothing of ours is left."""
    log.warning("terminating: cancelling the Pulumi CLI")
    children = child_pids()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + CANCEL_GRACE_SECONDS
    while time.monotonic() < deadline and any(pid_alive(p) for p in children):
        time.sleep(0.2)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os._exit(143)


# ---------------------------------------------------------------------------------------------


class Collector:
    """Engine events of one operation: error diagnostics and per-resource steps."""

    def __init__(self, manifests: Mapping[str, Any] | None = None,
                 secret_values: Collection[str] = ()) -> None:
        self.manifests = manifests or {}
        self.secret_values = secret_values
        self.errors: list[tuple[str | None, str]] = []
        self.error_urns: list[tuple[str | None, str]] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.failed: set[str] = set()
        # The engine's summary of the operation and the stack's outputs, as the event stream
        # carries them: what the SDK would otherwise read back with three more CLI runs.
        self.summary: auto_events.SummaryEvent | None = None
        self.stack_outputs: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, event: auto_events.EngineEvent) -> None:
        with self.lock:
            if event.summary_event is not None:
                self.summary = event.summary_event
                self.finished.set()
            diag = event.diagnostic_event
            if diag is not None and diag.severity == "error":
                self.errors.append((resource_name(diag.urn), diag.message))
                self.error_urns.append((diag.urn, diag.message))
            pre = event.resource_pre_event
            if pre is not None and pre.metadata is not None:
                self.steps[pre.metadata.urn + "|" + str(pre.metadata.op)] = step_dict(
                    pre.metadata, self.manifests, self.secret_values)
            out = event.res_outputs_event
            if out is not None and out.metadata is not None and out.metadata.new is not None:
                self.outputs[out.metadata.urn] = dict(out.metadata.new.outputs or {})
                if out.metadata.type == STACK_TYPE:
                    self.stack_outputs = dict(out.metadata.new.outputs or {})
            failed = event.res_op_failed_event
            if failed is not None and failed.metadata is not None:
                self.failed.add(failed.metadata.urn)

    def errors_by_resource(self, secret_values: Collection[str]) -> dict[str, str]:
        grouped: dict[str, list[tuple[str | None, str]]] = {}
        for name, message in self.errors:
            if name:
                grouped.setdefault(name, []).append((None, message))
        return {name: trim_message(items, "", secret_values) for name, items in grouped.items()}


STACK_TYPE = "pulumi:pulumi:Stack"
# How long to wait, after the CLI exited, for the summary event (the gRPC event stream is
# drained before the CLI exits, so this is a safety margin, not a delay).
SUMMARY_WAIT_SECONDS = 2.0


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


def resource_name(urn: str | None) -> str | None:
    if not urn:
        return None
    name = urn.rsplit("::", 1)[-1]
    # The stack itself and the provider are not objects of the instance.
    return None if urn.endswith("pulumi:pulumi:Stack::" + name) else name


def op_name(op: Any) -> str:
    return str(getattr(op, "value", op))


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def is_secret_wrapper(value: Any) -> bool:
    return isinstance(value, Mapping) and SECRET_SIG in value


def get_path(value: Any, path: str) -> Any:
    """`value` at a Pulumi property path like `spec.containers[0].env[3].value` (None when
    absent). Keys with dots appear quoted: `metadata.annotations["a.b/c"]`. Inside a secret
    (the engine shows those as a signature wrapper) the answer is SECRET_MASK."""
    current = value
    for part in split_path(path):
        if is_secret_wrapper(current):
            return SECRET_MASK
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return None
            current = current[part]
        else:
            if not isinstance(current, Mapping) or part not in current:
                return None
            current = current[part]
    return SECRET_MASK if is_secret_wrapper(current) else current


def mask_value(value: Any, secret_values: Collection[str]) -> Any:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    masked = mask_secrets(text, secret_values)
    if masked == text:
        return value
    return SECRET_MASK if isinstance(value, str) else masked


def split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    i, n = 0, len(path)
    buf = ""
    while i < n:
        ch = path[i]
        if ch == ".":
            if buf:
                parts.append(buf)
            buf = ""
            i += 1
        elif ch == "[":
            if buf:
                parts.append(buf)
            buf = ""
            end = path.find("]", i)
            inner = path[i + 1:end if end >= 0 else n]
            if inner.startswith('"') and inner.endswith('"'):
                parts.append(json.loads(inner))
            elif inner.isdigit():
                parts.append(int(inner))
            else:
                parts.append(inner)
            i = (end if end >= 0 else n) + 1
        else:
            buf += ch
            i += 1
    if buf:
        parts.append(buf)
    return parts


def step_dict(meta: auto_events.StepEventMetadata,
              manifests: Mapping[str, Any] | None = None,
              secret_values: Collection[str] = ()) -> dict[str, Any]:
    """A step of the event stream as plain data, with old and new values per changed path.

    The Kubernetes provider marks a whole list secret when any item holds a secret (e.g. all
    `containers` for one env var), so the engine shows those values only as [secret]. New
    values are then taken from our own rendered manifest (`manifests`, by resource name) with
    the known secrets masked; old ones are only in the encrypted state and stay [secret].
    """
    old_inputs = dict(meta.old.inputs or {}) if meta.old is not None else {}
    new_inputs = dict(meta.new.inputs or {}) if meta.new is not None else {}
    manifest = (manifests or {}).get(meta.urn.rsplit("::", 1)[-1])
    detailed: dict[str, dict] = {}
    for path, diff in (meta.detailed_diff or {}).items():
        kind = op_name(getattr(diff, "diff_kind", "update"))
        new = get_path(new_inputs, path)
        if new == SECRET_MASK and manifest is not None:
            new = mask_value(get_path(manifest, path), secret_values)
        detailed[path] = {"kind": kind, "old": get_path(old_inputs, path), "new": new}
    object_name = (get_path(new_inputs, "metadata.name") or get_path(old_inputs, "metadata.name"))
    return {
        "op": op_name(meta.op),
        "urn": meta.urn,
        "type": meta.type,
        "name": meta.urn.rsplit("::", 1)[-1],
        "object_name": object_name,
        "changed": list(meta.diffs or meta.keys or []),
        "detailed_diff": detailed,
    }


# ---------------------------------------------------------------------------------------------


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
        **enginesettings.cli_env(settings["backend_url"]),
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
        if backend_dir is not None and enginesettings.shortcuts_enabled() \
                and stackseed.create_from_sibling(backend_dir, settings["project"], name):
            log.info("stack %s created from a sibling's secrets state (no stack init)", name)
        else:
            workspace.create_stack(name)
    if backend_dir is not None and enginesettings.shortcuts_enabled():
        # The stack's own salt in the temporary workspace: one key derivation, not two (see
        # stackseed.stack_salt).
        salt = stackseed.stack_salt(backend_dir, settings["project"], name)
        if salt:
            workspace.save_stack_settings(name, auto.StackSettings(encryption_salt=salt))
    return EventStack(name, workspace, collector or Collector()), exists


def plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in outputs.items()}


def run(request: Mapping[str, Any]) -> dict[str, Any]:
    op = request["op"]
    settings = request["settings"]
    # Masked in every text: the instance's secrets and the backend URL's password.
    secret_values: list[str] = backendurl.request_mask_values(request)
    collector = Collector(
        {f"{o['group']}/{o['entry']}": o["manifest"] for o in request.get("objects") or []},
        secret_values)
    temp_root: list[str] = []
    # A pre-started worker's imports were done before the request came: off the clock.
    timings: dict[str, float] = {"imports": T_IMPORTED - T_START,
                                 "waited_for_request": T_REQUEST - T_IMPORTED}
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
            _rmtree(path)
    answer["steps"] = list(collector.steps.values()) if op == "preview" else []
    answer["finished_at"] = utc_now()
    timings["engine"] = answer["engine_seconds"]
    timings["worker_total"] = time.monotonic() - T_START - timings["waited_for_request"]
    answer["timings"] = timings
    answer["message"] = mask_secrets(answer["message"], secret_values)
    return answer


# The apiserver's answers to a dry-run apply of a replacement onto the object it replaces (the
# old object still exists in a preview): not a problem of the desired state.
DRY_RUN_REPLACE_ERRORS = ("pod updates may not change fields", "field is immutable")
REPLACE_OPS = ("replace", "create-replacement", "delete-replaced")


def dry_run_replacements(collector: Collector) -> list[str]:
    """URNs whose preview failed only because their replacement was dry-run onto the old object.

    pulumi-kubernetes previews a create by a server-side dry-run apply; for a replacement under
    the same name that apply hits the still-existing old object. The provider retries under a
    generated name for "field is immutable", but not for a Pod's "pod updates may not change
    fields" (a Forbidden cause inside an Invalid error), so a pod replacement cannot be
    previewed. Returns [] when any error is something else.
    """
    replaced = {s["urn"] for s in collector.steps.values() if s["op"] in REPLACE_OPS}
    urns: list[str] = []
    for urn, message in collector.error_urns:
        if urn is None and not any(m in message for m in DRY_RUN_REPLACE_ERRORS):
            continue  # the summary line ("preview failed") of the same failure
        if urn not in replaced or not any(m in message for m in DRY_RUN_REPLACE_ERRORS):
            return []
        if urn not in urns:
            urns.append(urn)
    return urns


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


def objects_from_events(collector: Collector) -> list[dict[str, Any]]:
    """Objects the engine did apply before an update failed (their live uid included)."""
    objects = []
    for urn, outputs in collector.outputs.items():
        name = resource_name(urn)
        if not name or "/" not in name or urn in collector.failed:
            continue
        group, entry = name.split("/", 1)
        if group not in stack_program.GROUP_ORDER:
            continue
        metadata = outputs.get("metadata") or {}
        objects.append({"group": group, "entry": entry, "apiVersion": outputs.get("apiVersion"),
                        "kind": outputs.get("kind"), "name": metadata.get("name"),
                        "namespace": metadata.get("namespace"), "uid": metadata.get("uid")})
    return objects


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    logging.basicConfig(level=os.environ.get("JUPYTERNETES_WORKER_LOG", "INFO"),
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    die_with_parent()
    signal.signal(signal.SIGTERM, on_sigterm)
    request = read_request()
    if request is None:
        return workerpool.WORKER_IDLE_EXIT
    secret_values = backendurl.request_mask_values(request)
    # Everything this process writes to stderr (logs, tracebacks) is masked: the operator logs
    # it at debug level.
    mask = MaskingFilter(secret_values)
    for handler in logging.getLogger().handlers:
        install(handler, mask)
    try:
        answer = run(request)
    except (FileNotFoundError, PermissionError) as exc:
        # Typically no `pulumi` on PATH or an unusable PULUMI_HOME / work dir.
        answer = {"config_error": f"cannot run the Pulumi CLI for stack {request.get('stack')}: "
                                  f"{exc}; check PATH (pulumi), --pulumi-home and --state-dir"}
    except stack_program.ProgramError as exc:
        answer = {"result": "failed", "message": f"invalid rendered objects: {exc}",
                  "started_at": utc_now(), "finished_at": utc_now()}
    except auto.CommandError as exc:
        # A CLI run before the operation itself (selecting or creating the stack) failed: its
        # error lines, not the exception's dump of code/stdout/stderr.
        answer = {"result": "failed", "started_at": utc_now(), "finished_at": utc_now(),
                  "message": f"stack {request.get('stack')}: {op_label(request)}: "
                             f"{trim_message([], str(exc), mask.forms())}"}
    except Exception as exc:  # an engine/SDK error outside CommandError: report, don't crash
        sys.stderr.write(mask_secrets(traceback.format_exc(), mask.forms()))
        answer = {"result": "failed", "started_at": utc_now(), "finished_at": utc_now(),
                  "message": mask_secrets(f"stack {request.get('stack')}: {op_label(request)}: "
                                          f"{type(exc).__name__}: {exc}", mask.forms())}
    for key in ("message", "config_error"):  # whatever path built it, no secret leaves
        if isinstance(answer.get(key), str):
            answer[key] = mask_secrets(answer[key], mask.forms())
    if answer.get("result") == "failed" and isinstance(answer.get("message"), str):
        # "could not list bucket: ... connection refused" means: the state database is down.
        answer["message"] = backendurl.explain_unreachable(
            answer["message"], str((request.get("settings") or {}).get("backend_url") or ""))
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0


def read_request() -> dict[str, Any] | None:
    """The request on stdin. A pre-started worker (see workerpool) waits at most its idle time
    for it, and None means: no request came (timeout, or stdin closed by a closing pool)."""
    global T_REQUEST
    idle = float(os.environ.get(workerpool.ENV_IDLE_SECONDS) or 0)
    if idle > 0 and not select.select([sys.stdin], [], [], idle)[0]:
        return None
    raw = sys.stdin.buffer.read()
    T_REQUEST = time.monotonic()
    if not raw.strip():
        return None
    return json.loads(raw)


def op_label(request: Mapping[str, Any]) -> str:
    return str(request.get("op"))


if __name__ == "__main__":
    sys.exit(main())
