"""The staged rollout on the apiserver: read a template's instances, ask the judge
(policy/staged.py) for the next step, move instances by annotating them, and say where the
rollout stands in the template's status (`status.rollout`, the `RolloutHalted` condition).

An admin drives it with annotations on the template (what `jupyternetes rollout ...` writes, so
`kubectl annotate` alone does the same):

- `jupyternetes.kadense.io/rollout-paused: "true"`: nothing moves (pause); remove it to resume;
- `jupyternetes.kadense.io/rollout-resumed: "N"`: the canary pause of revision N is over;
- `jupyternetes.kadense.io/rollout-approved: "N"`: revision N may roll out (requireApproval).

A moved instance carries `jupyternetes.kadense.io/rollout-revision: "N"` (and when, as
`rollout-moved-at`, epoch seconds); the reconciler renders revision N for it
(policy/revisions.py `wanted`). Runs in the template status thread, every few seconds for a
template whose rollout is under way, by the replica that writes template status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from jupyternetes.crd.conditions import condition, find_condition
from jupyternetes.crd.labels import LABEL_PREFIX, annotations_of
from jupyternetes.policy import revisions, staged

log = logging.getLogger(__name__)

PAUSED = f"{LABEL_PREFIX}/rollout-paused"
RESUMED = f"{LABEL_PREFIX}/rollout-resumed"
APPROVED = f"{LABEL_PREFIX}/rollout-approved"
ROLLOUT_HALTED = "RolloutHalted"
MAX_LISTED = 20  # failed users named in the condition message


def _number(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def control_of(tpl_obj: Mapping[str, Any]) -> staged.Control:
    annotations = annotations_of(tpl_obj)
    paused = str(annotations.get(PAUSED, "")).strip().lower() == "true"
    return staged.Control(paused=paused, resumed=_number(annotations.get(RESUMED)),
                          approved=_number(annotations.get(APPROVED)))


def state_of(tpl_obj: Mapping[str, Any]) -> staged.State:
    rollout = (tpl_obj.get("status") or {}).get("rollout") or {}
    paused_at = rollout.get("canaryPausedAt")
    return staged.State(revision=_number(rollout.get("revision")),
                        stable=_number(rollout.get("stableRevision")),
                        canary_paused_at=float(paused_at) if isinstance(
                            paused_at, int | float) else None)


def member_of(obj: Mapping[str, Any]) -> staged.Member:
    """How the rollout sees one instance (policy/staged.py Member)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    annotations = annotations_of(obj)
    runs = _number(status.get("templateRevision"))
    assigned = _number(annotations.get(revisions.ROLLOUT_REVISION))
    moved_at = _epoch_or_number(annotations.get(revisions.ROLLOUT_MOVED_AT))
    ready_cond = find_condition(status, "Ready") or {}
    ready = ready_cond.get("status") == "True" and (assigned is None or runs == assigned)
    failed, message = False, ""
    for type_, bad in (("Degraded", "True"), ("Provisioned", "False")):
        cond = find_condition(status, type_) or {}
        if cond.get("status") != bad or cond.get("reason") in ("Provisioning", "Processing"):
            continue
        since = _epoch(cond.get("lastTransitionTime"))
        # A failure from before the move (an undo moving a failed server back) is not one.
        if moved_at is None or since is None or since >= moved_at - 1:
            failed, message = True, str(cond.get("message") or cond.get("reason") or "")
            break
    if not failed and not ready and ready_cond.get("message"):
        message = str(ready_cond.get("message"))
    labels = meta.get("labels") or {}
    return staged.Member(
        key=f"{meta.get('namespace')}/{meta.get('name')}", runs=runs, assigned=assigned,
        moved_at=moved_at, pinned=revisions.pinned(obj) is not None, ready=ready,
        failed=failed and assigned is not None, message=message,
        labels={str(k): str(v) for k, v in labels.items()})


def _epoch_or_number(value: Any) -> float | None:
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return _epoch(value)


def rollout_status(decision: staged.Decision, previous: Mapping[str, Any] | None,
                   now: str) -> dict[str, Any]:
    """status.rollout and status.conditions (RolloutHalted) for a decision."""
    rollout: dict[str, Any] = {
        "revision": decision.target, "phase": decision.phase, "updated": decision.updated,
        "total": decision.total, "message": decision.message,
        "failed": [{"instance": key, "message": message}
                   for key, message in decision.failed[:MAX_LISTED]],
        "stableRevision": decision.stable, "pendingRevision": decision.pending,
        "canaryPausedAt": decision.canary_paused_at,
    }
    halted = decision.phase == staged.HALTED
    if halted:
        names = ", ".join(f"{key} ({message})" for key, message in decision.failed[:MAX_LISTED])
        more = len(decision.failed) - MAX_LISTED
        message = f"{decision.message}: {names}" + (f" and {more} more" if more > 0 else "")
        if decision.stable:
            message += (f". `jupyternetes rollout undo` brings them back to revision "
                        f"{decision.stable}")
    else:
        message = f"the rollout to revision {decision.target} is {decision.phase}"
    previous_conditions = list((previous or {}).get("conditions") or [])
    cond = condition(ROLLOUT_HALTED, halted, staged.HALTED if halted else decision.phase,
                     message, None, previous_conditions, now)
    return {"rollout": rollout, "conditions": [cond]}


class RolloutDriver:
    """`move(namespace, name, annotations)` patches an instance's annotations (fenced);
    `preview(tpl_obj, revision)` the fleet preview summary of a pending revision (or None)."""

    def __init__(self, move: Callable[[str, str, dict], Any],
                 clock: Callable[[], float] = time.time,
                 preview: Callable[[Mapping[str, Any], int], dict | None] | None = None) -> None:
        self.move = move
        self.clock = clock
        self.preview = preview
        self._previews: dict[tuple[str, int], dict | None] = {}
        self.moves = 0

    def step(self, tpl_obj: Mapping[str, Any], current: int | None,
             instances: Sequence[Mapping[str, Any]], now: str) -> dict[str, Any]:
        """One step for a staged template: moves instances, returns the status additions."""
        try:
            strategy = staged.parse_strategy((tpl_obj.get("spec") or {}).get("rollout"))
        except staged.StrategyError as exc:
            return {"rollout": {"phase": "Invalid", "message": str(exc)}}
        if current is None:
            return {}
        decision = staged.decide(current, [member_of(o) for o in instances], strategy,
                                 control_of(tpl_obj), state_of(tpl_obj), self.clock())
        stamp = str(int(self.clock()))
        for key in decision.move:
            namespace, _, name = key.partition("/")
            self.move(namespace, name, {revisions.ROLLOUT_REVISION: str(decision.target),
                                        revisions.ROLLOUT_MOVED_AT: stamp})
            self.moves += 1
        if decision.move:
            meta = tpl_obj.get("metadata") or {}
            log.info("template %s/%s: rollout to revision %d moves %d instance(s): %s",
                     meta.get("namespace"), meta.get("name"), decision.target,
                     len(decision.move), ", ".join(decision.move[:10]))
        result = rollout_status(decision, tpl_obj.get("status"), now)
        if decision.pending is not None and self.preview is not None:
            uid = str((tpl_obj.get("metadata") or {}).get("uid"))
            cache_key = (uid, decision.pending)
            if cache_key not in self._previews:
                self._previews[cache_key] = self.preview(tpl_obj, decision.pending)
            if self._previews[cache_key] is not None:
                result["rollout"]["preview"] = self._previews[cache_key]
        return result

    def under_way(self, tpl_obj: Mapping[str, Any]) -> bool:
        """A staged template whose rollout needs ticks (deadlines, pauseSeconds)."""
        rollout = (tpl_obj.get("status") or {}).get("rollout") or {}
        return rollout.get("phase") not in (staged.COMPLETE, staged.HALTED, "Invalid")


def pending_preview(tpl_obj: Mapping[str, Any], store: Any, pending: int,
                    instances: Sequence[Mapping[str, Any]],
                    get_secret: Callable[[str, str], dict | None],
                    policy: Any) -> dict[str, Any] | None:
    """The fleet preview (admin/fleet.py, the classifier `jupyternetes preview --template`
    uses) of moving the instances from what they run to revision `pending` (a pinned one stays
    at its pin): counts per outcome and the instances whose render fails, for the admin to
    approve what they saw. An instance runs what its revision renders
    (status.templateRevision), so the baseline is that render."""
    from jupyternetes.admin import fleet
    from jupyternetes.admin.fleetpreview import plan_fleet
    from jupyternetes.crd.model import Template

    meta = tpl_obj.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    groups: dict[tuple[int | None, int], list[dict[str, Any]]] = {}
    for obj in instances:
        runs = _number((obj.get("status") or {}).get("templateRevision"))
        goes = revisions.pinned(obj) or pending
        groups.setdefault((runs, goes), []).append(dict(obj))
    secrets: dict[tuple[str, str], Any] = {}
    for obj in instances:
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        for item in (obj.get("spec") or {}).get("variablesFrom") or []:
            name = ((item or {}).get("secretRef") or {}).get("name")
            if name and (ns, name) not in secrets:
                secrets[(ns, name)] = get_secret(ns, name)
    summary = fleet.FleetSummary(ref)
    for (runs, goes), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        proposed_rev = store.revision(tpl_obj, goes)
        if proposed_rev is None:
            continue
        proposed = Template.from_dict(revisions.template_at(tpl_obj, proposed_rev), ref)
        running_rev = store.revision(tpl_obj, runs) if runs is not None else None
        live_obj = revisions.template_at(tpl_obj, running_rev) if running_rev else dict(tpl_obj)
        # The baseline is what revision `runs` renders: a generation of its own stands for it.
        stand_in = -(runs or 0) - 1
        live = Template.from_dict({**live_obj, "metadata": {**meta, "generation": stand_in}},
                                  ref)
        for obj in group:
            status = obj.get("status") or {}
            if running_rev is not None:
                obj["status"] = {**status, "stack": {**(status.get("stack") or {}),
                                                     "templateGeneration": stand_in}}
        summary.plans.extend(plan_fleet(ref, live, proposed, group, None, {}, secrets,
                                        policy=policy).plans)
    counts = {k: v for k, v in summary.counts().items() if v}
    errors = sorted(p.key for p in summary.plans if p.outcome == fleet.RENDER_ERROR)
    return {"revision": pending, "instances": len(summary.plans), "counts": counts,
            "renderErrors": errors[:MAX_LISTED]}
