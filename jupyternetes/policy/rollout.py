"""Template rollout decisions (pure): when a changed render reaches a server that is running.

Under `next-start` (KubeSpawner semantics) a running server keeps what it was started with
until it restarts; the instance says so with `TemplateCurrent=False` (TemplateChanged,
SettingsChanged, TemplateNotFound, TemplateInvalid, a missing Secret, a refused preflight).
Under `immediate` every changed render is applied at once. The functions here decide and build
the TemplateCurrent condition; the Reconciler acts (mirror, `up`, Events).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.conditions import (
    TEMPLATE_CURRENT,
    condition,
    find_condition,
    says,
    stack_is_up,
)
from jupyternetes.render.objects import Rendered

# Template rollout policies: when a template edit reaches servers that are already running.
NEXT_START, IMMEDIATE = "next-start", "immediate"
ROLLOUTS = (NEXT_START, IMMEDIATE)


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


def template_generation(tpl_obj: Mapping[str, Any]) -> int | None:
    generation = (tpl_obj.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else None


def holding(rollout: str, status: Mapping[str, Any], generation: int | None) -> bool:
    """A running server started from the instance's current spec that a template edit must not
    break (even a bad edit): next-start only."""
    return (rollout == NEXT_START and stack_is_up(status)
            and status.get("observedGeneration") == generation)


@dataclass(frozen=True)
class Plan:
    """What to do with a render. `check_pods`: no `up` unless a pod the stack made is gone;
    `same_render`: the running server already runs this render (else next-start holds it)."""

    check_pods: bool
    same_render: bool


def plan(rollout: str, status: Mapping[str, Any], generation: int | None, digest: str,
         variables_from_hash: str | None) -> Plan:
    stack = status.get("stack") or {}
    # The server is up as the instance's current spec asked; only the template (or the
    # operator's settings) may have moved since.
    settled = (stack_is_up(status) and status.get("observedGeneration") == generation
               and stack.get("variablesFromHash") == variables_from_hash)
    same_render = stack.get("desiredHash") == digest
    hold = not same_render and rollout == NEXT_START
    return Plan(check_pods=settled and (same_render or hold), same_render=same_render)


def template_current(status: Mapping[str, Any], tpl_ns: str, tpl_name: str,
                     tpl_generation: int | None, generation: int | None, now: str,
                     only_if_not_true: bool = False) -> dict[str, Any] | None:
    """TemplateCurrent=True; None when `only_if_not_true` and it already says so."""
    previous = find_condition(status, TEMPLATE_CURRENT)
    if only_if_not_true and previous is not None and previous.get("status") == "True":
        return None
    gen = f" generation {tpl_generation}" if tpl_generation is not None else ""
    return condition(TEMPLATE_CURRENT, True, "TemplateApplied",
                     f"the server runs what template {tpl_ns}/{tpl_name}{gen} renders",
                     generation, status.get("conditions") or [], now)


def template_changed(status: Mapping[str, Any], ref: str, tpl_ns: str, tpl_name: str,
                     tpl_generation: int | None, generation: int | None,
                     now: str, revision: int | None = None) -> dict[str, Any] | None:
    """TemplateCurrent=False for a running server whose template moved (next-start); None
    when the condition already says exactly this (the caller's Event goes out only once).
    `ref`: namespace/name of the instance."""
    started = ((status.get("stack") or {}).get("templateGeneration"))
    if tpl_generation is not None and started is not None and started == tpl_generation:
        reason = "SettingsChanged"
        what = (f"the operator's settings (or version) now render template {tpl_ns}/"
                f"{tpl_name} generation {tpl_generation} differently than when this server "
                "started")
    else:
        reason = "TemplateChanged"
        now_gen = f"generation {tpl_generation}" if tpl_generation is not None else "edited"
        if revision is not None:
            now_gen += f", revision {revision}"
        was = f"generation {started}" if started is not None else "an earlier version"
        what = (f"template {tpl_ns}/{tpl_name} changed ({now_gen}; this server was started "
                f"with {was})")
    message = (f"{what}. The running server is left as it is (--template-rollout "
               f"next-start); it gets the new version when it restarts: stop and start the "
               f"server in JupyterHub (the spawner deletes and recreates this instance). See "
               f"the difference with `jupyternetes preview {ref}`.")
    return kept_running(status, reason, message, generation, now)


def kept_running(status: Mapping[str, Any], reason: str, message: str, generation: int | None,
                 now: str) -> dict[str, Any] | None:
    """TemplateCurrent=False (`reason`, `message`) for a running server left as it is; None when
    the condition already says exactly this."""
    if says(status, TEMPLATE_CURRENT, "False", reason, message):
        return None
    return condition(TEMPLATE_CURRENT, False, reason, message, generation,
                     status.get("conditions") or [], now)


def not_applied(status: Mapping[str, Any], digest: str, tpl_ref: str, generation: int | None,
                conditions: list, now: str) -> list[dict[str, Any]]:
    """After a failed `up`: TemplateCurrent=False when that update was to apply a new render
    (template edit, rollout); nothing when the render was the one already running."""
    if (status.get("stack") or {}).get("desiredHash") == digest:
        return []
    return [condition(
        TEMPLATE_CURRENT, False, "UpdateFailed",
        f"template {tpl_ref} is not applied: the stack update failed (see Provisioned); "
        "the server may still run what an earlier template version rendered",
        generation, conditions, now)]


def template_gone_message(tpl_ns: str, tpl_name: str, ref: str) -> str:
    return (f"template {tpl_ns}/{tpl_name} (spec.template) was deleted; the running "
            f"server is left as it is, but it cannot be updated or repaired, and a "
            f"restart will fail until the template exists again (recreate it, or point "
            f"spec.template of {ref} at an existing JupyterNotebookTemplate). Deleting "
            f"the instance still cleans up.")


def template_invalid_message(tpl_ns: str, tpl_name: str, tpl_generation: int | None,
                             error: str) -> str:
    return (f"template {tpl_ns}/{tpl_name} generation {tpl_generation} cannot be applied to "
            f"this server: {error}. The running server is left as it is; fix the template "
            "before it restarts, or the restart will fail.")
