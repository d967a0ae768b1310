"""End-to-end: the harness's control plane is a real, working Kubernetes API.

Through the Python kubernetes client a namespace, ConfigMap, PVC and Pod are created, and the
pod is scheduled onto kwok's fake node, gets an IP and reaches Running; nothing writes pod
status except kwok. The shell launcher leaves no process behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from harness.cluster import FAKE_NODE, DevCluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KUBE_GO_MOD = REPO / "tools" / "harness" / "kube" / "kubernetes" / "go.mod"


def _wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_version_reports_a_real_release(cluster):
    with cluster.api_client() as api:
        info = client.VersionApi(api).get_code()
    # pulumi-kubernetes refuses a cluster that reports v0.0: the ldflags must be set.
    m = re.fullmatch(r"v1\.(\d+)\.\d+", info.git_version)
    assert m, info.git_version
    assert info.major == "1"
    assert info.minor.rstrip("+") == m.group(1)
    if cluster.dev is not None:
        # The harness's apiserver reports exactly the release its wrapper module pins.
        pinned = re.search(r"^require k8s\.io/kubernetes (v\S+)$", KUBE_GO_MOD.read_text(), re.M)
        assert pinned and info.git_version == pinned.group(1)


def test_default_service_account_exists(cluster):
    with cluster.api_client() as api:
        sa = client.CoreV1Api(api).read_namespaced_service_account("default", "default")
    assert sa.metadata.name == "default"


def test_namespace_configmap_pvc_and_running_pod(cluster, namespace):
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        assert core.read_namespace(namespace).status.phase == "Active"
        # A fresh namespace gets its service account from the controller-manager; pods are
        # refused by the ServiceAccount admission plugin until it exists.
        _wait_for("default service account in the test namespace",
                  lambda: any(sa.metadata.name == "default" for sa in
                              core.list_namespaced_service_account(namespace).items))

        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="settings"), data={"greeting": "hello"}))
        assert core.read_namespaced_config_map("settings", namespace).data == {"greeting": "hello"}

        core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="workspace"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
        pvc = core.read_namespaced_persistent_volume_claim("workspace", namespace)
        assert pvc.spec.resources.requests["storage"] == "1Gi"

        core.create_namespaced_pod(namespace, client.V1Pod(
            metadata=client.V1ObjectMeta(name="notebook", labels={"app": "notebook"}),
            spec=client.V1PodSpec(containers=[client.V1Container(
                name="notebook", image="quay.io/jupyter/base-notebook:latest",
                env=[client.V1EnvVar(name="GREETING", value_from=client.V1EnvVarSource(
                    config_map_key_ref=client.V1ConfigMapKeySelector(
                        name="settings", key="greeting")))],
                ports=[client.V1ContainerPort(container_port=8888, name="http")])])))

        def running():
            pod = core.read_namespaced_pod("notebook", namespace)
            return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

        pod = _wait_for("pod notebook Running with an IP", running)
        assert pod.spec.node_name, "the scheduler did not bind the pod"
        if cluster.dev is not None:
            assert pod.spec.node_name == FAKE_NODE
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", pod.status.pod_ip)
        ready = {c.type: c.status for c in pod.status.conditions}
        assert ready.get("PodScheduled") == "True"
        assert ready.get("Ready") == "True"

        core.delete_namespaced_pod("notebook", namespace, grace_period_seconds=0)
        _wait_for("pod notebook deleted",
                  lambda: not core.list_namespaced_pod(namespace).items, timeout=30)


def _pod(name: str, image: str = "local") -> client.V1Pod:
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
        containers=[client.V1Container(name="main", image=image)]))


def _running(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod | None:
    try:
        pod = core.read_namespaced_pod(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return pod if pod.status.phase == "Running" else None


def test_kwok_cannot_delete_a_pod_that_is_not_terminating(cluster, namespace):
    """kwok (v0.8.0) finishes a pod's deletion with a delete by name, without the UID
    precondition a kubelet sends; a job it queued for a pod that is gone then deletes the next
    pod of that name. The harness's admission policy refuses kwok a delete of a pod that is not
    terminating, so only its stale jobs fail, and its real ones still finish deletions."""
    if cluster.dev is None:
        pytest.skip("the guard is the harness's own; an external cluster runs no kwok")
    with cluster.api_client() as api, \
            config.new_client_from_config(config_file=str(cluster.dev.kwok_kubeconfig)) as kwok:
        core, as_kwok = client.CoreV1Api(api), client.CoreV1Api(kwok)
        _wait_for("default service account", lambda: any(
            sa.metadata.name == "default"
            for sa in core.list_namespaced_service_account(namespace).items))
        core.create_namespaced_pod(namespace, _pod("same"))
        uid = _wait_for("pod same Running", lambda: _running(core, namespace, "same")).metadata.uid

        # What a stale job does: a delete by name, grace 0, of a pod that nobody is deleting.
        with pytest.raises(client.ApiException) as refused:
            as_kwok.delete_namespaced_pod("same", namespace, grace_period_seconds=0)
        assert refused.value.status == 403
        assert "not terminating" in refused.value.body
        assert core.read_namespaced_pod("same", namespace).metadata.uid == uid

        # Deleted and re-created under the same name, again and again: every new pod lives on
        # (kwok's own job for each deleted pod still ends it).
        for _ in range(20):
            core.delete_namespaced_pod("same", namespace)
            _wait_for("the old pod gone", lambda old=uid: not any(
                p.metadata.uid == old for p in core.list_namespaced_pod(namespace).items))
            uid = core.create_namespaced_pod(namespace, _pod("same")).metadata.uid
            _wait_for("the new pod Running", lambda: _running(core, namespace, "same"))
        assert core.read_namespaced_pod("same", namespace).metadata.uid == uid


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A zombie is already dead; only count processes that still run.
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"):
            continue
        alive.append(pid)
    return alive


def test_shell_up_env_down_leaves_no_process(tmp_path):
    root = tmp_path / "cluster"
    cmd = [sys.executable, "-m", "harness.cluster"]
    started = time.monotonic()
    up = subprocess.run([*cmd, "up", str(root)], cwd=REPO, capture_output=True, text=True,
                        timeout=180)
    assert up.returncode == 0, up.stderr
    elapsed = time.monotonic() - started
    kubeconfig = root / "kubeconfig"
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    state = json.loads((root / "state.json").read_text())
    pids = [state["supervisor"], *state["pids"]]
    assert len(state["pids"]) == 5  # etcd, apiserver, controller-manager, scheduler, kwok
    assert not set(pids) - set(_pids_alive(pids)), "a component died right after start"
    print(f"shell up took {elapsed:.1f} s; cluster timing {state['timing']}")

    env = subprocess.run([*cmd, "env", str(root)], cwd=REPO, capture_output=True, text=True)
    assert env.returncode == 0
    assert env.stdout.startswith(f"export KUBECONFIG={kubeconfig}\n")

    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        nodes = client.CoreV1Api(api).list_node().items
    assert [n.metadata.name for n in nodes] == [FAKE_NODE]

    down = subprocess.run([*cmd, "down", str(root)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 0, down.stderr
    assert _pids_alive(pids) == []
    assert not root.exists()


LAUNCH_AND_HANG = """
import json, sys, time
from harness.cluster import DevCluster
c = DevCluster()
c.start()
print(json.dumps({"pids": c.pids(), "root": str(c.root), "etcd": str(c._etcd_dir)}), flush=True)
time.sleep(600)
"""


def test_components_die_with_a_killed_launcher():
    """A test process killed with SIGKILL runs no cleanup code; the control plane must still go
    (PR_SET_PDEATHSIG), and the next start removes the folders it left."""
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH_AND_HANG], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert len(info["pids"]) == 5
    _wait_for("components to exit", lambda: _pids_alive(info["pids"]) == [], timeout=15)
    assert Path(info["root"]).exists()  # nothing ran to remove it...

    with DevCluster():
        pass
    # ...until the next cluster started.
    assert not Path(info["root"]).exists()
    assert not Path(info["etcd"]).exists()
