"""Instance/pod state -> start and poll decisions, and progress steps (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.spawner import decisions, progress
from jupyternetes.spawner.decisions import FAILED, READY, WAITING


def cond(type_: str, status: bool, reason: str = "R", message: str = "m",
         generation: int = 1) -> dict[str, Any]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


def instance(*conditions: dict, pods: dict | None = None, generation: int = 1,
             deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "abc", "namespace": "users", "generation": generation,
                            "uid": "u1", "creationTimestamp": "2026-01-01T00:00:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    return {"apiVersion": API_VERSION, "kind": INSTANCE_KIND, "metadata": meta,
            "status": {"conditions": list(conditions), "pods": pods or {}}}


NOTEBOOK = {"notebook": {"resourceName": "abc-notebook", "state": "Completed", "phase": "Running",
                         "podAddress": "127.42.0.7", "portNumber": 8888, "ready": True}}


def pod(phase: str = "Running", waiting: str | None = None, terminated: str | None = None,
        scheduled: bool = True, running: bool = False, deleting: bool = False) -> dict:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting, "message": f"{waiting} details"}
    if terminated:
        state["terminated"] = {"reason": terminated, "exitCode": 1}
    if running:
        state["running"] = {"startedAt": "2026-01-01T00:00:02Z"}
    meta: dict[str, Any] = {"name": "abc-notebook",
                            "labels": {"jupyternetes.kadense.io/instance": "abc"}}
    if deleting:
        meta["deletionTimestamp"] = "x"
    return {"metadata": meta, "spec": {"nodeName": "loopback"},
            "status": {"phase": phase, "containerStatuses": [{"name": "notebook",
                                                              "state": state}],
                       "conditions": [{"type": "PodScheduled",
                                       "status": "True" if scheduled else "False"}]}}


def test_ready_instance_gives_the_pod_url() -> None:
    obj = instance(cond("Provisioned", True), cond("Ready", True), pods=NOTEBOOK)
    decision = decisions.start_decision(obj, [pod(running=True)])
    assert (decision.state, decision.url) == (READY, "http://127.42.0.7:8888")


def test_ipv6_addresses_are_bracketed() -> None:
    pods = {"nb": {**NOTEBOOK["notebook"], "podAddress": "fd00::5"}}
    assert decisions.server_url({"pods": pods}) == "http://[fd00::5]:8888"


def test_named_pod_entry_and_missing_port() -> None:
    pods = {"sidecar": {"podAddress": "127.0.0.9", "portNumber": 9000}, **NOTEBOOK}
    assert decisions.server_url({"pods": pods}) == "http://127.0.0.9:9000"
    assert decisions.server_url({"pods": pods}, "notebook") == "http://127.42.0.7:8888"
    assert decisions.server_url({"pods": {"nb": {"podAddress": "1.2.3.4"}}}) is None
    assert decisions.server_url({"pods": {}}) is None


@pytest.mark.parametrize("obj", [
    None,
    instance(),
    instance(cond("Provisioned", False, "Provisioning", "stack up in progress")),
    instance(cond("Provisioned", True), cond("Ready", False, "PodsNotReady", "not ready")),
    # Ready from an older generation does not count.
    instance(cond("Provisioned", True, generation=1), cond("Ready", True, generation=1),
             pods=NOTEBOOK, generation=2),
    # A transient engine failure is retried by the operator.
    instance(cond("Provisioned", False, "UpFailed", "stack x: up failed: connection reset")),
    # The Secret is created just before the instance; the operator retries.
    instance(cond("Provisioned", False, "SecretMissing", "secret users/abc-hub not found")),
    instance(cond("Provisioned", True), cond("Ready", True),
             pods={"nb": {"phase": "Running"}}),
])
def test_still_waiting(obj: dict | None) -> None:
    assert decisions.start_decision(obj, []).state == WAITING


@pytest.mark.parametrize(("obj", "pods", "reason", "text"), [
    (instance(cond("Provisioned", False, "RenderFailed", "unknown placeholder {nope} at x")),
     [], "RenderFailed", "unknown placeholder {nope}"),
    (instance(cond("Provisioned", False, "TemplateNotFound", "template t/x not found")),
     [], "TemplateNotFound", "template t/x not found"),
    (instance(cond("Provisioned", False, "UpFailed",
                   "up failed: Pod \"abc\" is invalid: spec.containers: Required value")),
     [], "UpFailed", "is invalid"),
    (instance(cond("Degraded", True, "RepeatedFailures", "5 consecutive failed updates")),
     [], "RepeatedFailures", "5 consecutive"),
    (instance(cond("Provisioned", True)), [pod(waiting="ImagePullBackOff")],
     "ImagePullBackOff", "ImagePullBackOff details"),
    (instance(cond("Provisioned", True)), [pod(waiting="CrashLoopBackOff", terminated=None)],
     "CrashLoopBackOff", "abc-notebook"),
    (instance(cond("Provisioned", True)), [pod(phase="Failed", terminated="Error")],
     "Error", "failed"),
    (instance(cond("Provisioned", True), pods={"notebook": {"resourceName": "abc-notebook",
                                                            "phase": "Failed",
                                                            "errorMessage": "OOMKilled"}}),
     [], "PodFailed", "OOMKilled"),
    (instance(deleting=True), [], "Deleting", "being deleted"),
    (instance(cond("Provisioned", False, "DuplicateVariable", "variable 'x' is defined twice")),
     [], "DuplicateVariable", "defined twice"),
    # Preflight refusals: only an admin ends them, so the spawn ends at once (not after
    # start_timeout with an empty message).
    (instance(cond("Provisioned", False, "OwnershipConflict",
                   "PersistentVolumeClaim users/abc-workspace ... kubectl annotate")),
     [], "OwnershipConflict", "abc-workspace"),
    (instance(cond("Provisioned", False, "PVCChangeRefused", "a claim cannot shrink")),
     [], "PVCChangeRefused", "cannot shrink"),
    (instance(cond("Provisioned", False, "PreflightForbidden", "grant it get")),
     [], "PreflightForbidden", "grant it get"),
    # The trust model's refusals: an admin must act, so the spawn fails at once.
    (instance(cond("Provisioned", False, "TemplateNotAllowed",
                   "template hub/t (spec.template) may not be used from namespace users")),
     [], "TemplateNotAllowed", "may not be used"),
    (instance(cond("Provisioned", False, "KindNotAllowed", "spec.otherResources[x]: kind")),
     [], "KindNotAllowed", "otherResources[x]"),
    (instance(cond("Provisioned", False, "SecretNotAllowed", "Secret users/db is not meant")),
     [], "SecretNotAllowed", "not meant"),
])
def test_failures_end_the_spawn_with_the_instance_message(obj: dict, pods: list, reason: str,
                                                          text: str) -> None:
    decision = decisions.start_decision(obj, pods)
    assert decision.state == FAILED
    assert decision.reason == reason
    assert text in decision.message
    assert decision.message.startswith("instance users/abc")


def test_pending_pod_without_a_fatal_reason_keeps_waiting() -> None:
    obj = instance(cond("Provisioned", True), cond("Ready", False))
    assert decisions.start_decision(obj, [pod(phase="Pending", waiting="ContainerCreating",
                                              scheduled=False)]).state == WAITING


@pytest.mark.parametrize(("obj", "pods", "expected"), [
    (None, [], decisions.EXIT_GONE),
    (instance(deleting=True), [], decisions.EXIT_DELETING),
    (instance(cond("Degraded", True)), [], decisions.EXIT_DEGRADED),
    (instance(cond("Ready", True)), [pod(phase="Failed")], decisions.EXIT_POD_FAILED),
    (instance(cond("Ready", True)), [pod(phase="Succeeded")], decisions.EXIT_POD_SUCCEEDED),
    (instance(pods={"nb": {"phase": "Failed"}}), [], decisions.EXIT_POD_FAILED),
    (instance(cond("Ready", True), pods=NOTEBOOK), [pod(running=True)], None),
    (instance(cond("Provisioned", False, "Provisioning")), [], None),
    # A failed pod that is already being replaced does not stop the server.
    (instance(cond("Ready", False)), [pod(phase="Failed", deleting=True)], None),
    (instance(cond("Degraded", True, generation=1), generation=2), [], None),
])
def test_poll(obj: dict | None, pods: list, expected: int | None) -> None:
    assert decisions.poll_decision(obj, pods) == expected


def test_routed_pod_gone_when_neither_the_pods_nor_the_status_have_its_address() -> None:
    def at(ip: str | None, deleting: bool = False) -> dict:
        p = pod(running=True, deleting=deleting)
        p["status"]["podIP"] = ip
        return p

    ready = instance(cond("Ready", True), pods=NOTEBOOK)  # status: 127.42.0.7
    moved = instance(cond("Ready", True), pods={"notebook": {
        **NOTEBOOK["notebook"], "podAddress": "127.42.0.9"}})
    replacing = instance(cond("Ready", False), pods={"notebook": {
        **NOTEBOOK["notebook"], "podAddress": None, "phase": "Pending", "ready": False}})
    gone = decisions.routed_pod_gone
    assert not gone(ready, [at("127.42.0.7")], "127.42.0.7")
    # Right after a start one view may lag the other: not gone while either has the address.
    assert not gone(ready, [], "127.42.0.7")
    assert not gone(moved, [at("127.42.0.7")], "127.42.0.7")
    # Deleted, replaced (pending, or running elsewhere): the route points at a dead address.
    assert gone(replacing, [], "127.42.0.7")
    assert gone(replacing, [at("127.42.0.7", deleting=True), at(None)], "127.42.0.7")
    assert gone(moved, [at("127.42.0.9")], "127.42.0.7")
    # A replacement at the same address serves the route; an unknown address decides nothing.
    assert not gone(replacing, [at("127.42.0.7")], "127.42.0.7")
    assert not gone(replacing, [], "")
    assert not gone(replacing, [], None)


def test_progress_steps_rise_with_the_cluster_state() -> None:
    tracker = progress.ProgressTracker()
    assert progress.status_steps(None, [], []) == []
    seen: list[dict] = []
    created = instance()
    seen += tracker.update(progress.status_steps(created, [], []))
    up = instance(cond("Provisioned", True, "StackUp", "stack users.abc is up"))
    pvc = {"metadata": {"name": "abc-workspace"}, "status": {"phase": "Bound"}}
    seen += tracker.update(progress.status_steps(up, [pvc], [pod(phase="Pending")]))
    events = [{"metadata": {"uid": "e1"}, "type": "Normal", "reason": "Pulling",
               "message": "pulling image x", "involvedObject": {"kind": "Pod",
                                                                "name": "abc-notebook"},
               "lastTimestamp": "2026-01-01T00:00:03Z"}]
    ready = instance(cond("Provisioned", True, "StackUp", "up"), cond("Ready", True),
                     pods=NOTEBOOK)
    seen += tracker.update(progress.status_steps(ready, [pvc], [pod(running=True)], events),
                           events)
    # Nothing new: nothing reported twice.
    assert tracker.update(progress.status_steps(ready, [pvc], [pod(running=True)], events),
                          events) == []
    percents = [e["progress"] for e in seen]
    assert percents == sorted(percents)
    messages = [e["message"] for e in seen]
    assert messages[0] == "instance users/abc created"
    assert "stack users.abc is up" in messages
    assert "volume(s) bound: abc-workspace" in messages
    assert "pod scheduled on loopback" in messages
    assert "pulling the image" in messages
    assert "container started" in messages
    assert messages[-2] == "server ready; waiting for it to answer"
    assert messages[-1] == "pod abc-notebook: Pulling: pulling image x"
    assert percents[-1] == 90
