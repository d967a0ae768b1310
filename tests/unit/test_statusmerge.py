"""Status writes that cannot clobber (statusmerge) and Event aggregation keys (eventkey)."""

from __future__ import annotations

from jupyternetes.crd.conditions import merge_conditions
from jupyternetes.kube import eventkey, statusmerge


def cond(type_: str, status: str, since: str = "t0", message: str = "") -> dict:
    return {"type": type_, "status": status, "lastTransitionTime": since, "message": message}


def test_upsert_keeps_other_writers_conditions_and_replaces_ours_by_type():
    current = [cond("Ready", "False"), cond("HubSeen", "True", message="spawner")]
    merged = statusmerge.upsert_conditions(current, [cond("Ready", "True", "t5"),
                                                     cond("Provisioned", "True", "t5")])
    assert merged == [cond("Ready", "True", "t5"), cond("HubSeen", "True", message="spawner"),
                      cond("Provisioned", "True", "t5")]


def test_upsert_keeps_the_servers_transition_time_when_the_status_did_not_flip():
    current = [cond("Ready", "True", "t1", "old")]
    merged = statusmerge.upsert_conditions(current, [cond("Ready", "True", "t9", "new")])
    assert merged == [cond("Ready", "True", "t1", "new")]


def test_rebased_only_touches_conditions():
    status = {"pods": {"a": {"state": "Completed"}}, "conditions": [cond("Ready", "True")]}
    current = {"conditions": [cond("Other", "True")], "pods": {"b": {}}}
    patch = statusmerge.rebased(status, current)
    assert patch["pods"] == status["pods"]
    assert [c["type"] for c in patch["conditions"]] == ["Other", "Ready"]
    assert statusmerge.rebased({"stack": {}}, current) == {"stack": {}}


def test_merge_conditions_carries_only_the_operators_own_types_from_an_old_read():
    previous = [cond("Ready", "False"), cond("HubSeen", "False")]
    merged = merge_conditions(previous, [cond("Provisioned", "True")])
    assert [c["type"] for c in merged] == ["Ready", "Provisioned"]


def test_event_name_is_the_same_for_retries_of_the_same_failure():
    first = eventkey.event_name("alice", "uid-1", "Warning", "ProvisionFailed",
                                "stack s: up failed (attempt 1): quota exceeded")
    again = eventkey.event_name("alice", "uid-1", "Warning", "ProvisionFailed",
                                "stack s: up failed (attempt 12): quota exceeded")
    assert first == again and first.startswith("alice.")
    other = eventkey.event_name("alice", "uid-1", "Warning", "ProvisionFailed",
                                "stack s: up failed (attempt 2): image not found")
    assert other != first
    assert eventkey.event_name("alice", "uid-2", "Warning", "ProvisionFailed",
                               "stack s: up failed (attempt 1): quota exceeded") != first
    assert eventkey.event_name("alice", "uid-1", "Normal", "Provisioned",
                               "stack s: up succeeded in 3.2s (create 2)") == \
        eventkey.event_name("alice", "uid-1", "Normal", "Provisioned",
                            "stack s: up succeeded in 11.0s (create 2)")


def test_event_name_is_a_valid_name_for_long_objects():
    name = eventkey.event_name("x" * 253, None, "Warning", "R", "m")
    assert len(name) <= 253 and name.endswith(name.rsplit(".", 1)[1])


def test_normalized_replaces_counters_only():
    assert eventkey.normalized("update failed 3 time(s); 5 consecutive failed updates") == \
        "update failed # time(s); # consecutive failed updates"
    assert eventkey.normalized("pod alice-2 is not ready") == "pod alice-2 is not ready"
