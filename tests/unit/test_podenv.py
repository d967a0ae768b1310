"""podenv + the pod runner's status builders: what the harness's container runtime computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness import podenv
from harness.cluster import loopback_cidr, loopback_node_manifest
from harness.runtime_status import config_error_status, exit_code, terminated_status

POD = {
    "metadata": {"name": "nb", "namespace": "users", "uid": "u-1",
                 "labels": {"app": "jupyter"}},
    "spec": {"nodeName": "loopback-node-0", "containers": []},
    "status": {"podIP": "127.42.0.3", "hostIP": "127.0.0.1"},
}
SECRETS = {"hub-token": {"token": "s3cret", "other": "x"}}
CONFIGMAPS = {"settings": {"GREETING": "hello", "bad key": "skipped", "PORT": "8888"}}


def env_of(container: dict) -> dict[str, str]:
    return podenv.container_env(POD, container, secrets=SECRETS.get,
                                configmaps=CONFIGMAPS.get)


def test_literal_values_refs_and_expansion_in_order():
    env = env_of({"name": "c", "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "$(A)-$(UNDEFINED)-$$(A)"},
        {"name": "EMPTY"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}},
        {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "GREETING"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "LATER", "value": "$(C)"},
        {"name": "C", "value": "c"},
    ]})
    assert env == {"A": "1", "B": "1-$(UNDEFINED)-$(A)", "EMPTY": "", "TOKEN": "s3cret",
                   "G": "hello", "IP": "127.42.0.3", "APP": "jupyter", "LATER": "$(C)",
                   "C": "c"}


def test_env_from_with_prefix_skips_invalid_names_and_env_wins():
    env = env_of({"name": "c",
                  "envFrom": [{"configMapRef": {"name": "settings"}},
                              {"secretRef": {"name": "hub-token"}, "prefix": "HUB_"},
                              {"secretRef": {"name": "absent", "optional": True}}],
                  "env": [{"name": "PORT", "value": "9999"}]})
    assert env == {"GREETING": "hello", "PORT": "9999", "HUB_token": "s3cret", "HUB_other": "x"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"secretKeyRef": {"name": "absent", "key": "k"}}, "Secret users/absent not found"),
    ({"secretKeyRef": {"name": "hub-token", "key": "nope"}},
     "couldn't find key nope in Secret users/hub-token"),
    ({"configMapKeyRef": {"name": "settings", "key": "nope"}},
     "couldn't find key nope in ConfigMap users/settings"),
    ({"resourceFieldRef": {"resource": "limits.cpu"}}, "not supported"),
    ({"fieldRef": {"fieldPath": "spec.unknown"}}, "'spec.unknown' is not supported"),
])
def test_missing_or_unsupported_sources_name_the_pod_container_and_variable(entry, message):
    with pytest.raises(podenv.ContainerConfigError) as err:
        env_of({"name": "notebook", "env": [{"name": "X", "valueFrom": entry}]})
    assert "pod users/nb container notebook: env[0] (X)" in str(err.value)
    assert message in str(err.value)


def test_optional_refs_leave_the_variable_unset():
    env = env_of({"name": "c", "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k",
                                                     "optional": True}}},
        {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope",
                                                        "optional": True}}}]})
    assert env == {}


def test_missing_env_from_source_is_an_error_unless_optional():
    with pytest.raises(podenv.ContainerConfigError, match=r"envFrom\[0\]: ConfigMap users/gone"):
        env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "gone"}}]})


@given(st.text(alphabet="ab$()_X", max_size=30))
def test_expand_without_definitions_only_unescapes_double_dollars(text):
    # Undefined references stay as written; `$$` is the one thing that changes.
    assert podenv.expand(text, {}) == podenv.expand(text.replace("$$", "\0"), {}).replace(
        "\0", "$")


@pytest.mark.parametrize(("container", "argv"), [
    ({}, ["jupyterhub-singleuser"]),
    ({"args": ["--debug"]}, ["jupyterhub-singleuser", "--debug"]),
    ({"args": ["start-notebook.py", "--x"]}, ["start-notebook.py", "--x"]),
    ({"command": ["python", "-m", "http.server"], "args": ["--bind", "$(IP)", "8000"]},
     ["python", "-m", "http.server", "--bind", "127.42.0.3", "8000"]),
])
def test_argv_defaults_to_the_singleuser_server_and_expands_references(container, argv):
    assert podenv.container_argv(container, {"IP": "127.42.0.3"}) == argv


def test_singleuser_is_bound_to_the_pod_ip_and_serves_the_notebook_dir(tmp_path):
    argv = podenv.container_argv({}, {})
    assert podenv.is_singleuser(argv)
    assert not podenv.is_singleuser(["python"])
    flags = podenv.singleuser_flags("127.42.0.3", tmp_path, as_root=True)
    assert flags == ["--ServerApp.ip=127.42.0.3", f"--ServerApp.root_dir={tmp_path}",
                     "--allow-root"]
    assert "--allow-root" not in podenv.singleuser_flags("127.42.0.3", tmp_path, as_root=False)


def mounts_for(container: dict, tmp_path: Path) -> tuple[podenv.Mounts, list[str]]:
    pod = {**POD, "spec": {"volumes": [
        {"name": "work", "persistentVolumeClaim": {"claimName": "nb-workspace"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "settings"}}]}}
    return podenv.container_mounts(
        pod, container, rootfs=tmp_path / "rootfs",
        claim_dir=lambda claim: tmp_path / "pvcs" / claim,
        empty_dir=lambda volume: tmp_path / "empty" / volume)


def test_mounts_map_claims_and_empty_dirs_longest_path_first(tmp_path):
    mounts, warnings = mounts_for({"volumeMounts": [
        {"name": "work", "mountPath": "/home/jovyan/work"},
        {"name": "scratch", "mountPath": "/home/jovyan/work/tmp"},
        {"name": "cfg", "mountPath": "/etc/cfg"}]}, tmp_path)
    assert mounts.claims == ("/home/jovyan/work",)
    assert mounts.host_path("/home/jovyan/work/a.ipynb") == tmp_path / "pvcs/nb-workspace/a.ipynb"
    assert mounts.host_path("/home/jovyan/work") == tmp_path / "pvcs/nb-workspace"
    assert mounts.host_path("/home/jovyan/work/tmp/x") == tmp_path / "empty/scratch/x"
    assert mounts.host_path("/home/jovyan/workbench") == tmp_path / "rootfs/home/jovyan/workbench"
    assert warnings and "'cfg'" in warnings[0] and "/etc/cfg" in warnings[0]


def test_working_dir_is_the_declared_one_else_the_first_claim_else_rootfs(tmp_path):
    mount = {"volumeMounts": [{"name": "work", "mountPath": "/home/jovyan/work"}]}
    mounts, _ = mounts_for(mount, tmp_path)
    assert podenv.working_dir(mount, mounts) == tmp_path / "pvcs/nb-workspace"
    declared = {**mount, "workingDir": "/home/jovyan"}
    assert podenv.working_dir(declared, mounts) == tmp_path / "rootfs/home/jovyan"
    sub = {"volumeMounts": [{"name": "work", "mountPath": "/w", "subPath": "u1"}]}
    mounts, _ = mounts_for(sub, tmp_path)
    assert podenv.working_dir(sub, mounts) == tmp_path / "pvcs/nb-workspace/u1"
    none, _ = mounts_for({}, tmp_path)
    assert podenv.working_dir({}, none) == tmp_path / "rootfs"


def test_exit_codes_as_a_kubelet_reports_them():
    assert exit_code(0) == 0
    assert exit_code(3) == 3
    assert exit_code(-9) == 137
    assert exit_code(-15) == 143


def test_terminated_status_fails_the_pod_with_each_exit_code():
    pod = {**POD, "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b"}]}}
    status = terminated_status(pod, {"a": (3, "t0", "pid://1"), "b": (0, "t0", "pid://2")}, "t1")
    assert status["phase"] == "Failed"
    a, b = status["containerStatuses"]
    assert a["state"]["terminated"] == {"exitCode": 3, "reason": "Error", "startedAt": "t0",
                                        "finishedAt": "t1", "containerID": "pid://1"}
    assert b["state"]["terminated"]["reason"] == "Completed"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False", "ContainersReady": "False"}
    ok = terminated_status(pod, {"a": (0, "t0", ""), "b": (0, "t0", "")}, "t1")
    assert ok["phase"] == "Succeeded"


def test_config_error_status_keeps_the_pod_waiting_with_the_message():
    pod = {**POD, "spec": {"containers": [{"name": "notebook"}]}}
    status = config_error_status(pod, "Secret users/x not found", "t")
    assert "phase" not in status
    waiting = status["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError",
                       "message": "Secret users/x not found"}


def test_loopback_node_is_tainted_labelled_and_gets_a_per_cluster_loopback_cidr():
    assert loopback_cidr(40123) == "127.156.187.0/24"
    assert loopback_cidr(40123) != loopback_cidr(40124)
    assert loopback_cidr(80) == "127.42.0.0/24"
    node = loopback_node_manifest("lb", "127.1.2.0/24")
    assert node["spec"]["podCIDR"] == "127.1.2.0/24"
    assert node["spec"]["taints"][0]["effect"] == "NoSchedule"
    assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}
