"""Conditions of an instance's status, and the words its stack result uses (pure).

Kubernetes-style conditions (`type`, `status` True/False, `reason`, `message`,
`observedGeneration`, `lastTransitionTime`): the operator writes them, the spawner, the rollout
policy and the admin commands read them. The rest of the status contract is
`controller/status.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUCCEEDED, FAILED = "succeeded", "failed"
TEMPLATE_CURRENT = "TemplateCurrent"
# Existing claims used as they are, not as the template says (policy/pvc.py); only present on
# instances that had such a claim.
PVCS_KEPT = "PVCsKept"
# The operator's own condition types, in the order the status lists them.
CONDITION_TYPES = ("Ready", "Provisioned", "Degraded", TEMPLATE_CURRENT, PVCS_KEPT)

Condition = dict[str, Any]

# Refusals before any engine call (controller/preflight.py); waiting does not end them, an admin
# does, so the spawner fails a start on them at once. PVC_CHANGE_REFUSED is what operators
# before "existing claims are kept as they are" (policy/pvc.py) said.
OWNERSHIP_CONFLICT = "OwnershipConflict"
PREFLIGHT_FORBIDDEN = "PreflightForbidden"
PVC_CHANGE_REFUSED = "PVCChangeRefused"


def condition(type_: str, status: bool, reason: str, message: str, generation: int | None,
              previous: Iterable[Mapping[str, Any]], now: str) -> Condition:
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
                     updates: Iterable[Condition]) -> list[Condition]:
    """`previous` with same-typed conditions replaced by `updates`. Of `previous` only the
    operator's own types are carried: the status write merges this list by type into the
    apiserver's current one (statusmerge), where other writers' conditions are kept as they
    are now, not as this older read saw them."""
    order = {type_: index for index, type_ in enumerate(CONDITION_TYPES)}
    result = {c.get("type"): dict(c) for c in previous if c.get("type") in order}
    for cond in updates:
        result[cond["type"]] = cond
    return sorted(result.values(), key=lambda c: (order.get(c.get("type"), 9), c.get("type")))


def find_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def says(status: Mapping[str, Any], type_: str, value: str, reason: str, message: str) -> bool:
    """The status already has exactly this condition (no rewrite, no repeated Event)."""
    previous = find_condition(status, type_)
    return (previous is not None and previous.get("status") == value
            and previous.get("reason") == reason and previous.get("message") == message)


def stack_is_up(status: Mapping[str, Any]) -> bool:
    """The last stack operation succeeded: the server exists as `status.stack` describes."""
    stack = status.get("stack") or {}
    return bool(stack.get("desiredHash")) and (stack.get("lastUpdate") or {}).get(
        "result") == SUCCEEDED
