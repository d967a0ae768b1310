"""Pod -> status.pods[entry] mirror (pure)."""

from __future__ import annotations

from jupyternetes.crd import podstatus


def pod(phase="Running", ip="10.0.0.7", ready=True, container_status=None, init_status=None,
        conditions=None, ports=({"containerPort": 8888, "name": "http"},), **status_extra):
    conds = conditions if conditions is not None else [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
    ]
    status = {"phase": phase, "conditions": conds, **status_extra}
    if ip:
        status["podIP"] = ip
    if container_status is not None:
        status["containerStatuses"] = [container_status]
    if init_status is not None:
        status["initContainerStatuses"] = [init_status]
    return {
        "metadata": {"name": "inst-notebook", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "notebook", "ports": list(ports)},
                                {"name": "sidecar", "ports": [{"containerPort": 9000}]}]},
        "status": status,
    }


def test_running_ready_pod():
    fields = podstatus.pod_fields(pod())
    assert fields == {"resourceName": "inst-notebook", "phase": "Running",
                      "podAddress": "10.0.0.7", "portNumber": 8888, "ready": True,
                      "reason": None, "errorMessage": None, "state": "Completed"}


def test_first_container_port_is_the_notebook_port():
    assert podstatus.first_port(pod(ports=())) == 9000
    p = pod()
    p["spec"]["containers"] = [{"name": "c"}]
    assert podstatus.first_port(p) is None


def test_pending_pod_without_ip_is_not_ready_and_clears_address():
    fields = podstatus.pod_fields(pod(phase="Pending", ip=None, ready=False))
    assert fields["podAddress"] is None
    assert fields["ready"] is False
    assert fields["phase"] == "Pending"


def test_image_pull_backoff_is_the_reason():
    cs = {"name": "notebook", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "nope:1"'}}}
    fields = podstatus.pod_fields(pod(phase="Pending", ready=False, container_status=cs))
    assert fields["reason"] == "ImagePullBackOff"
    assert fields["errorMessage"] == 'Back-off pulling image "nope:1"'
    assert fields["ready"] is False


def test_crash_loop_names_the_last_termination_reason():
    cs = {"name": "notebook",
          "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
          "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    fields = podstatus.pod_fields(pod(ready=False, container_status=cs))
    assert fields["reason"] == "CrashLoopBackOff (OOMKilled)"
    assert fields["errorMessage"] == "back-off 5m0s"


def test_terminated_container_reason():
    cs = {"name": "notebook", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}
    fields = podstatus.pod_fields(pod(phase="Failed", ready=False, container_status=cs))
    assert fields["reason"] == "OOMKilled"
    assert "exit code 137" in fields["errorMessage"]
    assert fields["state"] == "Failed"


def test_benign_waiting_reasons_are_not_reported():
    cs = {"name": "notebook", "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert podstatus.pod_fields(pod(phase="Pending", container_status=cs,
                                    ready=False))["reason"] is None


def test_init_container_problem_wins():
    init = {"name": "init", "state": {"waiting": {"reason": "ErrImagePull"}}}
    main = {"name": "notebook", "state": {"waiting": {"reason": "PodInitializing"}}}
    fields = podstatus.pod_fields(pod(phase="Pending", ready=False, container_status=main,
                                      init_status=init))
    assert fields["reason"] == "ErrImagePull"


def test_unschedulable_and_evicted():
    unsched = pod(phase="Pending", ip=None, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 Insufficient memory."}])
    assert podstatus.problem(unsched) == ("Unschedulable",
                                          "0/1 nodes are available: 1 Insufficient memory.")
    evicted = pod(phase="Failed", ready=False, reason="Evicted",
                  message="The node was low on resource: memory.")
    assert podstatus.problem(evicted)[0] == "Evicted"


def test_terminating_pod_is_not_ready():
    p = pod()
    p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert podstatus.is_ready(p) is False


def test_changed_fields_only_reports_differences():
    current = {"resourceName": "inst-notebook", "state": "Completed", "phase": "Pending",
               "ready": False}
    wanted = podstatus.pod_fields(pod())
    changed = podstatus.changed_fields(current, wanted)
    assert changed == {"phase": "Running", "podAddress": "10.0.0.7", "portNumber": 8888,
                       "ready": True}
    assert podstatus.changed_fields(wanted, wanted) == {}


def test_ready_only_when_every_pod_is_ready():
    ok, not_ok = pod(), pod(ready=False, phase="Pending")
    assert podstatus.readiness_summary(["a", "b"], {"a": ok, "b": ok})[:2] == (True, "PodsReady")
    assert podstatus.readiness_summary(["a", "b"], {"a": ok, "b": not_ok})[0] is False
    assert podstatus.readiness_summary([], {})[:2] == (True, "NoPods")
    ready, reason, message = podstatus.readiness_summary(["a", "b"], {"a": ok, "b": None})
    assert (ready, reason) == (False, "PodsNotReady")
    assert "b: missing" in message
    assert podstatus.readiness_summary(["a"], {"a": ok})[:2] == (True, "PodsReady")
