"""Reconcile one JupyterNotebookInstance: its stack and its status, from the current state only.

Level-triggered, controller-runtime style: whatever event queued the key, `reconcile` reads the
instance fresh, decides, acts, and returns a `Result` (done, retry with backoff, or come back
later). The decisions, in order:

1. instance gone: nothing to do;
2. being deleted: `destroy` the stack (PVCs are retained by the program), drop the finalizer;
3. template missing / invalid, render error: status says so precisely, no engine call (a server
   that is already up keeps running when its template is deleted);
4. desired state unchanged (hash, generation) and nothing drifted: only mirror pod status;
5. own spec unchanged, stack up, nothing drifted, but the render differs (the template or the
   operator's settings changed) under the `next-start` rollout: leave the running server alone,
   say `TemplateCurrent=False` (KubeSpawner semantics: a config change applies to servers started
   after it; the spawner restarts a server by deleting and recreating its instance);
6. otherwise: finalizer, `Processing`, `up`, status from the outputs, one Event.

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

from jupyternetes import secretexposure, secretvars
from jupyternetes.kube import FINALIZER, KubeError, now_rfc3339
from jupyternetes.masking import OPERATOR_LOG_MASK, mask_secrets
from jupyternetes.model import Instance, ModelError, Template
from jupyternetes.naming import stack_name
from jupyternetes.operator import admin, podstatus, preflight, teardown
from jupyternetes.operator.metrics import Metrics
from jupyternetes.operator.statuspatch import replacing
from jupyternetes.render import Rendered, RenderError, render

log = logging.getLogger(__name__)

GROUPS = ("pvcs", "pods", "otherResources")
PROVISIONED_KEY = {"pvcs": "pvcsProvisioned", "pods": "podsProvisioned",
                   "otherResources": "otherResourcesProvisioned"}
SUCCEEDED, FAILED = "succeeded", "failed"
TEMPLATE_CURRENT = "TemplateCurrent"
# Template rollout policies: when a template edit reaches servers that are already running.
NEXT_START, IMMEDIATE = "next-start", "immediate"
ROLLOUTS = (NEXT_START, IMMEDIATE)


# ---- edges ------------------------------------------------------------------------------------


class KubePort(Protocol):
    def get_instance(self, namespace: str, name: str) -> dict | None: ...
    def get_template(self, namespace: str, name: str) -> dict | None: ...
    def get_pod(self, namespace: str, name: str) -> dict | None: ...
    def get_secret(self, namespace: str, name: str) -> dict | None: ...
    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None: ...
    def add_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def remove_finalizer(self, namespace: str, name: str, finalizer: str = ...) -> dict | None: ...
    def namespace_terminating(self, namespace: str) -> bool: ...
    def delete_pods(self, namespace: str, selector: str) -> list[str]: ...
    def emit_event(self, instance: dict, event_type: str, reason: str, message: str) -> None: ...
    def get_object(self, api_version: str, kind: str, namespace: str | None,
                   name: str) -> dict | None: ...
    def list_pvcs(self, namespace: str, selector: str) -> list[dict]: ...


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
    def forget(self, namespace: str, name: str) -> OperationResultLike: ...


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
    message: str = ""


@dataclass(frozen=True)
class ReconcileConfig:
    secret_variables: frozenset[str] = frozenset({"jupyterhub.api_token"})
    # Whatever else changes what the program does (kubeconfig, context, project...): part of the
    # desired hash so changing operator settings re-applies every stack once.
    settings_fingerprint: Mapping[str, Any] = field(default_factory=dict)
    degraded_after: int = 5
    template_retry_seconds: float = 30.0
    # next-start: running servers keep what they were started with until they restart;
    # immediate: every template edit replaces the running pods at once (kernels are lost).
    template_rollout: str = NEXT_START

    def __post_init__(self) -> None:
        if self.template_rollout not in ROLLOUTS:
            raise ValueError(f"template_rollout must be one of {', '.join(ROLLOUTS)}, "
                             f"not {self.template_rollout!r}")


# ---- pure helpers -----------------------------------------------------------------------------


def desired_hash(rendered: Rendered, secret_variables: Iterable[str],
                 settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines what `up` would do."""
    # Without ownerReferences: bookkeeping, not the user's environment. An operator upgrade
    # that adds them must not mark every running server changed; pods get them at their next
    # `up` (a metadata-only change, no replacement). A new instance (new uid) is up'ed anyway.
    manifests = [{**m, "metadata": {k: v for k, v in m["metadata"].items()
                                    if k != "ownerReferences"}} for m in rendered.manifests()]
    doc = {
        "manifests": manifests,
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
    """`previous` with same-typed conditions replaced by `updates`. Of `previous` only the
    operator's own types are carried: the status write merges this list by type into the
    apiserver's current one (statusmerge), where other writers' conditions are kept as they
    are now, not as this older read saw them."""
    order = {"Ready": 0, "Provisioned": 1, "Degraded": 2, TEMPLATE_CURRENT: 3}
    result = {c.get("type"): dict(c) for c in previous if c.get("type") in order}
    for cond in updates:
        result[cond["type"]] = cond
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


def template_generation(tpl_obj: Mapping[str, Any]) -> int | None:
    generation = (tpl_obj.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else None


def stack_is_up(status: Mapping[str, Any]) -> bool:
    """The last stack operation succeeded: the server exists as `status.stack` describes."""
    stack = status.get("stack") or {}
    return bool(stack.get("desiredHash")) and (stack.get("lastUpdate") or {}).get(
        "result") == SUCCEEDED


def running_pods(status: Mapping[str, Any], namespace: str,
                 fallback: Iterable[tuple[str, str, str]] = ()) -> list[tuple[str, str, str]]:
    """(entry, namespace, name) of the pods the last successful `up` made, from the status
    contract; what a new render would name may differ (a template edit can rename entries)."""
    found = [(entry, namespace, value.get("resourceName"))
             for entry, value in sorted((status.get("pods") or {}).items())
             if isinstance(value, Mapping) and value.get("resourceName")]
    return found or list(fallback)


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
            return self._delete(obj, instance, failures)
        return self._apply(obj, instance, failures)

    # ---- deletion ---------------------------------------------------------------------------

    def _delete(self, obj: dict, instance: Instance, failures: int = 0) -> Result:
        key = key_of(instance.namespace, instance.name)
        self.drift.take(key)
        if FINALIZER not in instance.finalizers:
            return Result("deleting")  # someone else's finalizer holds it; not our business
        stack = stack_name(instance.namespace, instance.name)
        # After a restart the values of an instance being deleted were never seen: mask them in
        # whatever the destroy logs (its Secrets are still there: they are owned by it).
        OPERATOR_LOG_MASK.add(secret_values(instance, self.config.secret_variables))
        if instance.secret_refs:
            OPERATOR_LOG_MASK.add(secretvars.readable_values(instance, self.kube.get_secret))
        if admin.force_delete_requested(obj):  # the documented way out (teardown.py)
            message = teardown.force_delete(self.kube, self.engine,
                                            instance.namespace, instance.name, stack)
            self.kube.emit_event(obj, "Warning", teardown.FORCE_DELETED, message)
            self.kube.remove_finalizer(instance.namespace, instance.name)
            return Result("force-deleted", message=message)
        result = self._engine("destroy", lambda: self.engine.destroy(instance.namespace,
                                                                      instance.name), key)
        if result.result != SUCCEEDED:
            if self.kube.namespace_terminating(instance.namespace):
                message = teardown.destroy_skipped_message(stack, result.message,
                                                           instance.namespace)
                self.kube.emit_event(obj, "Warning", teardown.DESTROY_SKIPPED, message)
                self.kube.remove_finalizer(instance.namespace, instance.name)
                return Result("destroy-skipped", message=message)
            attempts = failures + 1
            previous = ((obj.get("status") or {}).get("stack") or {}).get("lastUpdate")
            stuck = attempts >= self.config.degraded_after
            message = teardown.destroy_failed_message(stack, result.message, attempts, stuck,
                                                      instance.namespace, instance.name)
            patch: dict[str, Any] = {"stack": {"name": stack,
                                               "lastUpdate": replacing(
                previous, self._last_update(result, message))}}
            if stuck:
                conditions = (obj.get("status") or {}).get("conditions") or []
                patch["conditions"] = merge_conditions(conditions, [condition(
                    "Degraded", True, teardown.DESTROY_STUCK, message, instance.generation,
                    conditions, self.clock())])
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)
            self.kube.emit_event(obj, "Warning", teardown.DESTROY_STUCK if stuck
                                 else teardown.DESTROY_FAILED, message)
            return Result("destroy-failed", failed=True, degraded=stuck, message=message)
        self.kube.remove_finalizer(instance.namespace, instance.name)
        self.kube.emit_event(obj, "Normal", "Destroyed",
                             f"stack {stack} destroyed ({summary_text(result.change_summary)}); "
                             "PVCs are kept for the next server of this instance name")
        return Result("destroyed")

    # ---- apply ------------------------------------------------------------------------------

    def _apply(self, obj: dict, instance: Instance, failures: int) -> Result:
        key = key_of(instance.namespace, instance.name)
        status = obj.get("status") or {}
        generation = instance.generation
        tpl_ns, tpl_name = instance.template_namespace, instance.template.name
        tpl_obj = self.kube.get_template(tpl_ns, tpl_name)
        if tpl_obj is None and stack_is_up(status):
            return self._template_gone(obj, instance, status)
        if tpl_obj is None:
            message = (f"template {tpl_ns}/{tpl_name} (spec.template) not found: create it, or "
                       f"point spec.template at an existing JupyterNotebookTemplate; retrying "
                       f"every {self.config.template_retry_seconds:g}s")
            self._not_provisionable(obj, status, generation, "Pending", "TemplateNotFound",
                                    message)
            return Result("template-missing", requeue_after=self.config.template_retry_seconds,
                          message=message)
        # Variables from spec.variablesFrom: read fresh, never cached, never written to status.
        secret_vars: dict[str, str] = {}
        if instance.secret_refs:
            try:
                secret_vars = secretvars.secret_variables(
                    instance, secretvars.read_secrets(instance, self.kube.get_secret))
            except secretvars.SecretVariablesError as exc:
                # The spawner creates the Secret just before the instance: retried with the
                # queue's backoff (first retry within about a second). A running server is
                # left running (and Ready) while it cannot be re-rendered.
                if stack_is_up(status):
                    self._keep_running(obj, instance, status, exc.reason,
                                       f"{exc}. The running server is left as it is until "
                                       "then.")
                else:
                    self._not_provisionable(obj, status, generation, "Pending", exc.reason,
                                            str(exc))
                return Result(exc.reason, failed=True, message=str(exc))
            instance = secretvars.with_variables(instance, secret_vars)
        secret_names = frozenset(self.config.secret_variables) | frozenset(secret_vars)
        # Known before anything can log them (render errors, engine messages, tracebacks).
        OPERATOR_LOG_MASK.add(secret_values(instance, secret_names))
        # The Secrets are the instance's own input, like its spec: a changed value is applied
        # now, never held back as a template change (the Secret has no generation of its own).
        secrets_digest = secretvars.variables_digest(secret_vars) if instance.secret_refs else None
        # Under next-start a template edit must not break a running server, even a bad edit.
        holding = (self.config.template_rollout == NEXT_START and stack_is_up(status)
                   and status.get("observedGeneration") == generation)
        try:
            template = Template.from_dict(tpl_obj, source=f"{tpl_ns}/{tpl_name}")
            rendered = render(template, instance)
        except (ModelError, RenderError) as exc:
            if holding:
                message = (f"template {tpl_ns}/{tpl_name} generation "
                           f"{template_generation(tpl_obj)} cannot be applied to this server: "
                           f"{mask_secrets(str(exc), secret_values(instance, secret_names))}."
                           " The running server is left as it is; fix the template before it "
                           "restarts, or the restart will fail.")
                self._keep_running(obj, instance, status, "TemplateInvalid", message)
                return Result("template-invalid", message=message)
            if isinstance(exc, ModelError):
                message = f"{exc}; fix the template"
                self._not_provisionable(obj, status, generation, "Failed", "InvalidTemplate",
                                        message)
                return Result("invalid-template",
                              requeue_after=self.config.template_retry_seconds, message=message)
            # A render error may quote a value (a label, a typed placeholder): mask secrets.
            message = mask_secrets(str(exc), secret_values(instance, secret_names))
            self._not_provisionable(obj, status, generation, "Failed", "RenderFailed", message)
            # No retry: a spec change (new generation) or the periodic resync brings it back.
            return Result("render-failed", message=message)

        digest = desired_hash(rendered, secret_names, self.config.settings_fingerprint)
        tpl_generation = template_generation(tpl_obj)
        flagged = self.drift.take(key)
        stack_status = status.get("stack") or {}
        # The server is up as the instance's current spec asked; only the template (or the
        # operator's settings) may have moved since.
        settled = (stack_is_up(status) and status.get("observedGeneration") == generation
                   and stack_status.get("variablesFromHash") == secrets_digest)
        same_render = stack_status.get("desiredHash") == digest
        hold = not same_render and self.config.template_rollout == NEXT_START
        drift = False
        if settled and (same_render or hold):
            # Drift = a pod the stack made is gone (deleted out of band, or while we were down).
            # Checked against the pods the stack made, not the new render's names.
            rendered_pods = [(o.entry, o.namespace, o.name) for o in rendered.pods]
            expected = rendered_pods if same_render else running_pods(
                status, instance.namespace, rendered_pods)
            pods = self._live_pods([(ns, name) for _, ns, name in expected], confirm=True)
            missing = [name for _, _, name in expected if pods.get(name) is None]
            if not missing:
                current = (self._template_current(status, tpl_ns, tpl_name, tpl_generation,
                                                  generation, only_if_not_true=True)
                           if same_render else
                           self._template_changed(obj, status, tpl_ns, tpl_name, tpl_generation,
                                                  generation))
                self._mirror(instance, status, expected, pods, current)
                if current is not None and current["status"] == "False":
                    self.kube.emit_event(obj, "Normal", current["reason"], current["message"])
                return Result("unchanged" if same_render else "template-pending")
            # A server that lost its pod is restarted anyway: with the current template.
            drift = True
            log.info("instance %s: drift (%s missing%s); refresh + up", key, ", ".join(missing),
                     ", pod deletion seen" if flagged else "", extra={"instance": key})
        # The first `up` of this instance object over a stack that already exists (a
        # force-deleted predecessor's, left behind) must not trust that state: it refreshes
        # (the engine skips the refresh of a stack it has just created).
        first_up = not stack_status.get("lastUpdate")
        return self._up(obj, instance, status, rendered, digest, failures,
                        refresh=drift or first_up, drift=drift,
                        template_gen=tpl_generation, secret_names=secret_names,
                        secrets_digest=secrets_digest)

    # ---- template rollout -------------------------------------------------------------------

    def _template_current(self, status: Mapping[str, Any], tpl_ns: str, tpl_name: str,
                          tpl_generation: int | None, generation: int | None,
                          only_if_not_true: bool = False) -> dict[str, Any] | None:
        """TemplateCurrent=True; None when `only_if_not_true` and it already says so."""
        previous = find_condition(status, TEMPLATE_CURRENT)
        if only_if_not_true and previous is not None and previous.get("status") == "True":
            return None
        gen = f" generation {tpl_generation}" if tpl_generation is not None else ""
        return condition(TEMPLATE_CURRENT, True, "TemplateApplied",
                         f"the server runs what template {tpl_ns}/{tpl_name}{gen} renders",
                         generation, status.get("conditions") or [], self.clock())

    def _template_changed(self, obj: dict, status: Mapping[str, Any], tpl_ns: str,
                          tpl_name: str, tpl_generation: int | None,
                          generation: int | None) -> dict[str, Any] | None:
        """TemplateCurrent=False for a running server whose template moved (next-start); None
        when the condition already says exactly this (the caller's Event goes out only once)."""
        meta = obj.get("metadata") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        started = ((status.get("stack") or {}).get("templateGeneration"))
        if tpl_generation is not None and started is not None and started == tpl_generation:
            reason = "SettingsChanged"
            what = (f"the operator's settings (or version) now render template {tpl_ns}/"
                    f"{tpl_name} generation {tpl_generation} differently than when this server "
                    "started")
        else:
            reason = "TemplateChanged"
            now_gen = f"generation {tpl_generation}" if tpl_generation is not None else "edited"
            was = f"generation {started}" if started is not None else "an earlier version"
            what = (f"template {tpl_ns}/{tpl_name} changed ({now_gen}; this server was started "
                    f"with {was})")
        message = (f"{what}. The running server is left as it is (--template-rollout "
                   f"next-start); it gets the new version when it restarts: stop and start the "
                   f"server in JupyterHub (the spawner deletes and recreates this instance). See "
                   f"the difference with `jupyternetes preview {ref}`.")
        previous = find_condition(status, TEMPLATE_CURRENT)
        if (previous is not None and previous.get("status") == "False"
                and previous.get("reason") == reason and previous.get("message") == message):
            return None
        return condition(TEMPLATE_CURRENT, False, reason, message, generation,
                         status.get("conditions") or [], self.clock())

    def _template_gone(self, obj: dict, instance: Instance, status: Mapping[str, Any]) -> Result:
        """The template of a running server was deleted: the server keeps running (no engine
        call, nothing to render), the status says why it cannot be changed or restarted."""
        tpl_ns, tpl_name = instance.template_namespace, instance.template.name
        ref = f"{instance.namespace}/{instance.name}"
        message = (f"template {tpl_ns}/{tpl_name} (spec.template) was deleted; the running "
                   f"server is left as it is, but it cannot be updated or repaired, and a "
                   f"restart will fail until the template exists again (recreate it, or point "
                   f"spec.template of {ref} at an existing JupyterNotebookTemplate). Deleting "
                   f"the instance still cleans up.")
        self._keep_running(obj, instance, status, "TemplateNotFound", message)
        return Result("template-gone", requeue_after=self.config.template_retry_seconds,
                      message=message)

    def _keep_running(self, obj: dict, instance: Instance, status: Mapping[str, Any],
                      reason: str, message: str) -> None:
        """TemplateCurrent=False (Warning Event once) for a running server the current template
        cannot be applied to; its pods are still mirrored from what the stack made."""
        previous = find_condition(status, TEMPLATE_CURRENT)
        current = None
        if not (previous is not None and previous.get("status") == "False"
                and previous.get("reason") == reason and previous.get("message") == message):
            current = condition(TEMPLATE_CURRENT, False, reason, message, instance.generation,
                                status.get("conditions") or [], self.clock())
        expected = running_pods(status, instance.namespace)
        pods = self._live_pods([(ns, name) for _, ns, name in expected], confirm=True)
        self._mirror(instance, status, expected, pods, current)
        if current is not None:
            self.kube.emit_event(obj, "Warning", reason, message)

    def _refuse(self, obj: dict, instance: Instance, status: Mapping[str, Any], reason: str,
                message: str) -> Result:
        """No engine call (preflight said no): a running server is left as it is and says why
        the template is not applied; one that is not running is Failed."""
        if stack_is_up(status):
            self._keep_running(obj, instance, status, reason, message)
        else:
            self._not_provisionable(obj, status, instance.generation, "Failed", reason, message)
        return Result("refused", requeue_after=self.config.template_retry_seconds, message=message)

    def _up(self, obj: dict, instance: Instance, status: Mapping[str, Any], rendered: Rendered,
            digest: str, failures: int, refresh: bool, drift: bool = False,
            template_gen: int | None = None,
            secret_names: frozenset[str] | None = None,
            secrets_digest: str | None = None) -> Result:
        key = key_of(instance.namespace, instance.name)
        generation = instance.generation
        stack = stack_name(instance.namespace, instance.name)
        tpl_ref = f"{instance.template_namespace}/{instance.template.name}" + (
            f" (generation {template_gen})" if template_gen is not None else "")
        # Whose objects the names are and what a PVC change would do: before any engine call.
        checked = preflight.check(self.kube, instance, rendered, tpl_ref)
        if checked.refused:
            return self._refuse(obj, instance, status, checked.refused, checked.message)
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
            f"stack {stack}: {'refresh and ' if drift else ''}up in progress", generation,
            conditions, now)])
        processing["stack"] = {"name": stack}
        if checked.retained or status.get("retainedPvcs"):
            processing["retainedPvcs"] = checked.retained or None
        patched = self.kube.patch_instance_status(instance.namespace, instance.name, processing)
        if patched is None:
            return Result("gone")
        conditions = (patched.get("status") or {}).get("conditions") or processing["conditions"]

        previous_update = (status.get("stack") or {}).get("lastUpdate")
        secrets = secret_values(instance, secret_names or self.config.secret_variables)
        result = self._engine("up", lambda: self.engine.up(
            instance.namespace, instance.name, rendered, secrets, refresh=refresh), key)
        pods = self._live_pods([(o.namespace, o.name) for o in rendered.pods], confirm=False)
        if result.result == SUCCEEDED:
            # A cached pod from before a replacement must not count as the new one (ready).
            uids = {out.get("name"): out.get("uid")
                    for out in output_objects(result.outputs or {}).values()}
            pods = {name: pod if pod is None or not uids.get(name)
                    or (pod.get("metadata") or {}).get("uid") == uids[name] else None
                    for name, pod in pods.items()}
            patch = self._success_status(instance, rendered, result, digest, conditions, pods,
                                         template_gen)
            patch["stack"]["lastUpdate"] = replacing(previous_update, patch["stack"]["lastUpdate"])
            patch["stack"]["variablesFromHash"] = secrets_digest
            exposed = secretexposure.exposure(
                secretexposure.secret_labels(rendered.objects(), secrets))
            patch["conditions"] = merge_conditions(patch["conditions"], [condition(
                secretexposure.SECRET_EXPOSED, *exposed, generation, conditions, self.clock())])
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)
            was = find_condition({"conditions": conditions}, secretexposure.SECRET_EXPOSED)
            if exposed[0] and (was or {}).get("message") != exposed[2]:
                self.kube.emit_event(obj, "Warning", secretexposure.SECRET_EXPOSED, exposed[2])
            self.kube.emit_event(obj, "Normal", "Provisioned",
                                 f"stack {stack}: up succeeded in {result.engine_seconds:.1f}s "
                                 f"({summary_text(result.change_summary)})"
                                 + ("; drift repaired" if drift else "")
                                 + "".join(f"; {note}" for note in checked.notes))
            return Result("provisioned")
        attempts = failures + 1
        degraded = attempts >= self.config.degraded_after
        patch = self._failure_status(instance, rendered, result, conditions, pods, attempts,
                                     degraded)
        # A failed update shows its own outcome only, never the previous success's figures.
        patch["stack"]["lastUpdate"] = replacing(previous_update, patch["stack"]["lastUpdate"])
        if (status.get("stack") or {}).get("desiredHash") != digest:
            # This update was to apply a new render (template edit, rollout): it is not applied.
            patch["conditions"] = merge_conditions(patch["conditions"], [condition(
                TEMPLATE_CURRENT, False, "UpdateFailed",
                f"template {tpl_ref} is not applied: the stack update failed (see Provisioned); "
                "the server may still run what an earlier template version rendered",
                generation, conditions, self.clock())])
        self.kube.patch_instance_status(instance.namespace, instance.name, patch)
        message = self._failure_message(stack, result.message, attempts)
        self.kube.emit_event(obj, "Warning", "ProvisionFailed", message)
        if self.metrics:
            self.metrics.failure("engine")
        return Result("up-failed", failed=True, degraded=degraded, message=message)

    # ---- status builders --------------------------------------------------------------------

    def _success_status(self, instance: Instance, rendered: Rendered, result: Any, digest: str,
                        conditions: list, pods: Mapping[str, dict | None],
                        template_gen: int | None = None) -> dict[str, Any]:
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
            self._template_current({"conditions": conditions}, instance.template_namespace,
                                   instance.template.name, template_gen, generation),
        ])
        patch["observedGeneration"] = generation
        patch["stack"] = {"name": stack, "desiredHash": digest,
                          "templateGeneration": template_gen,
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

    def _live_pods(self, wanted: Iterable[tuple[str, str]],
                   confirm: bool) -> dict[str, dict | None]:
        """name -> pod for (namespace, name) pairs, from the watch cache; `confirm` asks the
        apiserver about pods the cache does not have (it may lag a just-created pod)."""
        pods: dict[str, dict | None] = {}
        for namespace, name in wanted:
            pod = self.pod_lookup(namespace, name) if self.pod_lookup else None
            if pod is None and (confirm or self.pod_lookup is None):
                pod = self.kube.get_pod(namespace, name)
            pods[name] = pod
        return pods

    def _mirror(self, instance: Instance, status: Mapping[str, Any],
                expected: Iterable[tuple[str, str, str]], pods: Mapping[str, dict | None],
                extra_condition: dict[str, Any] | None = None) -> None:
        """Patch only the pod entries and the Ready condition (plus `extra_condition`), and only
        if they changed. `expected`: (entry, namespace, name) of the pods to mirror."""
        expected = list(expected)
        patch: dict[str, Any] = {}
        current_pods = status.get("pods") or {}
        for entry, _, name in expected:
            pod = pods.get(name)
            wanted = podstatus.pod_fields(pod) if pod is not None else (
                podstatus.missing_pod_fields(name))
            changed = podstatus.changed_fields(current_pods.get(entry), wanted)
            if changed:
                patch.setdefault("pods", {})[entry] = changed
        conditions = status.get("conditions") or []
        updates = [extra_condition] if extra_condition else []
        ready, reason, message = podstatus.readiness_summary([name for _, _, name in expected],
                                                             pods)
        previous = find_condition(status, "Ready")
        if (previous is None or previous.get("status") != ("True" if ready else "False")
                or previous.get("message") != message):
            updates.append(condition("Ready", ready, reason, message, instance.generation,
                                     conditions, self.clock()))
        if updates:
            patch["conditions"] = merge_conditions(conditions, updates)
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
