"""The instance status contract (controller/status.py): every builder's patch, applied as a JSON
merge patch to a stored status, gives a status the CRD's schema accepts and does not prune.

Builders write explicit nulls (merge-patch "clear this field"); the apiserver stores the result
of the merge, so that result is what the schema must accept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest

from jupyternetes.controller import status as contract
from jupyternetes.crd import conditions
from jupyternetes.crd.model import Instance, Template
from jupyternetes.render.objects import render
from tests.unit.test_crds import INSTANCE_CRD, as_created, errors, example, pruned, schema_of
from tests.unit.test_reconcile_unit import merge_patch

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:00:09Z"


@dataclass
class Outcome:
    """An engine result as stacks.OperationResult carries it."""

    result: str
    message: str = ""
    change_summary: dict[str, int] = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    started_at: str | None = NOW
    finished_at: str | None = LATER


def rendered():
    return render(Template.from_dict(example("seed-template.yaml")),
                  Instance.from_dict(example("seed-instance.yaml")))


def running_pod(name: str, uid: str = "u1") -> dict:
    return {"metadata": {"name": name, "uid": uid},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def stored(*patches: dict) -> dict:
    status: dict = {}
    for patch in patches:
        status = merge_patch(status, patch)
    return status


def valid(status: dict) -> dict:
    doc = as_created(example("seed-instance.yaml"))
    doc["status"] = status
    assert errors(INSTANCE_CRD, doc) == []
    assert pruned(schema_of(INSTANCE_CRD), doc) == []
    return status


def success(r, previous: dict, pods: dict | None = None) -> dict:
    name = r.pods[0].name
    outputs = {"objects": [{"group": "pods", "entry": r.pods[0].entry, "name": name,
                            "uid": "u1"}]}
    return contract.success_patch(
        r, Outcome("succeeded", "ok", {"create": 2}, outputs), stack="default.x", generation=2,
        digest="sha256:a", conditions=previous.get("conditions") or [],
        pods=pods if pods is not None else {name: running_pod(name)},
        template_current=conditions.condition(conditions.TEMPLATE_CURRENT, True, "TemplateApplied",
                                            "current", 2, [], NOW),
        template_gen=4, previous_update=(previous.get("stack") or {}).get("lastUpdate"),
        variables_from_hash="sha256:b", exposed=(False, "NoSecretInMetadata", "none"), now=NOW)


def failure(r, previous: dict, message: str = "boom", attempts: int = 3) -> dict:
    return contract.failure_patch(
        r, Outcome("failed", message, {}), stack="default.x", generation=2,
        conditions=previous.get("conditions") or [], pods={}, attempts=attempts,
        degraded=attempts >= 3, previous_update=(previous.get("stack") or {}).get("lastUpdate"),
        now=LATER)


def test_processing_then_success_validates():
    r = rendered()
    processing = contract.processing_patch({}, r, "default.x", 2, drift=False,
                                           retained=[{"name": "x-old", "entry": "old",
                                                      "reason": "template t no longer has it"}],
                                           now=NOW)
    status = valid(stored(processing))
    assert status["podsProvisioned"] == "Processing"
    assert status["retainedPvcs"][0]["name"] == "x-old"
    status = valid(stored(processing, success(r, status)))
    entry = status["pods"][r.pods[0].entry]
    assert (entry["state"], entry["ready"], entry["podAddress"]) == ("Completed", True,
                                                                     "10.0.0.5")
    assert "errorMessage" not in entry  # the merge patch's null cleared it
    assert status["stack"] == {"name": "default.x", "desiredHash": "sha256:a",
                               "templateGeneration": 4, "variablesFromHash": "sha256:b",
                               "lastUpdate": {"result": "succeeded", "startedAt": NOW,
                                              "finishedAt": LATER, "changeSummary": {"create": 2},
                                              "message": "ok"}}
    assert conditions.stack_is_up(status)
    assert [c["type"] for c in status["conditions"]] == [
        "Ready", "Provisioned", "Degraded", conditions.TEMPLATE_CURRENT, "SecretExposed"]


def test_last_update_names_the_replica_that_ran_it_and_the_crd_keeps_it():
    r = rendered()
    outcome = Outcome("succeeded", "ok", {"create": 2})
    outcome.replica = "operator-7f9c-abcde"  # type: ignore[attr-defined]
    assert contract.last_update(outcome, "ok")["replica"] == "operator-7f9c-abcde"
    assert "replica" not in contract.last_update(Outcome("succeeded"), "ok")
    status = valid(stored(success(r, {})))
    status["stack"]["lastUpdate"]["replica"] = "operator-7f9c-abcde"
    valid(status)  # declared in the CRD: not pruned by the apiserver


def test_failure_after_success_validates_and_drops_the_old_figures():
    r = rendered()
    up = stored(success(r, {}))
    status = valid(stored(up, failure(r, up, message=f"{r.pvcs[0].name}: quota exceeded")))
    assert status["pvcsProvisioned"] == "Failed"
    assert status["pvcs"][r.pvcs[0].entry]["errorMessage"].endswith("quota exceeded")
    assert status["podsProvisioned"] == "Pending"  # after the failing group: not reached
    assert "changeSummary" in status["stack"]["lastUpdate"]
    assert status["stack"]["lastUpdate"]["changeSummary"] == {}
    assert status["stack"]["lastUpdate"]["result"] == "failed"
    assert conditions.find_condition(status, "Degraded")["status"] == "True"
    assert not conditions.stack_is_up(status)


@pytest.mark.parametrize("state", contract.PROVISIONED_STATES)
def test_not_provisionable_validates_and_is_said_once(state):
    patch = contract.not_provisionable_patch({}, 3, state, "TemplateNotFound", "gone", NOW)
    status = valid(stored(patch))
    assert {status[k] for k in contract.PROVISIONED_KEY.values()} == {state}
    assert contract.not_provisionable_patch(status, 3, state, "TemplateNotFound", "gone",
                                            LATER) is None
    assert contract.not_provisionable_patch(status, 4, state, "TemplateNotFound", "gone",
                                            LATER) is not None


def test_mirror_validates_and_is_empty_when_nothing_changed():
    r = rendered()
    up = stored(success(r, {}))
    expected = [(o.entry, o.namespace, o.name) for o in r.pods]
    assert contract.mirror_patch(up, expected, {r.pods[0].name: running_pod(r.pods[0].name)}, 2,
                                 None, LATER) == {}
    gone = contract.mirror_patch(up, expected, {r.pods[0].name: None}, 2, None, LATER)
    status = valid(stored(up, gone))
    assert conditions.find_condition(status, "Ready")["status"] == "False"


def test_destroy_failed_validates():
    up = stored(success(rendered(), {}))
    patch = contract.destroy_failed_patch(up, Outcome("failed", "stuck", started_at=None),
                                          stack="default.x", message="destroy failed",
                                          stuck=True, stuck_reason="DestroyStuck",
                                          generation=2, now=LATER)
    status = valid(stored(up, patch))
    assert "startedAt" not in status["stack"]["lastUpdate"]
    assert conditions.find_condition(status, "Degraded")["reason"] == "DestroyStuck"


def test_schema_rejects_what_the_contract_forbids():
    status = valid(stored(success(rendered(), {})))
    for path, bad in ((("stack", "templateGeneration"), "four"), (("podsProvisioned",), "Exploded"),
                      (("stack", "lastUpdate", "changeSummary", "create"), "one")):
        broken = copy.deepcopy(status)
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = bad
        doc = as_created(example("seed-instance.yaml"))
        doc["status"] = broken
        assert errors(INSTANCE_CRD, doc), path
    broken = copy.deepcopy(status)
    broken["retainedPvcs"] = [{"entry": "old"}]
    doc = as_created(example("seed-instance.yaml"))
    doc["status"] = broken
    assert any("name" in e for e in errors(INSTANCE_CRD, doc))


def test_contract_names_every_status_field_of_the_crd():
    props = schema_of(INSTANCE_CRD)["properties"]["status"]["properties"]
    doc = contract.__doc__ or ""
    for name in props:
        assert name in doc, name
    for name in props["stack"]["properties"]:
        assert name in doc, name
    assert set(props["podsProvisioned"]["enum"]) == set(contract.PROVISIONED_STATES)


def test_seed_status_reads_leniently():
    # The seed writes otherResourcesProvisioned as {}: the readers do not trip on it.
    seed_status = example("seed-instance.yaml")["status"]
    assert not conditions.stack_is_up(seed_status)
    assert contract.running_pods(seed_status, "default") == []
    assert conditions.find_condition(seed_status, "Ready") is None
