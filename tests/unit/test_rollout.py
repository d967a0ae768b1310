"""rollout.py: when a changed render reaches a running server (pure decisions)."""

from __future__ import annotations

import pytest

from jupyternetes.crd.conditions import TEMPLATE_CURRENT
from jupyternetes.policy import rollout

NOW = "2026-01-01T00:00:00Z"


def running(generation: int = 2, digest: str = "sha256:a", variables: str | None = None,
            template_generation: int | None = 4) -> dict:
    stack = {"name": "ns.x", "desiredHash": digest, "templateGeneration": template_generation,
             "lastUpdate": {"result": "succeeded"}}
    if variables:
        stack["variablesFromHash"] = variables
    return {"observedGeneration": generation, "stack": stack}


@pytest.mark.parametrize("policy, digest, expected", [
    (rollout.NEXT_START, "sha256:a", rollout.Plan(True, True)),
    (rollout.NEXT_START, "sha256:b", rollout.Plan(True, False)),   # held: TemplateCurrent=False
    (rollout.IMMEDIATE, "sha256:a", rollout.Plan(True, True)),
    (rollout.IMMEDIATE, "sha256:b", rollout.Plan(False, False)),   # applied now
])
def test_plan_of_a_running_server(policy, digest, expected):
    assert rollout.plan(policy, running(), 2, digest, None) == expected


@pytest.mark.parametrize("status, generation, variables", [
    (running(), 3, None),                          # the instance's own spec changed
    (running(variables="sha256:v1"), 2, "sha256:v2"),  # a Secret value changed
    ({"observedGeneration": 2, "stack": {"desiredHash": "sha256:a",
                                         "lastUpdate": {"result": "failed"}}}, 2, None),
    ({}, None, None),                              # never up
])
def test_own_input_changes_are_applied_under_any_policy(status, generation, variables):
    assert not rollout.plan(rollout.NEXT_START, status, generation, "sha256:b",
                            variables).check_pods


def test_holding_only_a_running_server_under_next_start():
    assert rollout.holding(rollout.NEXT_START, running(), 2)
    assert not rollout.holding(rollout.IMMEDIATE, running(), 2)
    assert not rollout.holding(rollout.NEXT_START, running(), 3)
    assert not rollout.holding(rollout.NEXT_START, {}, None)


def test_template_changed_or_settings_changed():
    changed = rollout.template_changed(running(), "ns/x", "ns", "t", 5, 2, NOW)
    assert (changed["type"], changed["status"], changed["reason"]) == (
        TEMPLATE_CURRENT, "False", "TemplateChanged")
    assert "generation 5; this server was started with generation 4" in changed["message"]
    assert "jupyternetes preview ns/x" in changed["message"]
    settings = rollout.template_changed(running(), "ns/x", "ns", "t", 4, 2, NOW)
    assert settings["reason"] == "SettingsChanged"
    # Said once: the same condition again is None (no second Event).
    said = {**running(), "conditions": [changed]}
    assert rollout.template_changed(said, "ns/x", "ns", "t", 5, 2, NOW) is None


def test_template_current_only_if_not_true():
    current = rollout.template_current({}, "ns", "t", 4, 2, NOW)
    assert (current["status"], current["reason"]) == ("True", "TemplateApplied")
    assert "template ns/t generation 4" in current["message"]
    assert rollout.template_current({"conditions": [current]}, "ns", "t", 4, 2, NOW,
                                    only_if_not_true=True) is None
    assert rollout.template_current({"conditions": [current]}, "ns", "t", 4, 2, NOW) is not None


def test_not_applied_only_when_the_failed_update_was_a_new_render():
    assert rollout.not_applied(running(), "sha256:a", "ns/t", 2, [], NOW) == []
    (cond,) = rollout.not_applied(running(), "sha256:b", "ns/t (generation 5)", 2, [], NOW)
    assert (cond["type"], cond["status"], cond["reason"]) == (TEMPLATE_CURRENT, "False",
                                                              "UpdateFailed")
