"""Reconcile one JupyterNotebookInstance: its stack and its status, from the current state only.

Level-triggered, controller-runtime style: whatever event queued the key, `reconcile` reads the
instance fresh, decides, acts, and returns a `Result` (done, retry with backoff, or come back
later). The decisions, in order:

1. instance gone: nothing to do;
2. being deleted: `destroy` the stack (PVCs are retained by the program), drop the finalizer;
3. template missing / invalid, render error: status says so precisely, no engine call;
4. desired state unchanged (hash, generation) and nothing drifted: only mirror pod status;
5. otherwise: finalizer, `Processing`, `up`, status from the outputs, one Event.

The kube and engine edges are small protocols so the decisions are unit-tested with recorders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jupyternetes.kube import FINALIZER, KubeError, now_rfc3339
from jupyternetes.model import Instance, ModelError, Template
from jupyternetes.naming import stack_name
from jupyternetes.operator import podstatus
from jupyternetes.operator.metrics import Metrics
from jupyternetes.render import Rendered, RenderError, render

log = logging.getLogger(__name__)

GROUPS = ("pvcs", "pods", "otherResources")
PROVISIONED_KEY = {"pvcs": "pvcsProvisioned", "pods": "podsProvisioned",
                   "otherResources": "otherResourcesProvisioned"}
SUCCEEDED, FAILED = "succeeded", "failed"


# ---- edges ------------------------------------------------------------------------------------


class KubePort(Protocol):
    def get_instance(self, namespace: str, name: str) -> dict | None: ...
    def get_template(self, namespace: str, name: str) -> dict | None: ...
    def get_pod(self, namespace: str, name: str) -> dict | None: ...
    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None: ...
    def add_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def remove_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def emit_event(self, instance: dict, event_type: str, reason: str, message: str) -> None: ...


class OperationResultLike(Protocol):
    operation: str
    result: str
    started_at: str
    finished_at: str
    change_summary: dict[str, int]
    outputs: dict
    message: str
    engine_seconds: float


class EnginePort(Protocol):
    def up(self, namespace: str, name: str, rendered: Rendered, secret_values: Any,
           refresh: bool = False) -> OperationResultLike: ...
    def destroy(self, namespace: str, name: str) -> OperationResultLike: ...


class DriftFlags:
    """Instances whose managed objects changed behind the stack's back (a pod deleted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def flag(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def take(self, key: str) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.discard(key)
                return True
            return False

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys


@dataclass(frozen=True)
class Result:
    action: str
    requeue_after: float | None = None
    failed: bool = False
    degraded: bool = False
    engine_operation: str | None = None
    message: str = ""


@dataclass(frozen=True)
class ReconcileConfig:
    secret_variables: frozenset[str] = frozenset({"jupyterhub.api_token"})
    # Whatever else changes what the program does (kubeconfig, context, project...): part of the
    # desired hash so changing operator settings re-applies every stack once.
    settings_fingerprint: Mapping[str, Any] = field(default_factory=dict)
    degraded_after: int = 5
    template_retry_seconds: float = 30.0


# ---- pure helpers -----------------------------------------------------------------------------


def desired_hash(rendered: Rendered, secret_variables: Iterable[str],
                 settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines what `up` would do."""
    doc = {
        "manifests": rendered.manifests(),
        "secretVariables": sorted(v.lower() for v in secret_variables),
        "settings": dict(settings),
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def secret_values(instance: Instance, secret_variables: Iterable[str]) -> frozenset[str]:
    """Values of the instance variables that must be Pulumi secrets (names case-insensitive,
    like placeholders); empty values are left out, they would match every string."""
    wanted = {v.lower() for v in secret_variables}
    return frozenset(v for k, v in instance.variables.items() if k.lower() in wanted and v)


def condition(type_: str, status: bool, reason: str, message: str, generation: int | None,
              previous: Iterable[Mapping[str, Any]], now: str) -> dict[str, Any]:
    """A condition dict; lastTransitionTime only moves when the status flips."""
    value = "True" if status else "False"
    since = now
    for old in previous:
        if old.get("type") == type_ and old.get("status") == value:
            since = old.get("lastTransitionTime") or now
    cond = {"type": type_, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def merge_conditions(previous: Iterable[Mapping[str, Any]],
                     updates: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`previous` with same-typed conditions replaced by `updates` (merge patch replaces lists)."""
    result = {c.get("type"): dict(c) for c in previous}
    for cond in updates:
        result[cond["type"]] = cond
    order = {"Ready": 0, "Provisioned": 1, "Degraded": 2}
    return sorted(result.values(), key=lambda c: (order.get(c.get("type"), 9), c.get("type")))


def find_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def rendered_groups(rendered: Rendered) -> dict[str, tuple]:
    return {"pvcs": rendered.pvcs, "pods": rendered.pods,
            "otherResources": rendered.other_resources}


def removed_entries(current: Mapping[str, Any], rendered: Rendered) -> dict[str, dict]:
    """Merge-patch nulls for status entries the template no longer has."""
    patch: dict[str, dict] = {}
    for group, objs in rendered_groups(rendered).items():
        wanted = {o.entry for o in objs}
        gone = {k: None for k in (current.get(group) or {}) if k not in wanted}
        if gone:
            patch[group] = gone
    return patch


def output_objects(outputs: Mapping[str, Any]) -> dict[tuple[str, str], dict]:
    """(group, entry) -> object record from the program's `objects` stack output."""
    raw = outputs.get("objects") if isinstance(outputs, Mapping) else None
    if isinstance(raw, Mapping) and "value" in raw:  # an unwrapped OutputValue
        raw = raw["value"]
    result: dict[tuple[str, str], dict] = {}
    for obj in raw or []:
        if isinstance(obj, Mapping) and obj.get("group") and obj.get("entry"):
            result[(obj["group"], obj["entry"])] = dict(obj)
    return result


def failed_entries(result: Any, rendered: Rendered) -> dict[tuple[str, str], str]:
    """(group, entry) -> error of the entries a failed operation names.

    The engine reports per-resource errors (`outputs.errors`, keyed `group/entry`) when it can;
    otherwise an entry counts as failed when the message names its object or resource name.
    """
    errors = (result.outputs or {}).get("errors") or {}
    message = result.message or ""
    found: dict[tuple[str, str], str] = {}
    for obj in rendered.objects():
        resource = f"{obj.group}/{obj.entry}"
        if errors.get(resource):
            found[(obj.group, obj.entry)] = str(errors[resource])
        elif not errors and (obj.name in message or resource in message):
            found[(obj.group, obj.entry)] = message
    return found


def summary_text(change_summary: Mapping[str, int]) -> str:
    parts = [f"{k} {v}" for k, v in sorted(change_summary.items()) if v]
    return ", ".join(parts) if parts else "no changes"


def key_of(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


# ---- the reconciler ---------------------------------------------------------------------------


PodLookup = Callable[[str, str], dict | None]


class Reconciler:
    def __init__(self, kube: KubePort, engine: EnginePort, config: ReconcileConfig | None = None,
                 pod_lookup: PodLookup | None = None, drift: DriftFlags | None = None,
                 metrics: Metrics | None = None, clock: Callable[[], str] = now_rfc3339) -> None:
        self.kube = kube
        self.engine = engine
        self.config = config or ReconcileConfig()
        # The pod informer's cache; None means "no watch": ask the apiserver.
        self.pod_lookup = pod_lookup
        self.drift = drift or DriftFlags()
        self.metrics = metrics
        self.clock = clock

    # ---- entry point ------------------------------------------------------------------------

    def reconcile(self, key: str, failures: int = 0) -> Result:
        """`failures`: consecutive failed attempts so far (the queue's count for this key)."""
        namespace, name = split_key(key)
        obj = self.kube.get_instance(namespace, name)
        if obj is None:
            self.drift.take(key)
            return Result("gone")
        try:
            instance = Instance.from_dict(obj, source=key)
        except ModelError as exc:
            return self._invalid_instance(obj, str(exc))
        if instance.deletion_timestamp:
            return self._delete(obj, instance)
        return self._apply(obj, instance, failures)

    # ---- deletion ---------------------------------------------------------------------------

    def _delete(self, obj: dict, instance: Instance) -> Result:
        key = key_of(instance.namespace, instance.name)
        self.drift.take(key)
        if FINALIZER not in instance.finalizers:
            return Result("deleting")  # someone else's finalizer holds it; not our business
        result = self._engine("destroy", lambda: self.engine.destroy(instance.namespace,
                                                                      instance.name), key)
        stack = stack_name(instance.namespace, instance.name)
        if result.result != SUCCEEDED:
            message = (f"destroying stack {stack} failed; the finalizer {FINALIZER} stays until "
                       f"it succeeds: {result.message}")
            self.kube.patch_instance_status(instance.namespace, instance.name, {"stack": {
                "name": stack, "lastUpdate": self._last_update(result, message)}})
            self.kube.emit_event(obj, "Warning", "DestroyFailed", message)
            return Result("destroy-failed", failed=True, engine_operation="destroy",
                          message=message)
        self.kube.remove_finalizer(instance.namespace, instance.name)
        self.kube.emit_event(obj, "Normal", "Destroyed",
                             f"stack {stack} destroyed ({summary_text(result.change_summary)}); "
                             "PVCs are kept for the next server of this instance name")
        return Result("destroyed", engine_operation="destroy")

    # ---- apply ------------------------------------------------------------------------------

    def _apply(self, obj: dict, instance: Instance, failures: int) -> Result:
        key = key_of(instance.namespace, instance.name)
        status = obj.get("status") or {}
        generation = instance.generation
        tpl_ns, tpl_name = instance.template_namespace, instance.template.name
        tpl_obj = self.kube.get_template(tpl_ns, tpl_name)
        if tpl_obj is None:
            message = (f"template {tpl_ns}/{tpl_name} (spec.template) not found: create it, or "
                       f"point spec.template at an existing JupyterNotebookTemplate; retrying "
                       f"every {self.config.template_retry_seconds:g}s")
            self._not_provisionable(obj, status, generation, "Pending", "TemplateNotFound",
                                    message)
            return Result("template-missing", requeue_after=self.config.template_retry_seconds,
                          message=message)
        try:
            template = Template.from_dict(tpl_obj, source=f"{tpl_ns}/{tpl_name}")
            rendered = render(template, instance)
        except ModelError as exc:
            message = f"{exc}; fix the template"
            self._not_provisionable(obj, status, generation, "Failed", "InvalidTemplate", message)
            return Result("invalid-template", requeue_after=self.config.template_retry_seconds,
                          message=message)
        except RenderError as exc:
            self._not_provisionable(obj, status, generation, "Failed", "RenderFailed", str(exc))
            # No retry: a spec change (new generation) or the periodic resync brings it back.
            return Result("render-failed", message=str(exc))

        digest = desired_hash(rendered, self.config.secret_variables,
                              self.config.settings_fingerprint)
        flagged = self.drift.take(key)
        stack_status = status.get("stack") or {}
        unchanged = (stack_status.get("desiredHash") == digest
                     and status.get("observedGeneration") == generation
                     and (stack_status.get("lastUpdate") or {}).get("result") == SUCCEEDED)
        drift = False
        if unchanged:
            # Drift = a pod the stack made is gone (deleted out of band, or while we were down).
            pods = self._live_pods(rendered, confirm=True)
            missing = [o.name for o in rendered.pods if pods.get(o.name) is None]
            if not missing:
                self._mirror(instance, status, rendered, pods)
                return Result("unchanged")
            drift = True
            log.info("instance %s: drift (%s missing%s); refresh + up", key, ", ".join(missing),
                     ", pod deletion seen" if flagged else "", extra={"instance": key})
        return self._up(obj, instance, status, rendered, digest, failures, refresh=drift)

    def _up(self, obj: dict, instance: Instance, status: Mapping[str, Any], rendered: Rendered,
            digest: str, failures: int, refresh: bool) -> Result:
        key = key_of(instance.namespace, instance.name)
        generation = instance.generation
        stack = stack_name(instance.namespace, instance.name)
        if FINALIZER not in instance.finalizers and self.kube.add_finalizer(
                instance.namespace, instance.name) is None:
            return Result("gone")
        now = self.clock()
        conditions = status.get("conditions") or []
        processing: dict[str, Any] = {
            PROVISIONED_KEY[g]: ("Processing" if objs else "Completed")
            for g, objs in rendered_groups(rendered).items()}
        for group, objs in rendered_groups(rendered).items():
            processing[group] = {o.entry: {"resourceName": o.name, "state": "Processing"}
                                 for o in objs}
        for group, nulls in removed_entries(status, rendered).items():
            processing.setdefault(group, {}).update(nulls)
        processing["conditions"] = merge_conditions(conditions, [condition(
            "Provisioned", False, "Provisioning",
            f"stack {stack}: {'refresh and ' if refresh else ''}up in progress", generation,
            conditions, now)])
        processing["stack"] = {"name": stack}
        patched = self.kube.patch_instance_status(instance.namespace, instance.name, processing)
        if patched is None:
            return Result("gone")
        conditions = (patched.get("status") or {}).get("conditions") or processing["conditions"]

        secrets = secret_values(instance, self.config.secret_variables)
        result = self._engine("up", lambda: self.engine.up(
            instance.namespace, instance.name, rendered, secrets, refresh=refresh), key)
        pods = self._live_pods(rendered, confirm=False)
        if result.result == SUCCEEDED:
            # A cached pod from before a replacement must not count as the new one (ready).
            uids = {out.get("name"): out.get("uid")
                    for out in output_objects(result.outputs or {}).values()}
            pods = {name: pod if pod is None or not uids.get(name)
                    or (pod.get("metadata") or {}).get("uid") == uids[name] else None
                    for name, pod in pods.items()}
            patch = self._success_status(instance, rendered, result, digest, conditions, pods)
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)
            self.kube.emit_event(obj, "Normal", "Provisioned",
                                 f"stack {stack}: up succeeded in {result.engine_seconds:.1f}s "
                                 f"({summary_text(result.change_summary)})"
                                 + ("; drift repaired" if refresh else ""))
            return Result("provisioned", engine_operation="up")
        attempts = failures + 1
        degraded = attempts >= self.config.degraded_after
        patch = self._failure_status(instance, rendered, result, conditions, pods, attempts,
                                     degraded)
        self.kube.patch_instance_status(instance.namespace, instance.name, patch)
        message = self._failure_message(stack, result.message, attempts)
        self.kube.emit_event(obj, "Warning", "ProvisionFailed", message)
        if self.metrics:
            self.metrics.failure("engine")
        return Result("up-failed", failed=True, degraded=degraded, engine_operation="up",
                      message=message)

    # ---- status builders --------------------------------------------------------------------

    def _success_status(self, instance: Instance, rendered: Rendered, result: Any, digest: str,
                        conditions: list, pods: Mapping[str, dict | None]) -> dict[str, Any]:
        generation = instance.generation
        now = self.clock()
        stack = stack_name(instance.namespace, instance.name)
        outputs = output_objects(result.outputs or {})
        patch: dict[str, Any] = {}
        for group, objs in rendered_groups(rendered).items():
            entries: dict[str, Any] = {}
            for o in objs:
                out = outputs.get((group, o.entry), {})
                entry: dict[str, Any] = {"resourceName": out.get("name") or o.name,
                                         "state": "Completed", "errorMessage": None}
                if group == "pods":
                    entry.update(self._pod_entry(o.name, out.get("uid"), pods.get(o.name)))
                entries[o.entry] = entry
            patch[group] = entries
            patch[PROVISIONED_KEY[group]] = "Completed"
        ready, reason, message = podstatus.readiness_summary([o.name for o in rendered.pods],
                                                             pods)
        patch["conditions"] = merge_conditions(conditions, [
            condition("Ready", ready, reason, message, generation, conditions, now),
            condition("Provisioned", True, "StackUp",
                      f"stack {stack} is up ({summary_text(result.change_summary)})",
                      generation, conditions, now),
            condition("Degraded", False, "StackUp", "the last stack update succeeded",
                      generation, conditions, now),
        ])
        patch["observedGeneration"] = generation
        patch["stack"] = {"name": stack, "desiredHash": digest,
                          "lastUpdate": self._last_update(result, result.message or "")}
        return patch

    def _failure_status(self, instance: Instance, rendered: Rendered, result: Any,
                        conditions: list, pods: Mapping[str, dict | None], attempts: int,
                        degraded: bool) -> dict[str, Any]:
        generation = instance.generation
        now = self.clock()
        stack = stack_name(instance.namespace, instance.name)
        message = self._failure_message(stack, result.message, attempts)
        named = failed_entries(result, rendered)
        groups = rendered_groups(rendered)
        failed_groups = {g for g, _ in named} or {g for g, objs in groups.items() if objs}
        first_failed = min(GROUPS.index(g) for g in failed_groups) if failed_groups else 0
        patch: dict[str, Any] = {}
        for index, group in enumerate(GROUPS):
            objs = groups[group]
            if not objs:
                state = "Completed"
            elif group in failed_groups:
                state = "Failed"
            else:
                # Objects are declared in dependency order: groups before the failing one were
                # applied; later ones may not have been reached.
                state = "Completed" if index < first_failed else "Pending"
            patch[PROVISIONED_KEY[group]] = state
            entries = {}
            for o in objs:
                if (group, o.entry) in named or (not named and group in failed_groups):
                    entries[o.entry] = {"resourceName": o.name, "state": "Failed",
                                        "errorMessage": named.get((group, o.entry),
                                                                  result.message)}
                else:
                    entries[o.entry] = {"resourceName": o.name, "state": state,
                                        "errorMessage": None}
            patch[group] = entries
        ready, reason, ready_message = podstatus.readiness_summary(
            [o.name for o in rendered.pods], pods)
        updates = [
            condition("Ready", ready, reason, ready_message, generation, conditions, now),
            condition("Provisioned", False, "UpFailed", message, generation, conditions, now),
            condition("Degraded", degraded,
                      "RepeatedFailures" if degraded else "Retrying",
                      (f"{attempts} consecutive failed updates; retrying slowly. Last error: "
                       f"{result.message}") if degraded else
                      f"update failed {attempts} time(s); retrying with backoff",
                      generation, conditions, now),
        ]
        patch["conditions"] = merge_conditions(conditions, updates)
        patch["observedGeneration"] = generation
        patch["stack"] = {"name": stack, "lastUpdate": self._last_update(result, message)}
        return patch

    @staticmethod
    def _failure_message(stack: str, engine_message: str, attempts: int) -> str:
        return (f"stack {stack}: up failed (attempt {attempts}): "
                f"{engine_message or 'no error message from the engine'}")

    def _pod_entry(self, name: str, uid: str | None, pod: dict | None) -> dict[str, Any]:
        """Mirror fields right after `up`; a pod from before a replacement does not count."""
        if pod is not None and (uid is None or (pod.get("metadata") or {}).get("uid") == uid):
            fields = podstatus.pod_fields(pod)
            fields.pop("resourceName", None)
            return fields
        return {"phase": None, "podAddress": None, "ready": False, "reason": None}

    def _last_update(self, result: Any, message: str) -> dict[str, Any]:
        update = {"result": result.result, "startedAt": result.started_at,
                  "finishedAt": result.finished_at,
                  "changeSummary": dict(result.change_summary or {}), "message": message}
        return {k: v for k, v in update.items() if v is not None}

    # ---- outcomes without an engine call ----------------------------------------------------

    def _not_provisionable(self, obj: dict, status: Mapping[str, Any], generation: int | None,
                           state: str, reason: str, message: str) -> None:
        """Status + Event for template-missing / render errors; silent when already reported."""
        meta = obj.get("metadata") or {}
        previous = find_condition(status, "Provisioned")
        if (previous and previous.get("reason") == reason
                and previous.get("message") == message
                and status.get("observedGeneration") == generation):
            return  # already said, at this generation: no status churn, no Event spam
        conditions = status.get("conditions") or []
        now = self.clock()
        patch: dict[str, Any] = {key: state for key in PROVISIONED_KEY.values()}
        patch["conditions"] = merge_conditions(conditions, [
            condition("Provisioned", False, reason, message, generation, conditions, now),
            condition("Ready", False, reason, message, generation, conditions, now),
        ])
        patch["observedGeneration"] = generation
        self.kube.patch_instance_status(meta.get("namespace"), meta.get("name"), patch)
        self.kube.emit_event(obj, "Warning", reason, message)
        if self.metrics:
            self.metrics.failure(reason)

    def _invalid_instance(self, obj: dict, message: str) -> Result:
        status = obj.get("status") or {}
        generation = (obj.get("metadata") or {}).get("generation")
        self._not_provisionable(obj, status, generation if isinstance(generation, int) else None,
                                "Failed", "InvalidInstance", message)
        return Result("invalid-instance", message=message)

    # ---- pods -------------------------------------------------------------------------------

    def _live_pods(self, rendered: Rendered, confirm: bool) -> dict[str, dict | None]:
        """name -> pod of the rendered pods, from the watch cache; `confirm` asks the apiserver
        about pods the cache does not have (it may lag a just-created pod)."""
        pods: dict[str, dict | None] = {}
        for o in rendered.pods:
            pod = self.pod_lookup(o.namespace, o.name) if self.pod_lookup else None
            if pod is None and (confirm or self.pod_lookup is None):
                pod = self.kube.get_pod(o.namespace, o.name)
            pods[o.name] = pod
        return pods

    def _mirror(self, instance: Instance, status: Mapping[str, Any], rendered: Rendered,
                pods: Mapping[str, dict | None]) -> None:
        """Patch only the pod entries and the Ready condition, and only if they changed."""
        patch: dict[str, Any] = {}
        current_pods = status.get("pods") or {}
        for o in rendered.pods:
            pod = pods.get(o.name)
            wanted = podstatus.pod_fields(pod) if pod is not None else (
                podstatus.missing_pod_fields(o.name))
            changed = podstatus.changed_fields(current_pods.get(o.entry), wanted)
            if changed:
                patch.setdefault("pods", {})[o.entry] = changed
        conditions = status.get("conditions") or []
        ready, reason, message = podstatus.readiness_summary([o.name for o in rendered.pods],
                                                             pods)
        previous = find_condition(status, "Ready")
        if (previous is None or previous.get("status") != ("True" if ready else "False")
                or previous.get("message") != message):
            patch["conditions"] = merge_conditions(conditions, [condition(
                "Ready", ready, reason, message, instance.generation, conditions, self.clock())])
        if patch:
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)

    # ---- engine -----------------------------------------------------------------------------

    def _engine(self, operation: str, call: Callable[[], Any], key: str) -> Any:
        started = time.monotonic()
        log.info("instance %s: %s starting", key, operation, extra={"instance": key})
        try:
            result = call()
        except KubeError:
            raise
        except Exception as exc:
            # An engine that raises instead of returning a failed result is still a failure the
            # admin must see on the instance, not only in the operator's log.
            log.exception("instance %s: %s raised", key, operation, extra={"instance": key})
            result = _RaisedResult(operation, f"{type(exc).__name__}: {exc}")
        seconds = time.monotonic() - started
        if self.metrics:
            self.metrics.observe_engine(operation, result.result, seconds)
        log.info("instance %s: %s %s in %.2fs (%s)", key, operation, result.result, seconds,
                 summary_text(result.change_summary or {}), extra={"instance": key})
        return result


@dataclass
class _RaisedResult:
    operation: str
    message: str
    result: str = FAILED
    started_at: str | None = None
    finished_at: str | None = None
    change_summary: dict[str, int] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    engine_seconds: float = 0.0
