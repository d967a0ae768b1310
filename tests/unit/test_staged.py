"""The staged rollout's judge (policy/staged.py): examples for each rule, then properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyternetes.policy.staged import (
    AWAITING_APPROVAL,
    CANARY_PAUSED,
    COMPLETE,
    HALTED,
    PAUSED,
    PROGRESSING,
    Control,
    Member,
    State,
    Strategy,
    StrategyError,
    decide,
    parse_strategy,
    unavailable_budget,
)


def fleet(n: int, runs: int | None = 1, ready: bool = True, **kw) -> list[Member]:
    return [Member(key=f"ns/u{i:02d}", runs=runs, ready=ready, **kw) for i in range(n)]


def test_moves_at_most_max_unavailable_ready_servers():
    d = decide(2, fleet(10), Strategy(max_unavailable="20%", max_failures=5), Control(),
               State(1, 1), 0)
    assert d.phase == PROGRESSING and d.move == ("ns/u00", "ns/u01")


def test_an_unproven_revision_reaches_at_most_max_failures_servers_at_once():
    d = decide(2, fleet(30), Strategy(max_unavailable="20%", max_failures=3), Control(),
               State(1, 1), 0)
    assert len(d.move) == 3
    moved = [Member(m.key, runs=1, assigned=2, moved_at=0, ready=False)
             if m.key in d.move else m for m in fleet(30)]
    assert decide(2, moved, Strategy(max_unavailable="20%", max_failures=3), Control(),
                  State(2, 1), 1).move == ()
    proven = [Member(m.key, runs=2, assigned=2, ready=True) if m.key in d.move else m
              for m in fleet(30)]
    assert len(decide(2, proven, Strategy(max_unavailable="20%", max_failures=3), Control(),
                      State(2, 1), 1).move) == 6  # proven: maxUnavailable alone


def test_servers_not_ready_move_without_counting():
    members = [*fleet(4), Member("ns/z", runs=None, ready=False)]
    d = decide(2, members, Strategy(max_unavailable=1), Control(), State(1, 1), 0)
    # z is unavailable already: the budget of 1 is used up by it, it still moves.
    assert d.move == ("ns/z",)


def test_halts_after_max_failures_and_names_them():
    members = [Member("ns/a", runs=1, assigned=2, moved_at=0, failed=True, message="boom"),
               Member("ns/b", runs=1, assigned=2, moved_at=0, ready=False),
               *fleet(5)]
    d = decide(2, members, Strategy(max_failures=2, ready_deadline=30), Control(),
               State(2, 1), now=31)
    assert d.phase == HALTED and d.move == ()
    assert d.failed == (("ns/a", "boom"), ("ns/b", "not Ready 30s after it was moved"))


def test_not_ready_within_the_deadline_is_not_a_failure_yet():
    members = [Member("ns/b", runs=1, assigned=2, moved_at=0, ready=False), *fleet(5)]
    d = decide(2, members, Strategy(max_failures=1, ready_deadline=30), Control(),
               State(2, 1), now=29)
    assert d.phase == PROGRESSING and d.failed == ()


def test_undo_moves_the_failed_ones_back_at_once():
    failed = [Member(f"ns/f{i}", runs=1, assigned=2, moved_at=0, failed=True, ready=False)
              for i in range(3)]
    d = decide(1, [*failed, *fleet(10)], Strategy(max_unavailable=1, max_failures=3), Control(),
               State(2, 1), now=100)
    assert d.phase == PROGRESSING and d.move == ("ns/f0", "ns/f1", "ns/f2")


def test_paused_moves_nothing():
    d = decide(2, fleet(3), Strategy(), Control(paused=True), State(1, 1), 0)
    assert d.phase == PAUSED and d.move == ()


def test_canary_by_label_first_then_pause_until_resume():
    members = [Member(f"ns/u{i}", runs=1, ready=True,
                      labels={"canary": "yes"} if i < 2 else {}) for i in range(6)]
    strategy = Strategy(max_unavailable=5, max_failures=5, canary_selector={"canary": "yes"})
    d = decide(2, members, strategy, Control(), State(1, 1), 0)
    assert d.move == ("ns/u0", "ns/u1")
    moved = [Member(m.key, runs=2, assigned=2, ready=True, labels=m.labels)
             if m.key in d.move else m for m in members]
    d2 = decide(2, moved, strategy, Control(), State(1, 1), 10)
    assert d2.phase == CANARY_PAUSED and d2.move == () and d2.canary_paused_at == 10
    d3 = decide(2, moved, strategy, Control(resumed=2), State(2, 1, 10), 20)
    assert d3.phase == PROGRESSING and set(d3.move) == {"ns/u2", "ns/u3", "ns/u4", "ns/u5"}


def test_canary_pause_ends_after_pause_seconds():
    members = [Member("ns/c", runs=2, assigned=2, ready=True, labels={"c": "1"}), *fleet(3)]
    strategy = Strategy(max_unavailable=5, max_failures=5, canary_selector={"c": "1"},
                        pause_seconds=60)
    assert decide(2, members, strategy, Control(), State(2, 1, 0), 59).phase == CANARY_PAUSED
    assert decide(2, members, strategy, Control(), State(2, 1, 0), 60).move == (
        "ns/u00", "ns/u01", "ns/u02")


def test_approval_gate_holds_the_previous_revision():
    d = decide(2, fleet(3), Strategy(require_approval=True), Control(), State(1, 1), 0)
    assert d.phase == AWAITING_APPROVAL and d.target == 1 and d.pending == 2 and d.move == ()
    d2 = decide(2, fleet(3), Strategy(require_approval=True), Control(approved=2),
                State(1, 1), 0)
    assert d2.phase == PROGRESSING and d2.target == 2 and d2.move == ("ns/u00",)


def test_first_revision_needs_no_approval():
    d = decide(1, fleet(2, runs=None, ready=False), Strategy(require_approval=True),
               Control(), State(), 0)
    assert d.target == 1 and d.move == ("ns/u00", "ns/u01")


def test_pinned_are_passed_by_and_complete_ignores_them():
    members = [Member("ns/p", runs=1, pinned=True, ready=True), *fleet(2, runs=2)]
    d = decide(2, members, Strategy(), Control(), State(2, 1), 0)
    assert d.phase == COMPLETE and d.stable == 2 and d.move == ()


@pytest.mark.parametrize("rollout,field", [
    ({"maxUnavailable": "0%"}, "maxUnavailable"), ({"maxUnavailable": 0}, "maxUnavailable"),
    ({"maxFailures": 0}, "maxFailures"), ({"canary": {"percent": 101}}, "canary.percent"),
    ({"canary": {"selector": ["x"]}}, "canary.selector")])
def test_parse_strategy_names_the_field(rollout, field):
    with pytest.raises(StrategyError, match=field):
        parse_strategy(rollout)


def test_parse_strategy_reads_the_spec():
    s = parse_strategy({"maxUnavailable": "20%", "maxFailures": 3, "canary": {
        "selector": {"matchLabels": {"tier": "canary"}}, "pauseSeconds": 30},
        "requireApproval": True})
    assert s == Strategy(max_unavailable="20%", max_failures=3, canary_selector={
        "tier": "canary"}, pause_seconds=30.0, require_approval=True)
    assert parse_strategy({"canary": {"selector": "a=b,c==d"}}).canary_selector == {
        "a": "b", "c": "d"}


# ---- properties ---------------------------------------------------------------------------------

members_st = st.lists(st.builds(
    Member,
    key=st.text("abcdef", min_size=1, max_size=4).map(lambda s: f"ns/{s}"),
    runs=st.sampled_from([None, 1, 2]),
    assigned=st.sampled_from([None, 1, 2]),
    moved_at=st.sampled_from([None, 0.0, 50.0]),
    pinned=st.booleans(), ready=st.booleans(), failed=st.booleans(),
    labels=st.sampled_from([{}, {"canary": "yes"}])), max_size=30,
    unique_by=lambda m: m.key)
strategy_st = st.builds(
    Strategy, max_unavailable=st.sampled_from([1, 3, "20%", "50%"]),
    max_failures=st.integers(1, 4), ready_deadline=st.sampled_from([10.0, 1000.0]),
    canary_selector=st.sampled_from([None, {"canary": "yes"}]),
    pause_seconds=st.sampled_from([None, 30.0]), require_approval=st.booleans())
control_st = st.builds(Control, paused=st.booleans(), resumed=st.sampled_from([None, 2]),
                       approved=st.sampled_from([None, 2]))
state_st = st.builds(State, revision=st.sampled_from([None, 1, 2]),
                     stable=st.sampled_from([None, 1]),
                     canary_paused_at=st.sampled_from([None, 0.0]))


@settings(max_examples=400, deadline=None)
@given(members_st, strategy_st, control_st, state_st, st.sampled_from([0.0, 100.0]))
def test_properties_of_every_decision(members, strategy, control, state, now):
    d = decide(2, members, strategy, control, state, now)
    by_key = {m.key: m for m in members}
    moved = [by_key[k] for k in d.move]
    # Never a pinned one, never one already at the target, never twice.
    assert not any(m.pinned or m.at(d.target) for m in moved)
    assert len(set(d.move)) == len(d.move)
    # Halted, paused, canary-paused, complete: nothing moves.
    if d.phase in (HALTED, PAUSED, CANARY_PAUSED, COMPLETE) or d.pending:
        assert d.move == () or d.phase == AWAITING_APPROVAL
    if d.phase == HALTED:
        assert len(d.failed) >= strategy.max_failures and d.move == ()
    if control.paused:
        assert d.move == ()
    # Ready servers are taken down only within maxUnavailable.
    fleet = [m for m in members if not m.pinned]
    budget = unavailable_budget(strategy.max_unavailable, len(fleet))
    unavailable_before = sum(1 for m in fleet if not m.ready)
    ready_moved = sum(1 for m in moved if m.ready)
    assert ready_moved == 0 or unavailable_before + ready_moved <= budget
    # An unproven revision: at most maxFailures running servers exposed at once.
    failed_keys = {k for k, _ in d.failed}
    if sum(1 for m in fleet if m.assigned == d.target and m.ready) < strategy.max_failures:
        exposed = sum(1 for m in fleet if m.assigned == d.target and not m.ready
                      and m.key not in failed_keys)
        running_moved = sum(1 for m in moved if m.runs is not None or m.assigned is not None)
        assert running_moved == 0 or (
            exposed + running_moved + len(d.failed) <= strategy.max_failures)
    # Complete only when every instance not pinned runs the target and is Ready.
    if d.phase == COMPLETE:
        assert all(m.at(d.target) and m.ready for m in fleet) and d.stable == d.target
    # With approval required and not given, an edit reaches nobody.
    if strategy.require_approval and control.approved != 2 and state.revision in (1,):
        assert d.target == 1


def test_canary_by_percent_takes_the_first_by_name():
    strategy = Strategy(max_unavailable=10, max_failures=10, canary_percent=10)
    d = decide(2, fleet(20), strategy, Control(), State(1, 1), 0)
    assert d.move == ("ns/u00", "ns/u01")
