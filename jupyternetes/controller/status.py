"""The instance status contract and its builders (pure: plain data in, merge-patch dicts out).

The operator writes `status` of a JupyterNotebookInstance as JSON merge patches (RFC 7386): a
key left out keeps its stored value, an explicit `None` (null) clears it. So the contract is
plain dicts, stated here once; it matches `crds/jupyternotebookinstances.kadense.io.yaml`:

    pods / pvcs / otherResources: {entry: {resourceName, state, errorMessage}}
        pods' entries also: podAddress, portNumber, phase, ready, reason (podstatus.py)
    podsProvisioned / pvcsProvisioned / otherResourcesProvisioned: one of PROVISIONED_STATES
    observedGeneration: the instance generation the status describes
    conditions: [{type, status: True|False|Unknown, reason, message, observedGeneration,
                  lastTransitionTime}]   (types: CONDITION_TYPES, plus SecretExposed)
    retainedPvcs: [{name, entry, reason}]   (preflight.py)
    templateRevision: the template revision the last successful update rendered
                      (ControllerRevision number; reconcile.py, policy/revisions.py)
    stack: {name, desiredHash, variablesFromHash, templateGeneration,
            lastUpdate: {result, startedAt, finishedAt, changeSummary: {op: count}, message,
                         replica}}

Builders take the time as `now` and return the patch; the Reconciler decides which to write.
Pod fields come from `podstatus`, merge-patch replacement from `statuspatch`, the merge of
conditions into the apiserver's current list from `jupyternetes.operator.statusmerge` (kube).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jupyternetes.crd import podstatus
from jupyternetes.crd.conditions import Condition, condition, find_condition, merge_conditions
from jupyternetes.policy import pvc
from jupyternetes.render.exposure import SECRET_EXPOSED
from jupyternetes.render.objects import Rendered

GROUPS = ("pvcs", "pods", "otherResources")
PROVISIONED_KEY = {"pvcs": "pvcsProvisioned", "pods": "podsProvisioned",
                   "otherResources": "otherResourcesProvisioned"}
PROVISIONED_STATES = ("Pending", "Processing", "Completed", "Failed")

Pods = Mapping[str, dict | None]


# ---- reading the status -----------------------------------------------------------------------


def running_pods(status: Mapping[str, Any], namespace: str,
                 fallback: Iterable[tuple[str, str, str]] = ()) -> list[tuple[str, str, str]]:
    """(entry, namespace, name) of the pods the last successful `up` made, from the status
    contract; what a new render would name may differ (a template edit can rename entries)."""
    found = [(entry, namespace, value.get("resourceName"))
             for entry, value in sorted((status.get("pods") or {}).items())
             if isinstance(value, Mapping) and value.get("resourceName")]
    return found or list(fallback)


# ---- engine results ---------------------------------------------------------------------------


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


def failure_message(stack: str, engine_message: str, attempts: int) -> str:
    return (f"stack {stack}: up failed (attempt {attempts}): "
            f"{engine_message or 'no error message from the engine'}")


def last_update(result: Any, message: str) -> dict[str, Any]:
    """`stack.lastUpdate` of an engine result (an OperationResult-like object)."""
    update = {"result": result.result, "startedAt": result.started_at,
              "finishedAt": result.finished_at,
              "changeSummary": dict(result.change_summary or {}), "message": message,
              # The operator replica that ran it (several replicas share the instances).
              "replica": getattr(result, "replica", None)}
    return {k: v for k, v in update.items() if v is not None}


def pod_entry(uid: str | None, pod: dict | None) -> dict[str, Any]:
    """Mirror fields right after `up`; a pod from before a replacement does not count."""
    if pod is not None and (uid is None or (pod.get("metadata") or {}).get("uid") == uid):
        fields = podstatus.pod_fields(pod)
        fields.pop("resourceName", None)
        return fields
    return {"phase": None, "podAddress": None, "ready": False, "reason": None}


def current_pods(pods: Pods, outputs: Mapping[str, Any]) -> dict[str, dict | None]:
    """`pods` without cached pods from before a replacement (their uid is not the new one's)."""
    uids = {out.get("name"): out.get("uid") for out in output_objects(outputs).values()}
    return {name: pod if pod is None or not uids.get(name)
            or (pod.get("metadata") or {}).get("uid") == uids[name] else None
            for name, pod in pods.items()}


# ---- patches ----------------------------------------------------------------------------------


def processing_patch(status: Mapping[str, Any], rendered: Rendered, stack: str,
                     generation: int | None, drift: bool, retained: list | None,
                     now: str, kept: Sequence[str] = ()) -> dict[str, Any]:
    """Before `up`: every rendered entry Processing, entries the template dropped cleared;
    `PVCsKept` True with `kept` (preflight: existing claims used as they are, not as the
    template says), False once a claim that differed no longer does (absent until then)."""
    conditions = status.get("conditions") or []
    patch: dict[str, Any] = {PROVISIONED_KEY[g]: ("Processing" if objs else "Completed")
                             for g, objs in rendered_groups(rendered).items()}
    for group, objs in rendered_groups(rendered).items():
        patch[group] = {o.entry: {"resourceName": o.name, "state": "Processing"} for o in objs}
    for group, nulls in removed_entries(status, rendered).items():
        patch.setdefault(group, {}).update(nulls)
    updates = [condition(
        "Provisioned", False, "Provisioning",
        f"stack {stack}: {'refresh and ' if drift else ''}up in progress", generation,
        conditions, now)]
    if kept or find_condition(status, pvc.KEPT_CONDITION):
        updates.append(condition(
            pvc.KEPT_CONDITION, bool(kept), pvc.KEPT_REASON if kept else "AsTemplated",
            " ".join(kept) if kept else "every existing claim is as the template says",
            generation, conditions, now))
    patch["conditions"] = merge_conditions(conditions, updates)
    patch["stack"] = {"name": stack}
    if retained or status.get("retainedPvcs"):
        patch["retainedPvcs"] = retained or None
    return patch


def success_patch(rendered: Rendered, result: Any, *, stack: str, generation: int | None,
                  digest: str, conditions: list, pods: Pods, template_current: Condition,
                  template_gen: int | None, previous_update: Mapping[str, Any] | None,
                  variables_from_hash: str | None, exposed: tuple[bool, str, str],
                  now: str) -> dict[str, Any]:
    """After a successful `up`: entries Completed (pods mirrored), Provisioned=True, the stack
    record replacing the previous one, SecretExposed as `exposed` (status, reason, message)."""
    outputs = output_objects(result.outputs or {})
    patch: dict[str, Any] = {}
    for group, objs in rendered_groups(rendered).items():
        entries: dict[str, Any] = {}
        for o in objs:
            out = outputs.get((group, o.entry), {})
            entry: dict[str, Any] = {"resourceName": out.get("name") or o.name,
                                     "state": "Completed", "errorMessage": None}
            if group == "pods":
                entry.update(pod_entry(out.get("uid"), pods.get(o.name)))
            entries[o.entry] = entry
        patch[group] = entries
        patch[PROVISIONED_KEY[group]] = "Completed"
    ready, reason, message = podstatus.readiness_summary([o.name for o in rendered.pods], pods)
    patch["conditions"] = merge_conditions(conditions, [
        condition("Ready", ready, reason, message, generation, conditions, now),
        condition("Provisioned", True, "StackUp",
                  f"stack {stack} is up ({summary_text(result.change_summary)})",
                  generation, conditions, now),
        condition("Degraded", False, "StackUp", "the last stack update succeeded",
                  generation, conditions, now),
        template_current,
    ])
    patch["conditions"] = merge_conditions(patch["conditions"], [condition(
        SECRET_EXPOSED, *exposed, generation, conditions, now)])
    patch["observedGeneration"] = generation
    patch["stack"] = {"name": stack, "desiredHash": digest, "templateGeneration": template_gen,
                      "lastUpdate": replacing(previous_update,
                                              last_update(result, result.message or "")),
                      "variablesFromHash": variables_from_hash}
    return patch


def failure_patch(rendered: Rendered, result: Any, *, stack: str, generation: int | None,
                  conditions: list, pods: Pods, attempts: int, degraded: bool,
                  previous_update: Mapping[str, Any] | None,
                  extra: Iterable[Condition] = (), now: str) -> dict[str, Any]:
    """After a failed `up`: the entries it names Failed, the groups before the first failing one
    Completed, later ones Pending; Provisioned=False, Degraded after repeated failures; the
    stack's lastUpdate shows this failure only (never the previous success's figures)."""
    message = failure_message(stack, result.message, attempts)
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
                                    "errorMessage": named.get((group, o.entry), result.message)}
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
    extra = list(extra)
    if extra:
        patch["conditions"] = merge_conditions(patch["conditions"], extra)
    patch["observedGeneration"] = generation
    patch["stack"] = {"name": stack, "lastUpdate": replacing(previous_update,
                                                             last_update(result, message))}
    return patch


def not_provisionable_patch(status: Mapping[str, Any], generation: int | None, state: str,
                            reason: str, message: str, now: str) -> dict[str, Any] | None:
    """Template missing, render error, invalid instance: every group `state`, Provisioned and
    Ready False. None when the status already says this at this generation (no churn)."""
    previous = find_condition(status, "Provisioned")
    if (previous and previous.get("reason") == reason and previous.get("message") == message
            and status.get("observedGeneration") == generation):
        return None
    conditions = status.get("conditions") or []
    patch: dict[str, Any] = {key: state for key in PROVISIONED_KEY.values()}
    patch["conditions"] = merge_conditions(conditions, [
        condition("Provisioned", False, reason, message, generation, conditions, now),
        condition("Ready", False, reason, message, generation, conditions, now),
    ])
    patch["observedGeneration"] = generation
    return patch


def mirror_patch(status: Mapping[str, Any], expected: Iterable[tuple[str, str, str]],
                 pods: Pods, generation: int | None, extra_condition: Condition | None,
                 now: str) -> dict[str, Any]:
    """Only the pod entries and the Ready condition (plus `extra_condition`) that changed; empty
    when nothing did. `expected`: (entry, namespace, name) of the pods to mirror."""
    expected = list(expected)
    patch: dict[str, Any] = {}
    stored = status.get("pods") or {}
    for entry, _, name in expected:
        pod = pods.get(name)
        wanted = podstatus.pod_fields(pod) if pod is not None else (
            podstatus.missing_pod_fields(name))
        changed = podstatus.changed_fields(stored.get(entry), wanted)
        if changed:
            patch.setdefault("pods", {})[entry] = changed
    conditions = status.get("conditions") or []
    updates = [extra_condition] if extra_condition else []
    ready, reason, message = podstatus.readiness_summary([name for _, _, name in expected], pods)
    previous = find_condition(status, "Ready")
    if (previous is None or previous.get("status") != ("True" if ready else "False")
            or previous.get("message") != message):
        updates.append(condition("Ready", ready, reason, message, generation, conditions, now))
    if updates:
        patch["conditions"] = merge_conditions(conditions, updates)
    return patch


def destroy_failed_patch(status: Mapping[str, Any], result: Any, *, stack: str, message: str,
                         stuck: bool, stuck_reason: str, generation: int | None,
                         now: str) -> dict[str, Any]:
    """A failed `destroy`: the stack's lastUpdate says so; Degraded once it is stuck."""
    previous = (status.get("stack") or {}).get("lastUpdate")
    patch: dict[str, Any] = {"stack": {"name": stack, "lastUpdate": replacing(
        previous, last_update(result, message))}}
    if stuck:
        conditions = status.get("conditions") or []
        patch["conditions"] = merge_conditions(conditions, [condition(
            "Degraded", True, stuck_reason, message, generation, conditions, now)])
    return patch


def replacing(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that turns the stored `old` into exactly `new`: every key of `old` that
    `new` lacks is nulled, also inside nested objects both have."""
    patch: dict[str, Any] = {key: None for key in (old or {}) if key not in new}
    for key, value in new.items():
        before = (old or {}).get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = replacing(before, value)
        else:
            patch[key] = value
    return patch
