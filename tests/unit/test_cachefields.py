"""What the watch caches keep (operator/caches.py): less memory, the same answers."""

from __future__ import annotations

import copy

from jupyternetes.controller.status import current_pods
from jupyternetes.crd import podstatus
from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.kube import caches

MANAGED = [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {
    "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}}}}}]


def full_pod(waiting: str | None = None) -> dict:
    state = {"waiting": {"reason": waiting, "message": "back-off 5m"}} if waiting else {
        "running": {"startedAt": "2026-01-01T00:00:00Z"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "u-notebook", "namespace": "ns", "uid": "p-1",
                     "resourceVersion": "7", "labels": {"a": "b"},
                     "annotations": {"x": "y"}, "managedFields": MANAGED,
                     "ownerReferences": [{"kind": "X"}], "creationTimestamp": "2026"},
        "spec": {"nodeName": "kwok-0", "volumes": [{"name": "v"}], "tolerations": [{}],
                 "containers": [{"name": "notebook", "image": "jupyter/base",
                                 "env": [{"name": "TOKEN", "value": "t"}],
                                 "ports": [{"containerPort": 8888, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": "198.18.0.9", "hostIP": "198.18.0.1",
                   "podIPs": [{"ip": "198.18.0.9"}], "qosClass": "BestEffort",
                   "startTime": "2026",
                   "conditions": [{"type": "Ready", "status": "False",
                                   "lastTransitionTime": "2026", "lastProbeTime": None},
                                  {"type": "PodScheduled", "status": "True"}],
                   "containerStatuses": [{"name": "notebook", "image": "jupyter/base",
                                          "imageID": "sha", "containerID": "c://1",
                                          "restartCount": 3, "ready": False, "state": state,
                                          "lastState": {"terminated": {"reason": "OOMKilled"}}}]},
    }


def test_a_slim_pod_gives_every_answer_the_full_pod_gives():
    for pod in (full_pod(), full_pod(waiting="CrashLoopBackOff")):
        slim = caches.pod(copy.deepcopy(pod))
        assert podstatus.pod_fields(slim) == podstatus.pod_fields(pod)
        assert podstatus.readiness_summary(["u-notebook"], {"u-notebook": slim}) == \
            podstatus.readiness_summary(["u-notebook"], {"u-notebook": pod})
        outputs = {"objects": [{"name": "u-notebook", "uid": "p-1", "group": "pods",
                                "entry": "notebook", "kind": "Pod"}]}
        assert current_pods({"u-notebook": slim}, outputs)["u-notebook"] is slim
        assert slim["metadata"]["labels"] == {"a": "b"}
        assert slim["metadata"]["resourceVersion"] == "7"


def test_a_slim_pod_drops_what_nobody_reads_and_is_a_fixed_point():
    slim = caches.pod(full_pod())
    assert "managedFields" not in slim["metadata"] and "annotations" not in slim["metadata"]
    # nodeName: the hub's spawn progress names the node ("pod scheduled on kwok-0").
    assert slim["spec"] == {"nodeName": "kwok-0", "containers": [{"name": "notebook", "ports": [
        {"containerPort": 8888, "protocol": "TCP"}]}]}
    assert set(slim["status"]) == {"phase", "podIP", "conditions", "containerStatuses"}
    assert set(slim["status"]["containerStatuses"][0]) == {"name", "ready", "state",
                                                           "lastState"}
    assert caches.pod(copy.deepcopy(slim)) == slim
    assert caches.pod({}) == {"metadata": {}, "spec": {"containers": []}, "status": {}}


def test_a_deleting_pod_stays_not_ready():
    pod = full_pod()
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:09Z"
    pod["status"]["conditions"][0]["status"] = "True"
    assert not podstatus.is_ready(caches.pod(pod))


def test_custom_objects_lose_only_managed_fields_and_the_last_applied_copy():
    obj = {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
           "metadata": {"name": "i", "namespace": "ns", "generation": 2,
                        "managedFields": MANAGED, "finalizers": ["f"],
                        "annotations": {caches.LAST_APPLIED: "{...}", "keep": "me"}},
           "spec": {"template": {"name": "t"}}, "status": {"stack": {"desiredHash": "h"}}}
    slim = caches.custom_object(copy.deepcopy(obj))
    assert slim["metadata"] == {"name": "i", "namespace": "ns", "generation": 2,
                                "finalizers": ["f"], "annotations": {"keep": "me"}}
    assert slim["spec"] == obj["spec"] and slim["status"] == obj["status"]
    plain = {"metadata": {"name": "j"}, "spec": {}}
    # Nothing to drop: the same content (rebuilt with shared strings, see the test below).
    assert caches.custom_object(plain) == plain
    assert caches.custom_object(slim) == slim


def test_name_only_keeps_namespace_and_name():
    assert caches.name_only(full_pod()) == {"metadata": {"name": "u-notebook",
                                                              "namespace": "ns"}}


def test_cached_objects_share_their_keys_and_short_strings():
    """Two objects decoded from separate events share one copy of each key and short value;
    values and answers are unchanged, and the transform is a fixed point."""
    import json
    first = caches.pod(json.loads(json.dumps(full_pod())))
    second = caches.pod(json.loads(json.dumps(full_pod())))
    assert first == caches.pod(full_pod())
    k1 = next(k for k in first["status"] if k == "containerStatuses")
    k2 = next(k for k in second["status"] if k == "containerStatuses")
    assert k1 is k2
    assert first["status"]["phase"] is second["status"]["phase"]
    assert caches.pod(first) == first
    long_message = "x" * (caches.INTERN_MAX_LENGTH + 1)
    instance = {"metadata": {"name": "a", "managedFields": MANAGED},
                "status": {"message": long_message, "conditions": [{"type": "Ready"}]}}
    slim = caches.custom_object(json.loads(json.dumps(instance)))
    again = caches.custom_object(json.loads(json.dumps(instance)))
    assert slim == {"metadata": {"name": "a"}, "status": instance["status"]}
    assert slim["status"]["conditions"][0]["type"] is again["status"]["conditions"][0]["type"]
    assert caches.custom_object(slim) == slim
