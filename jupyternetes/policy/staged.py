"""The staged rollout (pure): which of a template's instances move to its new revision next, and
when the rollout stops by itself.

The rule, as an admin reads it (template `spec.rollout`, `strategy: staged`):

1. The rollout goes to the template's current revision; with `requireApproval` it goes there
   only once an admin approved that revision number (`approved`). Until then it stays at the
   revision it went to before, and says `AwaitingApproval`. (A template's first revision needs
   no approval: there is nothing running to protect.)
2. Pinned instances are passed by: they run their pinned revision whatever the rollout does.
3. A moved instance has failed when it ends Degraded (or its update failed) at the target, or
   when it is not Ready `readyDeadlineSeconds` after it was moved. When `maxFailures` moved
   instances have failed the rollout halts: nothing moves any more, the template says
   `RolloutHalted` with the failing users and their messages, until the revision changes
   (`rollout undo`, a fixed edit).
4. Paused by an admin (`rollout pause`): nothing moves.
5. Canary (`canary.selector` labels, or `canary.percent` of the instances, first by name): the
   canary instances move first; once they all run the target and are Ready the rollout pauses
   until an admin resumes it for this revision (`rollout resume`), or `pauseSeconds` passed.
6. At most `maxUnavailable` (a count, or a percent of the instances, rounded down, at least 1)
   running servers are unavailable (not Ready) at once: each step moves ready servers only
   while the number of unavailable ones stays within it. Servers that are not Ready anyway
   (still starting, or broken) move without counting against it: moving them cannot make
   availability worse, and it is how `undo` brings failed users back at once.
7. Blast radius: until `maxFailures` moved servers are Ready at the target (the revision is
   proven), at most `maxFailures` minus those failed already are moved and not Ready at once
   (servers that never ran do not count),
   so a broken revision halts having failed at most `maxFailures` users, whatever
   `maxUnavailable` allows.
8. Complete: every instance not pinned runs the target and is Ready; the target becomes the
   stable revision, the one a server that starts meanwhile gets in the next rollout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROGRESSING, PAUSED, CANARY_PAUSED = "Progressing", "Paused", "CanaryPaused"
HALTED, AWAITING_APPROVAL, COMPLETE = "Halted", "AwaitingApproval", "Complete"

DEFAULT_MAX_UNAVAILABLE: int | str = 1
DEFAULT_MAX_FAILURES = 1
DEFAULT_READY_DEADLINE = 600.0
_PERCENT = re.compile(r"^\s*(\d{1,3})\s*%\s*$")


class StrategyError(ValueError):
    """spec.rollout that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Strategy:
    max_unavailable: int | str = DEFAULT_MAX_UNAVAILABLE
    max_failures: int = DEFAULT_MAX_FAILURES
    ready_deadline: float = DEFAULT_READY_DEADLINE
    canary_selector: Mapping[str, str] | None = None
    canary_percent: int | None = None
    pause_seconds: float | None = None
    require_approval: bool = False


@dataclass(frozen=True)
class Member:
    """One instance of the template, as the rollout sees it."""

    key: str
    runs: int | None             # the revision its last successful update applied
    assigned: int | None = None  # the revision the rollout moved it to (None: not moved)
    moved_at: float | None = None
    pinned: bool = False
    ready: bool = False
    failed: bool = False         # Degraded, or its last update failed
    message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def at(self, revision: int) -> bool:
        """It was moved to `revision`, or runs it without having been moved."""
        return self.assigned == revision or (self.assigned is None and self.runs == revision)


@dataclass(frozen=True)
class Control:
    """What the admin said (annotations on the template)."""

    paused: bool = False
    resumed: int | None = None   # the revision whose canary pause was lifted
    approved: int | None = None  # the revision approved (requireApproval)


@dataclass(frozen=True)
class State:
    """What the previous decision wrote into the template's status.rollout."""

    revision: int | None = None  # the revision the rollout went to
    stable: int | None = None
    canary_paused_at: float | None = None


@dataclass(frozen=True)
class Decision:
    target: int
    phase: str
    move: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    stable: int | None = None
    pending: int | None = None   # a revision waiting for approval
    canary_paused_at: float | None = None
    updated: int = 0             # instances (not pinned) at the target
    total: int = 0               # instances not pinned
    message: str = ""


def parse_strategy(rollout: Mapping[str, Any] | None) -> Strategy:
    """Strategy from template spec.rollout (the CRD schema checks the types; this checks the
    values and says which field is wrong)."""
    rollout = rollout or {}
    max_unavailable = rollout.get("maxUnavailable", DEFAULT_MAX_UNAVAILABLE)
    if isinstance(max_unavailable, str):
        match = _PERCENT.match(max_unavailable)
        if match is None or not 0 < int(match.group(1)) <= 100:
            raise StrategyError(f"spec.rollout.maxUnavailable {max_unavailable!r} must be a "
                                "count (>= 1) or a percent like '20%'")
    elif not isinstance(max_unavailable, int) or max_unavailable < 1:
        raise StrategyError(f"spec.rollout.maxUnavailable {max_unavailable!r} must be >= 1")
    max_failures = rollout.get("maxFailures", DEFAULT_MAX_FAILURES)
    if not isinstance(max_failures, int) or max_failures < 1:
        raise StrategyError(f"spec.rollout.maxFailures {max_failures!r} must be >= 1")
    canary = rollout.get("canary") or {}
    selector = canary.get("selector")
    if selector is not None:
        selector = parse_selector(selector)
    percent = canary.get("percent")
    if percent is not None and (not isinstance(percent, int) or not 0 < percent <= 100):
        raise StrategyError(f"spec.rollout.canary.percent {percent!r} must be 1..100")
    pause = canary.get("pauseSeconds", rollout.get("pauseSeconds"))
    deadline = rollout.get("readyDeadlineSeconds", DEFAULT_READY_DEADLINE)
    return Strategy(max_unavailable=max_unavailable, max_failures=max_failures,
                    ready_deadline=float(deadline), canary_selector=selector,
                    canary_percent=percent,
                    pause_seconds=float(pause) if pause is not None else None,
                    require_approval=bool(rollout.get("requireApproval", False)))


def parse_selector(selector: Any) -> dict[str, str]:
    """`{matchLabels: {...}}`, a plain label map, or `k=v,k2=v2` (equality only)."""
    if isinstance(selector, Mapping):
        labels = selector.get("matchLabels", selector)
        if isinstance(labels, Mapping) and all(isinstance(v, str) for v in labels.values()):
            return {str(k): v for k, v in labels.items()}
    if isinstance(selector, str):
        pairs = [p.strip() for p in selector.split(",") if p.strip()]
        if pairs and all("=" in p for p in pairs):
            return dict(p.replace("==", "=").split("=", 1) for p in pairs)
    raise StrategyError(f"spec.rollout.canary.selector {selector!r}: give matchLabels "
                        "(a map of label: value) or 'label=value,...'")


def unavailable_budget(max_unavailable: int | str, total: int) -> int:
    if isinstance(max_unavailable, str):
        percent = int(_PERCENT.match(max_unavailable).group(1))  # type: ignore[union-attr]
        return max(1, math.floor(total * percent / 100))
    return max_unavailable


def canary_keys(members: Sequence[Member], strategy: Strategy) -> set[str]:
    if strategy.canary_selector is not None:
        wanted = strategy.canary_selector.items()
        return {m.key for m in members if all(m.labels.get(k) == v for k, v in wanted)}
    if strategy.canary_percent is not None:
        count = max(1, math.ceil(len(members) * strategy.canary_percent / 100))
        return {m.key for m in sorted(members, key=lambda m: m.key)[:count]}
    return set()


def failures(members: Iterable[Member], target: int, deadline: float,
             now: float) -> list[tuple[str, str]]:
    """(key, message) of the instances moved to `target` that failed there (rule 3)."""
    found = []
    for m in members:
        if m.assigned != target:
            continue
        if m.failed:
            found.append((m.key, m.message or "its update failed"))
        elif (not m.ready and m.moved_at is not None and now - m.moved_at >= deadline):
            found.append((m.key, m.message or f"not Ready {deadline:g}s after it was moved"))
    return sorted(found)


def decide(current: int, members: Sequence[Member], strategy: Strategy, control: Control,
           state: State, now: float) -> Decision:
    """The next step of the rollout (module doc, rules 1-8)."""
    # 1. Approval.
    pending = None
    target = current
    if (strategy.require_approval and control.approved != current
            and state.revision is not None and state.revision != current):
        target, pending = state.revision, current
    fleet = sorted((m for m in members if not m.pinned), key=lambda m: m.key)
    on_target = [m for m in fleet if m.at(target)]
    updated = len(on_target)
    base = {"target": target, "stable": state.stable, "pending": pending,
            "updated": updated, "total": len(fleet)}
    canary_paused_at = state.canary_paused_at if state.revision == target else None
    # 3. Halt.
    failed = failures(fleet, target, strategy.ready_deadline, now)
    if len(failed) >= strategy.max_failures:
        return Decision(phase=HALTED, failed=tuple(failed),
                        canary_paused_at=canary_paused_at,
                        message=f"halted: {len(failed)} instance(s) failed at revision "
                                f"{target} (maxFailures {strategy.max_failures}); undo the "
                                "rollout or fix the template", **base)
    # 8. Complete.
    if updated == len(fleet) and all(m.ready for m in fleet):
        return Decision(phase=AWAITING_APPROVAL if pending else COMPLETE,
                        failed=tuple(failed), **{**base, "stable": target},
                        message=_waiting(pending) or f"every instance runs revision {target}")
    # 4. Paused.
    if control.paused:
        return Decision(phase=PAUSED, failed=tuple(failed), canary_paused_at=canary_paused_at,
                        message="paused by an admin (rollout resume continues)", **base)
    # 5. Canary.
    candidates = [m for m in fleet if not m.at(target)]
    canary = canary_keys(fleet, strategy) if control.resumed != target else set()
    if canary:
        waiting = [m for m in candidates if m.key in canary]
        if waiting:
            candidates = waiting
        elif all(m.ready for m in fleet if m.key in canary):
            canary_paused_at = canary_paused_at if canary_paused_at is not None else now
            if (strategy.pause_seconds is None
                    or now - canary_paused_at < strategy.pause_seconds):
                return Decision(phase=CANARY_PAUSED, failed=tuple(failed),
                                canary_paused_at=canary_paused_at,
                                message=f"the canary ({len(canary)} instance(s)) runs "
                                        f"revision {target}; waiting for rollout resume"
                                + (f" or {strategy.pause_seconds:g}s"
                                   if strategy.pause_seconds else ""), **base)
        else:
            candidates = []  # the canary moved and is not Ready yet: wait for it
    # 6. Budget.
    budget = unavailable_budget(strategy.max_unavailable, len(fleet))
    unavailable = sum(1 for m in fleet if not m.ready)
    move = [m.key for m in candidates if not m.ready]
    for m in candidates:
        if m.ready and unavailable < budget:
            move.append(m.key)
            unavailable += 1
    # 7. Blast radius while the revision is unproven.
    proven = sum(1 for m in fleet if m.assigned == target and m.ready)
    if proven < strategy.max_failures:
        failed_keys = {key for key, _ in failed}
        in_flight = sum(1 for m in fleet if m.assigned == target and not m.ready
                        and m.key not in failed_keys)
        room = max(0, strategy.max_failures - len(failed) - in_flight)
        by_key = {m.key: m for m in fleet}
        # A server that never ran has nothing to lose: it starts with the target whatever.
        fresh = [k for k in move if by_key[k].runs is None and by_key[k].assigned is None]
        move = fresh + [k for k in move if k not in fresh][:room]
    return Decision(phase=AWAITING_APPROVAL if pending else PROGRESSING, move=tuple(move),
                    failed=tuple(failed), canary_paused_at=canary_paused_at,
                    message=_waiting(pending) or f"{updated}/{len(fleet)} instance(s) at "
                    f"revision {target}", **base)


def _waiting(pending: int | None) -> str:
    return (f"revision {pending} waits for approval (jupyternetes rollout approve "
            f"--revision {pending})") if pending else ""
