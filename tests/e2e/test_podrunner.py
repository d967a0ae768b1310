"""End-to-end: pods on the loopback node really run, as local processes on their pod IPs.

kwok schedules nothing and runs nothing; the scheduler places the pods, kwok gives them IPs from
the loopback node's podCIDR and marks them Running, and the pod runner (the one piece the harness
plays: the container runtime) starts their commands. Everything is observed from outside: over
HTTP on the pod IP, through the API (pod status), and in /proc (the process).
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest
from kubernetes import client, config

from harness.cluster import FAKE_NODE, LOOPBACK_KEY, LOOPBACK_NODE, DevCluster
from harness.operator_process import process_tree
from jupyternetes.engine.runtime.procs import pid_alive
from tests.e2e.loopback_pods import (
    POD_IP_ENV,
    delete_and_wait_gone,
    env_server,
    http_get,
    make_claim,
    pod_manifest,
    running_pid,
    wait_for,
    wait_service_account,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def core(cluster, namespace) -> Any:
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        wait_service_account(core, namespace)
        yield core


def test_pod_with_pvc_gets_a_loopback_ip_and_answers_there_with_its_env(
        core, namespace, pod_runner, loopback_node):
    make_claim(core, pod_runner, namespace, "work")
    (pod_runner.pvc_dir(namespace, "work") / "hello.txt").write_text("from the claim\n")
    core.create_namespaced_secret(namespace, {"apiVersion": "v1", "kind": "Secret",
                                              "metadata": {"name": "hub"},
                                              "stringData": {"token": "t0ken"}})
    core.create_namespaced_config_map(namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "settings"},
                                                  "data": {"GREETING": "hello"}})
    core.create_namespaced_pod(namespace, pod_manifest("web", env_server(
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
             {"name": "PLAIN", "value": "$(GREETING) world"}],
        envFrom=[{"configMapRef": {"name": "settings"}}]), claim="work"))

    ip, pid = running_pid(core, namespace, "web")
    pod = core.read_namespaced_pod("web", namespace)
    assert pod.spec.node_name == loopback_node
    assert ipaddress.ip_address(ip).is_loopback
    assert pid_alive(pid)

    answer = wait_for("the server on the pod IP", lambda: http_get(f"http://{ip}:8000/env"))
    assert answer[0] == 200
    seen = json.loads(answer[1])
    assert seen["env"]["TOKEN"] == "t0ken"
    assert seen["env"]["GREETING"] == "hello"
    assert seen["env"]["PLAIN"] == "hello world"
    assert seen["env"]["POD_IP"] == ip
    assert seen["env"]["HOSTNAME"] == "web"
    assert "KUBECONFIG" not in seen["env"]  # the runner's own environment does not leak in
    assert seen["cwd"] == str(pod_runner.pvc_dir(namespace, "work"))
    assert http_get(f"http://{ip}:8000/hello.txt") == (200, b"from the claim\n")


def test_deleting_the_pod_kills_its_process_group(core, namespace, pod_runner):
    # A shell that leaves a child behind, then becomes the server: the child must die too.
    server = env_server()
    command = ["sh", "-c", 'sleep 3600 & exec "$0" "$@"', *server.pop("command")]
    core.create_namespaced_pod(namespace, pod_manifest("doomed", {**server, "command": command}))
    ip, pid = running_pid(core, namespace, "doomed")
    wait_for("the server on the pod IP", lambda: http_get(f"http://{ip}:8000/env"))
    tree = wait_for("the shell's child", lambda: (t if len(t := process_tree(pid)) > 1 else None))

    delete_and_wait_gone(core, namespace, "doomed")
    wait_for(f"processes {tree} gone", lambda: not any(pid_alive(p) for p in tree), timeout=30)
    assert http_get(f"http://{ip}:8000/env") is None
    assert pod_runner.pids(namespace, "doomed") == {}


def test_a_process_that_exits_marks_the_pod_failed_with_its_exit_code(core, namespace,
                                                                      pod_runner):
    core.create_namespaced_pod(namespace, pod_manifest("crash", {
        "command": ["python", "-c", "import sys, time; time.sleep(1); sys.exit(3)"]}))

    def failed() -> Any:
        pod = core.read_namespaced_pod("crash", namespace)
        return pod if pod.status.phase == "Failed" else None
    pod = wait_for("pod Failed", failed)
    state = pod.status.container_statuses[0].state
    assert state.terminated.exit_code == 3
    assert state.terminated.reason == "Error"
    ready = {c.type: c.status for c in pod.status.conditions}["Ready"]
    assert ready == "False"
    log = pod_runner.log_path(namespace, "crash", "main").read_text()
    assert "sys.exit(3)" in log
    # It stays Failed (kwok does not bring it back) and the runner does not start it again,
    # also after its resync (every 2 s) re-delivers the pod: a negative check needs a wait.
    time.sleep(3)
    assert core.read_namespaced_pod("crash", namespace).status.phase == "Failed"
    assert pod_runner.pids(namespace, "crash") == {}


def test_files_in_the_claim_survive_pod_delete_and_recreate(core, namespace, pod_runner):
    make_claim(core, pod_runner, namespace, "home")
    writer = pod_manifest("nb", {
        "command": ["python", "-c",
                    "import pathlib, time; pathlib.Path('notes.txt').write_text('$(POD_IP)');"
                    " time.sleep(3600)"], "env": [POD_IP_ENV]}, claim="home")
    core.create_namespaced_pod(namespace, writer)
    first_ip, first_pid = running_pid(core, namespace, "nb")
    notes = pod_runner.pvc_dir(namespace, "home") / "notes.txt"
    wait_for("the file written by the first pod", notes.exists)

    delete_and_wait_gone(core, namespace, "nb")
    # The new pod may get the same IP at once (kwok reuses it); it is created right away, so
    # the runner must stop the old process first (it handles events in order).
    core.create_namespaced_pod(namespace, pod_manifest("nb", env_server(), claim="home"))
    ip, _ = running_pid(core, namespace, "nb")
    answer = wait_for("the second pod's server", lambda: http_get(f"http://{ip}:8000/notes.txt"))
    assert answer == (200, first_ip.encode())
    assert not pid_alive(first_pid)


def test_a_missing_secret_holds_the_container_until_it_exists(core, namespace, pod_runner):
    core.create_namespaced_pod(namespace, pod_manifest("waits", env_server(env=[
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}])))

    def config_error() -> str | None:
        statuses = core.read_namespaced_pod("waits", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting and waiting.reason == "CreateContainerConfigError":
            return waiting.message
        return None
    message = wait_for("CreateContainerConfigError", config_error)
    assert f"Secret {namespace}/later not found" in message
    assert pod_runner.pids(namespace, "waits") == {}

    core.create_namespaced_secret(namespace, {"apiVersion": "v1", "kind": "Secret",
                                              "metadata": {"name": "later"},
                                              "stringData": {"token": "now"}})
    ip, _ = running_pid(core, namespace, "waits")
    answer = wait_for("the server", lambda: http_get(f"http://{ip}:8000/env"))
    assert json.loads(answer[1])["env"]["TOKEN"] == "now"


def test_pods_without_the_toleration_stay_off_the_loopback_node(core, namespace, loopback_node,
                                                                pod_runner):
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "main", "image": "local",
                                 "command": ["python", "-c", "raise SystemExit(9)"]}]}})
    pod = wait_for("plain pod Running on a kwok node", lambda: (
        p if (p := core.read_namespaced_pod("plain", namespace)).status.phase == "Running"
        else None))
    assert pod.spec.node_name == FAKE_NODE != loopback_node
    # kwok's own pods have loopback IPs too (harness.cluster.POD_CIDR), never in the runner's range.
    runner_cidr = ipaddress.ip_network(core.read_node(loopback_node).spec.pod_cidr)
    assert ipaddress.ip_address(pod.status.pod_ip) not in runner_cidr
    assert pod_runner.pids(namespace, "plain") == {}


def test_dev_cluster_opt_in_creates_the_loopback_node():
    with DevCluster(loopback_node=True) as dev, \
            config.new_client_from_config(config_file=str(dev.kubeconfig)) as api:
        node = client.CoreV1Api(api).read_node(LOOPBACK_NODE)
    assert node.spec.pod_cidr == dev.loopback_cidr
    assert ipaddress.ip_network(dev.loopback_cidr).subnet_of(ipaddress.ip_network("127.0.0.0/8"))
    # (The node controller may add node.kubernetes.io/not-ready for a moment; not ours.)
    assert (LOOPBACK_KEY, "NoSchedule") in [(t.key, t.effect) for t in node.spec.taints]
    assert node.metadata.labels[LOOPBACK_KEY] == "true"
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_each_claim_gets_its_own_volume_whatever_the_name_lengths(core, namespace, pod_runner):
    assert len(namespace) > 40  # test namespaces are long: PV names must not be cut to a clash
    claims = ["a" * 50 + "-workspace", "a" * 50 + "-scratch", "b"]
    for claim in claims:
        make_claim(core, pod_runner, namespace, claim)

    def bound() -> dict[str, str] | None:
        pvcs = {c: core.read_namespaced_persistent_volume_claim(c, namespace) for c in claims}
        if all(p.status.phase == "Bound" for p in pvcs.values()):
            return {c: p.spec.volume_name for c, p in pvcs.items()}
        return None
    volumes = wait_for("every claim Bound", bound)
    assert len(set(volumes.values())) == len(claims)
    for claim, volume in volumes.items():
        pv = core.read_persistent_volume(volume)
        assert pv.spec.host_path.path == str(pod_runner.pvc_dir(namespace, claim))


def test_a_command_that_does_not_exist_fails_the_pod_with_127(core, namespace, pod_runner):
    core.create_namespaced_pod(namespace, pod_manifest("typo", {"command": ["no-such-program"]}))

    def failed() -> Any:
        pod = core.read_namespaced_pod("typo", namespace)
        return pod if pod.status.phase == "Failed" else None
    pod = wait_for("pod Failed", failed)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 127
    assert "no-such-program" in pod_runner.log_path(namespace, "typo", "main").read_text()
