"""Reconcile one JupyterNotebookInstance: its stack and its status, from the current state only.

Level-triggered, controller-runtime style: whatever event queued the key, `reconcile` reads the
instance fresh, decides, acts, and returns a `Result` (done, retry with backoff, or come back
later). The decisions, in order:

1. instance gone: nothing to do;
2. being deleted: `destroy` the stack (PVCs are retained by the program), drop the finalizer
   (teardown.py, with the ways out when a destroy keeps failing);
3. template missing / invalid, render error, or refused by the trust model (policy/trust.py: the
   template does not allow the instance's namespace, a Secret not meant for variablesFrom, a
   kind outside the allow-list): status says so precisely, no engine call (a server that is
   already up keeps running when its template is deleted or no longer allowed);
4. desired state unchanged (hash, generation) and nothing drifted: only mirror pod status;
5. own spec unchanged, stack up, nothing drifted, but the render differs (the template or the
   operator's settings changed) under the `next-start` rollout: leave the running server alone,
   say `TemplateCurrent=False` (KubeSpawner semantics: a config change applies to servers started
   after it; the spawner restarts a server by deleting and recreating its instance);
6. otherwise: finalizer, `Processing`, `up`, status from the outputs, one Event.

The kube and engine edges are small protocols (edges.py) so the decisions are unit-tested with
recorders; `DriftFlags` (noop.py) carries the controller's pod deletions to the next reconcile.
What the status says is built in `status.py` (the status contract); the rollout decisions of
steps 3-5 (hash, hold or apply, TemplateCurrent) are `policy/rollout.py`. This module reads,
decides, writes and emits Events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.app.metrics import Metrics
from jupyternetes.controller import createahead, edges, noop, preflight, teardown
from jupyternetes.controller.edges import EnginePort, KubePort, Result
from jupyternetes.controller.noop import DriftFlags
from jupyternetes.controller.revisions import RevisionStore
from jupyternetes.controller.status import (
    current_pods,
    failure_message,
    failure_patch,
    mirror_patch,
    not_provisionable_patch,
    processing_patch,
    running_pods,
    success_patch,
    summary_text,
)
from jupyternetes.crd.conditions import (
    SUCCEEDED,
    TEMPLATE_CURRENT,
    condition,
    find_condition,
    stack_is_up,
)
from jupyternetes.crd.labels import FINALIZER
from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.crd.naming import stack_name
from jupyternetes.engine.masking import OPERATOR_LOG_MASK, mask_secrets
from jupyternetes.engine.settings import DEFAULT_SECRET_VARIABLES
from jupyternetes.kube.client import now_rfc3339
from jupyternetes.policy import revisions, rollout, trust
from jupyternetes.policy.rollout import IMMEDIATE, NEXT_START, ROLLOUTS, desired_hash
from jupyternetes.render import exposure, secretvars
from jupyternetes.render.objects import Rendered, render
from jupyternetes.render.placeholders import RenderError
from jupyternetes.render.secretvars import secret_values

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileConfig:
    secret_variables: frozenset[str] = DEFAULT_SECRET_VARIABLES
    # Whatever else changes what the program does (kubeconfig, context, project...): part of the
    # desired hash so changing operator settings re-applies every stack once.
    settings_fingerprint: Mapping[str, Any] = field(default_factory=dict)
    degraded_after: int = 5
    template_retry_seconds: float = 30.0
    # next-start: running servers keep what they were started with until they restart;
    # immediate: every template edit replaces the running pods at once (kernels are lost).
    template_rollout: str = NEXT_START
    # The kinds templates may make besides pods and PVCs, and the RBAC opt-in (policy/trust.py).
    trust_policy: trust.TrustPolicy = field(default_factory=trust.TrustPolicy)
    # A new server's claims and pods are applied by the operator before its first `up`, which
    # takes them over (controller/createahead.py): the pod exists without waiting for the
    # engine.
    create_ahead: bool = True

    def __post_init__(self) -> None:
        if self.template_rollout not in ROLLOUTS:
            raise ValueError(f"template_rollout must be one of {', '.join(ROLLOUTS)}, "
                             f"not {self.template_rollout!r}")



# ---- pure helpers -----------------------------------------------------------------------------


def key_of(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


# ---- the reconciler ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AtRevision:
    """The template object to render, its revision number (None: not known), the rollout mode
    that applies, and why it cannot be used (empty: it can)."""

    template: dict
    number: int | None
    mode: str
    problem: str = ""
    # (reason, message) of TemplateCurrent=False: a revision other than the template's current
    # one (pinned, or kept while a staged rollout has not moved it yet).
    behind: tuple[str, str] | None = None


PodLookup = Callable[[str, str], dict | None]
# A watch cache by key (`namespace/name`): the cached object, or None.
CacheLookup = Callable[[str], dict | None]


class Reconciler:
    def __init__(self, kube: KubePort, engine: EnginePort, config: ReconcileConfig | None = None,
                 pod_lookup: PodLookup | None = None, drift: DriftFlags | None = None,
                 metrics: Metrics | None = None, clock: Callable[[], str] = now_rfc3339,
                 instance_lookup: CacheLookup | None = None,
                 template_lookup: CacheLookup | None = None,
                 revisions: RevisionStore | None = None,
                 waiting: Callable[[], int] | None = None) -> None:
        self.own_writes = noop.OwnWrites()
        # Instances queued for a reconcile worker right now (createahead.worth_it).
        self.waiting = waiting or (lambda: 0)
        self.render_memo = noop.RenderMemo()
        # Status and finalizer writes are recorded: the no-op path waits until the instance
        # cache holds the version this operator wrote (noop.OwnWrites).
        self.kube: KubePort = noop.TrackWrites(kube, self.own_writes)  # type: ignore[assignment]
        self.engine = engine
        self.config = config or ReconcileConfig()
        # The pod informer's cache; None means "no watch": ask the apiserver.
        self.pod_lookup = pod_lookup
        self.drift = drift or DriftFlags()
        self.metrics = metrics
        self.clock = clock
        # The instance and template informers' caches: the no-op path answers from them
        # (noop.py); None: every reconcile reads fresh from the apiserver.
        self.instance_lookup = instance_lookup
        self.template_lookup = template_lookup
        # Template history (ControllerRevisions): pins, staged rollouts, status.templateRevision.
        self.revisions = revisions

    # ---- entry point ------------------------------------------------------------------------

    def reconcile(self, key: str, failures: int = 0) -> Result:
        """`failures`: consecutive failed attempts so far (the queue's count for this key)."""
        if self._unchanged_in_cache(key):
            return Result("unchanged")
        namespace, name = split_key(key)
        obj = self.kube.get_instance(namespace, name)
        if obj is None:
            self.drift.take(key)
            self.render_memo.forget(key)
            # Also dropped at the DELETED event; here too, after any reconcile that set them
            # while the deletion came in (one reconcile per key at a time).
            OPERATOR_LOG_MASK.drop(key)
            return Result("gone")
        try:
            instance = Instance.from_dict(obj, source=key)
        except ModelError as exc:
            return self._invalid_instance(obj, str(exc))
        if instance.deletion_timestamp:
            self.drift.take(key)
            return teardown.delete(self.kube, self.engine, obj, instance, failures=failures,
                                   degraded_after=self.config.degraded_after,
                                   secret_variables=self.config.secret_variables,
                                   metrics=self.metrics, clock=self.clock)
        return self._apply(obj, instance, failures)

    def _unchanged_in_cache(self, key: str) -> bool:
        """The no-op path: nothing to do, judged from the watch caches without a round trip
        (noop.py); False sends the key down the full path with fresh reads."""
        if (self.instance_lookup is None or self.template_lookup is None
                or self.pod_lookup is None or key in self.drift
                or self.own_writes.pending(key)):
            return False
        obj = self.instance_lookup(key)
        if obj is None:
            return False
        ref = (obj.get("spec") or {}).get("template") or {}
        if not isinstance(ref, dict) or not ref.get("name"):
            return False
        namespace = ref.get("namespace") or (obj.get("metadata") or {}).get("namespace")
        config = self.config
        tpl_obj = self.template_lookup(f"{namespace}/{ref['name']}")
        if tpl_obj is None:
            return False
        at = self._at_revision(obj, tpl_obj, cached=True)
        if at.problem or (obj.get("status") or {}).get("templateRevision") != at.number:
            return False  # the full path says so, or records the revision it runs
        return noop.unchanged(
            obj, at.template, secret_variables=frozenset(config.secret_variables),
            settings_fingerprint=config.settings_fingerprint,
            template_rollout=at.mode, get_secret=self.kube.get_secret,
            trust_policy=config.trust_policy, pod_lookup=self.pod_lookup, now=self.clock(),
            key=key, memo=self.render_memo, revision=at.number, behind=at.behind)

    def _at_revision(self, obj: Mapping[str, Any], tpl_obj: dict,
                     cached: bool = False) -> AtRevision:
        """The template an instance renders (policy/revisions.py `wanted`): as it is now, or at
        the revision it is pinned to / the staged rollout moved it to / it keeps running.
        `cached`: from memory only (the no-op path; a revision not in memory is a problem)."""
        strategy = revisions.strategy_of(tpl_obj, self.config.template_rollout)
        mode = strategy if strategy in ROLLOUTS else NEXT_START
        if self.revisions is None:
            return AtRevision(tpl_obj, None, mode)
        number, why = revisions.wanted(obj, tpl_obj, strategy)
        # Records the template's current content (a revision per edit) on the full path.
        current = (self.revisions.cached_current(tpl_obj) if cached
                   else self.revisions.current(tpl_obj))
        if number is None:
            return AtRevision(tpl_obj, current, mode,
                              "not recorded yet" if cached and current is None else "")
        # What an admin or the rollout asked for is applied now; kept/stable ones hold.
        mode = IMMEDIATE if why in ("pinned", "moved") else NEXT_START
        found = (self.revisions.cached_revision(tpl_obj, number) if cached
                 else self.revisions.revision(tpl_obj, number))
        if found is None:
            meta = tpl_obj.get("metadata") or {}
            ref = f"{meta.get('namespace')}/{meta.get('name')}"
            source = {"pinned": f"spec.templateRevision (or the annotation "
                                f"{revisions.PIN_ANNOTATION})",
                      "moved": f"the rollout's annotation {revisions.ROLLOUT_REVISION}"}.get(
                why, "status.templateRevision")
            return AtRevision(tpl_obj, number, mode,
                              f"revision {number} of template {ref} ({source}) does not exist "
                              f"(pruned by revisionHistoryLimit, or never made): `jupyternetes "
                              f"history {ref}` lists the revisions kept; pin one of those or "
                              f"remove the pin")
        if revisions.hash_of(found) == self.revisions.digest(tpl_obj):
            return AtRevision(tpl_obj, number, mode)
        meta = tpl_obj.get("metadata") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        behind = (("Pinned", f"pinned to revision {number} of template {ref}, which renders "
                             "something else now; `jupyternetes rollback --clear` follows the "
                             "template again")
                  if why == "pinned" else
                  ("RolloutPending", f"runs revision {number} of template {ref}; a staged "
                                     f"rollout moves it to the current one in its turn "
                                     f"(`jupyternetes rollout status {ref}`)"))
        return AtRevision(revisions.template_at(tpl_obj, found), number, mode, behind=behind)

    # ---- apply ------------------------------------------------------------------------------

    def _apply(self, obj: dict, instance: Instance, failures: int) -> Result:
        key = key_of(instance.namespace, instance.name)
        status = obj.get("status") or {}
        generation = instance.generation
        tpl_ns, tpl_name = instance.template_namespace, instance.template.name
        tpl_obj = self.kube.get_template(tpl_ns, tpl_name)
        if tpl_obj is None and stack_is_up(status):
            # The server keeps running (no engine call, nothing to render); the status says why
            # it cannot be changed or restarted.
            message = rollout.template_gone_message(tpl_ns, tpl_name, key)
            self._keep_running(obj, instance, status, "TemplateNotFound", message)
            return Result("template-gone", requeue_after=self.config.template_retry_seconds,
                          message=message)
        if tpl_obj is None:
            message = (f"template {tpl_ns}/{tpl_name} (spec.template) not found: create it, or "
                       f"point spec.template at an existing JupyterNotebookTemplate; retrying "
                       f"every {self.config.template_retry_seconds:g}s")
            self._not_provisionable(obj, status, generation, "Pending", "TemplateNotFound",
                                    message)
            return Result("template-missing", requeue_after=self.config.template_retry_seconds,
                          message=message)
        at = self._at_revision(obj, tpl_obj)
        if at.problem:
            self._cannot_apply(obj, instance, status, "Failed", "RevisionNotFound", at.problem,
                               f"{at.problem}. The running server is left as it is.")
            return Result("revision-missing", requeue_after=self.config.template_retry_seconds,
                          message=at.problem)
        tpl_obj = at.template
        try:
            template: Template | None = Template.from_dict(tpl_obj, source=f"{tpl_ns}/{tpl_name}")
        except ModelError:
            template = None  # reported below, with the render errors
        if template is not None:
            try:
                # Before its Secrets are read: a template this namespace may not use reads none.
                trust.check_template_use(template, instance)
            except trust.TrustError as exc:
                return self._refuse(obj, instance, status, exc)
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
                self._cannot_apply(obj, instance, status, "Pending", exc.reason, str(exc),
                                   f"{exc}. The running server is left as it is until then.")
                return Result(exc.reason, failed=True, message=str(exc))
            instance = secretvars.with_variables(instance, secret_vars)
        secret_names = frozenset(self.config.secret_variables) | frozenset(secret_vars)
        # Known before anything can log them (render errors, engine messages, tracebacks).
        OPERATOR_LOG_MASK.set(key, secret_values(instance, secret_names))
        # The Secrets are the instance's own input, like its spec: a changed value is applied
        # now, never held back as a template change (the Secret has no generation of its own).
        secrets_digest = secretvars.variables_digest(secret_vars) if instance.secret_refs else None
        try:
            if template is None:
                template = Template.from_dict(tpl_obj, source=f"{tpl_ns}/{tpl_name}")
            rendered = render(template, instance)
        except (ModelError, RenderError) as exc:
            if rollout.holding(at.mode, status, generation):
                # Under next-start a template edit must not break a running server, even a bad
                # edit.
                message = rollout.template_invalid_message(
                    tpl_ns, tpl_name, rollout.template_generation(tpl_obj),
                    mask_secrets(str(exc), secret_values(instance, secret_names)))
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
        try:
            trust.check_kinds(f"{tpl_ns}/{tpl_name}", rendered.objects(), self.config.trust_policy)
        except trust.TrustError as exc:
            return self._refuse(obj, instance, status, exc)

        digest = desired_hash(rendered, secret_names, self.config.settings_fingerprint)
        tpl_generation = rollout.template_generation(tpl_obj)
        flagged = self.drift.take(key)
        plan = rollout.plan(at.mode, status, generation, digest, secrets_digest)
        drift = False
        if plan.check_pods:
            # Drift = a pod the stack made is gone (deleted out of band, or while we were down).
            # Checked against the pods the stack made, not the new render's names.
            rendered_pods = [(o.entry, o.namespace, o.name) for o in rendered.pods]
            expected = rendered_pods if plan.same_render else running_pods(
                status, instance.namespace, rendered_pods)
            pods = self._live_pods([(ns, name) for _, ns, name in expected], confirm=True)
            missing = [name for _, _, name in expected if pods.get(name) is None]
            if not missing:
                current = ((rollout.kept_running(status, *at.behind, generation, self.clock())
                            if at.behind else
                            rollout.template_current(status, tpl_ns, tpl_name, tpl_generation,
                                                     generation, self.clock(),
                                                     only_if_not_true=True))
                           if plan.same_render else
                           rollout.template_changed(status, key, tpl_ns, tpl_name,
                                                    tpl_generation, generation, self.clock(),
                                                    revision=at.number))
                self._mirror(instance, status, expected, pods, current,
                             revision=at.number if plan.same_render else None)
                if current is not None and current["status"] == "False":
                    self.kube.emit_event(obj, "Normal", current["reason"], current["message"])
                return Result("unchanged" if plan.same_render else "template-pending")
            # A server that lost its pod is restarted anyway: with the current template.
            drift = True
            log.info("instance %s: drift (%s missing%s); refresh + up", key, ", ".join(missing),
                     ", pod deletion seen" if flagged else "", extra={"instance": key})
        # The first `up` of this instance object over a stack that already exists (a
        # force-deleted predecessor's, left behind) must not trust that state: it refreshes
        # (the engine skips the refresh of a stack it has just created).
        first_up = not (status.get("stack") or {}).get("lastUpdate")
        return self._up(obj, instance, status, rendered, digest, failures,
                        refresh=drift or first_up, drift=drift,
                        create_ahead=createahead.worth_it(self.config.create_ahead, first_up,
                                                          drift, self.waiting()),
                        template_gen=tpl_generation, secret_names=secret_names,
                        secrets_digest=secrets_digest, revision=at.number, behind=at.behind)

    # ---- outcomes without an engine call ----------------------------------------------------

    def _refuse(self, obj: dict, instance: Instance, status: Mapping[str, Any],
                exc: trust.TrustError) -> Result:
        """A refusal of the trust model: Provisioned=False (a running server is left as it is,
        TemplateCurrent=False), no engine call; checked again when the template changes and
        every template_retry_seconds (an operator restart with new flags)."""
        self._cannot_apply(obj, instance, status, "Failed", exc.reason, str(exc),
                           f"{exc}. The running server is left as it is.")
        return Result(exc.reason, requeue_after=self.config.template_retry_seconds,
                      message=str(exc))

    def _keep_running(self, obj: dict, instance: Instance, status: Mapping[str, Any],
                      reason: str, message: str) -> None:
        """TemplateCurrent=False (Warning Event once) for a running server the current template
        cannot be applied to; its pods are still mirrored from what the stack made."""
        current = rollout.kept_running(status, reason, message, instance.generation,
                                       self.clock())
        expected = running_pods(status, instance.namespace)
        pods = self._live_pods([(ns, name) for _, ns, name in expected], confirm=True)
        self._mirror(instance, status, expected, pods, current)
        if current is not None:
            self.kube.emit_event(obj, "Warning", reason, message)

    def _cannot_apply(self, obj: dict, instance: Instance, status: Mapping[str, Any],
                      state: str, reason: str, message: str, running_message: str = "") -> None:
        """A running server is left as it is and says why the template is not applied (with
        `running_message` if given); one that is not running is `state`."""
        if stack_is_up(status):
            self._keep_running(obj, instance, status, reason, running_message or message)
        else:
            self._not_provisionable(obj, status, instance.generation, state, reason, message)

    def _not_provisionable(self, obj: dict, status: Mapping[str, Any], generation: int | None,
                           state: str, reason: str, message: str) -> None:
        """Status + Event for template-missing / render errors; silent when already reported."""
        patch = not_provisionable_patch(status, generation, state, reason, message, self.clock())
        if patch is None:
            return  # already said, at this generation: no status churn, no Event spam
        meta = obj.get("metadata") or {}
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

    # ---- up ---------------------------------------------------------------------------------

    def _up(self, obj: dict, instance: Instance, status: Mapping[str, Any], rendered: Rendered,
            digest: str, failures: int, refresh: bool, drift: bool = False,
            create_ahead: bool = False, template_gen: int | None = None,
            secret_names: frozenset[str] | None = None,
            secrets_digest: str | None = None, revision: int | None = None,
            behind: tuple[str, str] | None = None) -> Result:
        key = key_of(instance.namespace, instance.name)
        generation = instance.generation
        stack = stack_name(instance.namespace, instance.name)
        tpl_ref = f"{instance.template_namespace}/{instance.template.name}" + (
            f" (generation {template_gen})" if template_gen is not None else "")
        # Whose objects the names are and what a PVC change would do: before any engine call.
        checked = preflight.check(self.kube, instance, rendered, tpl_ref)
        if checked.refused:  # no engine call
            self._cannot_apply(obj, instance, status, "Failed", checked.refused, checked.message)
            return Result("refused", requeue_after=self.config.template_retry_seconds,
                          message=checked.message)
        if FINALIZER not in instance.finalizers and self.kube.add_finalizer(
                instance.namespace, instance.name) is None:
            return Result("gone")
        # Existing claims that differ from the template go to the engine as they are.
        rendered = checked.rendered or rendered
        processing = processing_patch(status, rendered, stack, generation, drift,
                                      checked.retained, self.clock(), kept=checked.kept)
        patched = self.kube.patch_instance_status(instance.namespace, instance.name, processing)
        if patched is None:
            return Result("gone")
        conditions = (patched.get("status") or {}).get("conditions") or processing["conditions"]
        if create_ahead:
            ahead = createahead.create(self.kube, createahead.wanted(rendered, checked.absent),
                                       instance, key)
            if ahead:
                log.info("instance %s: created ahead of its first up: %s", key,
                         ", ".join(ahead), extra={"instance": key})

        previous_update = (status.get("stack") or {}).get("lastUpdate")
        secrets = secret_values(instance, secret_names or self.config.secret_variables)
        result = edges.run("up", lambda: self.engine.up(
            instance.namespace, instance.name, rendered, secrets, refresh=refresh), key,
            self.metrics)
        pods = self._live_pods([(o.namespace, o.name) for o in rendered.pods], confirm=False)
        now = self.clock()
        if result.result == SUCCEEDED:
            exposed = exposure.exposure(
                exposure.secret_labels(rendered.objects(), secrets))
            patch = success_patch(
                rendered, result, stack=stack, generation=generation, digest=digest,
                conditions=conditions, pods=current_pods(pods, result.outputs or {}),
                template_current=condition(
                    TEMPLATE_CURRENT, False, *behind, generation, conditions, now)
                if behind else rollout.template_current(
                    {"conditions": conditions}, instance.template_namespace,
                    instance.template.name, template_gen, generation, now),
                template_gen=template_gen, previous_update=previous_update,
                variables_from_hash=secrets_digest, exposed=exposed, now=now)
            if revision is not None:
                patch["templateRevision"] = revision
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)
            was = find_condition({"conditions": conditions}, exposure.SECRET_EXPOSED)
            if exposed[0] and (was or {}).get("message") != exposed[2]:
                self.kube.emit_event(obj, "Warning", exposure.SECRET_EXPOSED, exposed[2])
            self.kube.emit_event(obj, "Normal", "Provisioned",
                                 f"stack {stack}: up succeeded in {result.engine_seconds:.1f}s "
                                 f"({summary_text(result.change_summary)})"
                                 + ("; drift repaired" if drift else "")
                                 + "".join(f"; {note}" for note in checked.notes))
            return Result("provisioned")
        attempts = failures + 1
        degraded = attempts >= self.config.degraded_after
        patch = failure_patch(
            rendered, result, stack=stack, generation=generation, conditions=conditions,
            pods=pods, attempts=attempts, degraded=degraded, previous_update=previous_update,
            extra=rollout.not_applied(status, digest, tpl_ref, generation, conditions, now),
            now=now)
        self.kube.patch_instance_status(instance.namespace, instance.name, patch)
        message = failure_message(stack, result.message, attempts)
        self.kube.emit_event(obj, "Warning", "ProvisionFailed", message)
        if self.metrics:
            self.metrics.failure("engine")
        return Result("up-failed", failed=True, degraded=degraded, message=message)

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
                extra_condition: dict[str, Any] | None = None,
                revision: int | None = None) -> None:
        """Patch only the pod entries and the Ready condition (plus `extra_condition`), and only
        if they changed. `expected`: (entry, namespace, name) of the pods to mirror."""
        patch = mirror_patch(status, expected, pods, instance.generation, extra_condition,
                             self.clock())
        if revision is not None and status.get("templateRevision") != revision:
            # A server started before revisions were kept learns the number of what it runs.
            patch = {**(patch or {}), "templateRevision": revision}
        if patch:
            self.kube.patch_instance_status(instance.namespace, instance.name, patch)
