"""The real Pulumi engine (harness-built CLI and provider plugin) against the real apiserver.

An Automation API inline stack creates a ConfigMap, a PVC and a Pod in a test namespace through an
explicit kubernetes.Provider; preview reports the creates, a second up changes nothing, destroy
removes everything (checked through the Kubernetes API, not through Pulumi's own state).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
from kubernetes import client
from pulumi import automation as auto

from harness import pulumi_env as harness_pulumi
from tests.e2e.fixtures_cluster import ClusterHandle
from tests.e2e.fixtures_pulumi import PulumiTestEnv

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CLI_GO_MOD = REPO / "tools" / "harness" / "pulumi" / "cli" / "go.mod"
PLUGIN_VERSION_FILE = REPO / "tools" / "harness" / "pulumi" / "kubernetes" / "VERSION"

SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
CONFIGMAP, PVC, POD = "engine-cm", "engine-pvc", "engine-pod"
# Stack resource + explicit provider + ConfigMap + PVC + Pod.
RESOURCE_COUNT = 5


def _pinned_cli_version() -> str:
    """The pulumi pkg/v3 version the harness wrapper module pins (what the build stamps in)."""
    match = re.search(r"^\s*github\.com/pulumi/pulumi/pkg/v3 (v\S+)", CLI_GO_MOD.read_text(), re.M)
    assert match, f"no github.com/pulumi/pulumi/pkg/v3 requirement in {CLI_GO_MOD}"
    return match.group(1)


def test_cli_and_plugin_are_the_pinned_versions(pulumi_env: PulumiTestEnv) -> None:
    # The CLI reports the version its wrapper module pins (the Automation API checks this too).
    out = subprocess.run([pulumi_env.command.command, "version"], env=pulumi_env.env,
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == _pinned_cli_version()
    assert pulumi_env.command.version is not None
    assert f"v{pulumi_env.command.version}" == _pinned_cli_version()

    # The plugin the harness installs is the release of the Python SDK in use, so the SDK's
    # resource registrations (which carry the SDK version) resolve to it without a download.
    sdk_version = importlib.metadata.version("pulumi_kubernetes")
    assert PLUGIN_VERSION_FILE.read_text().strip() == sdk_version, (
        f"{PLUGIN_VERSION_FILE} and the installed pulumi-kubernetes {sdk_version} disagree; "
        "pin them to the same release and rebuild with `bash tools/harness/build.sh`")
    plugin = harness_pulumi.kubernetes_plugin_dir(sdk_version) / "pulumi-resource-kubernetes"
    assert plugin.is_file(), f"{plugin} missing; run `bash tools/harness/build.sh`"

    listed = subprocess.run([pulumi_env.command.command, "plugin", "ls", "--json"],
                            env=pulumi_env.env, capture_output=True, text=True, check=True,
                            timeout=60)
    plugins = {(p["kind"], p["name"], p["version"]) for p in json.loads(listed.stdout)}
    assert ("resource", "kubernetes", sdk_version) in plugins

    # Load the plugin through the engine: the schema it serves carries the pinned version.
    schema = subprocess.run(
        [pulumi_env.command.command, "package", "get-schema", f"kubernetes@{sdk_version}"],
        env=pulumi_env.env, cwd=pulumi_env.work_dir, capture_output=True, text=True,
        timeout=120)
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout)["version"] == sdk_version


def _program(kubeconfig: str, namespace: str) -> Callable[[], None]:
    def program() -> None:
        provider = k8s.Provider("cluster", kubeconfig=kubeconfig)
        opts = pulumi.ResourceOptions(provider=provider)

        def meta(name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace,
                                              annotations=SKIP_AWAIT)

        config_map = k8s.core.v1.ConfigMap(
            "config", metadata=meta(CONFIGMAP), data={"greeting": "hello"}, opts=opts)
        claim = k8s.core.v1.PersistentVolumeClaim(
            "home", metadata=meta(PVC),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteOnce"],
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                    requests={"storage": "1Gi"})),
            opts=opts)
        pod = k8s.core.v1.Pod(
            "server", metadata=meta(POD),
            spec=k8s.core.v1.PodSpecArgs(
                containers=[k8s.core.v1.ContainerArgs(
                    name="notebook", image="quay.io/jupyter/base-notebook:latest",
                    volume_mounts=[
                        k8s.core.v1.VolumeMountArgs(name="home", mount_path="/home/jovyan"),
                        k8s.core.v1.VolumeMountArgs(name="config", mount_path="/etc/config"),
                    ])],
                volumes=[
                    k8s.core.v1.VolumeArgs(
                        name="home",
                        persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                            claim_name=claim.metadata.name)),
                    k8s.core.v1.VolumeArgs(
                        name="config",
                        config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                            name=config_map.metadata.name)),
                ]),
            opts=opts)
        pulumi.export("pod_uid", pod.metadata.uid)
        pulumi.export("configmap_uid", config_map.metadata.uid)

    return program


def _counts(summary: dict[auto.OpType, int] | dict[str, int] | None) -> dict[str, int]:
    """Change summary as plain {"create": n, ...}, without zero entries."""
    return {str(getattr(k, "value", k)): v for k, v in (summary or {}).items() if v}


def _existing(core: client.CoreV1Api, namespace: str) -> dict[str, object]:
    """The three objects as the apiserver has them (None where absent)."""
    readers = {
        CONFIGMAP: core.read_namespaced_config_map,
        PVC: core.read_namespaced_persistent_volume_claim,
        POD: core.read_namespaced_pod,
    }
    found: dict[str, object] = {}
    for name, read in readers.items():
        try:
            found[name] = read(name, namespace)
        except client.ApiException as e:
            if e.status != 404:
                raise
            found[name] = None
    return found


def test_inline_stack_creates_previews_noops_and_destroys(
    cluster: ClusterHandle, namespace: str, pulumi_env: PulumiTestEnv
) -> None:
    stack = auto.create_stack(
        stack_name="engine-e2e",
        project_name="jupyternetes-e2e",
        program=_program(cluster.kubeconfig.read_text(), namespace),
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(pulumi_env.work_dir),
            pulumi_home=str(pulumi_env.pulumi_home),
            pulumi_command=pulumi_env.command,
            env_vars=pulumi_env.env,
            secrets_provider="passphrase",
        ),
    )
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            preview = stack.preview()
            assert _counts(preview.change_summary) == {"create": RESOURCE_COUNT}
            assert all(v is None for v in _existing(core, namespace).values()), \
                "preview must not create anything"

            first = stack.up()
            assert first.summary.result == "succeeded"
            assert _counts(first.summary.resource_changes) == {"create": RESOURCE_COUNT}
            objects = _existing(core, namespace)
            for name, obj in objects.items():
                assert obj is not None, f"{name} not created in {namespace}"
                assert obj.metadata.annotations["pulumi.com/skipAwait"] == "true"
                # Written by the provider (server-side apply field manager), not by anyone else.
                managers = {m.manager for m in obj.metadata.managed_fields or []}
                assert any(m.startswith("pulumi-kubernetes") for m in managers), managers
            assert first.outputs["pod_uid"].value == objects[POD].metadata.uid
            assert first.outputs["configmap_uid"].value == objects[CONFIGMAP].metadata.uid

            second = stack.up()
            assert second.summary.result == "succeeded"
            assert _counts(second.summary.resource_changes) == {"same": RESOURCE_COUNT}
            assert _existing(core, namespace)[POD].metadata.uid == objects[POD].metadata.uid

            gone = stack.destroy()
            assert gone.summary.result == "succeeded"
            assert _counts(gone.summary.resource_changes) == {"delete": RESOURCE_COUNT}
            # Deletion is asynchronous in Kubernetes (pod grace period, PVC protection finalizer).
            deadline = time.monotonic() + 90
            while (left := [n for n, o in _existing(core, namespace).items() if o is not None]):
                assert time.monotonic() < deadline, f"still present after destroy: {left}"
                time.sleep(0.5)
        finally:
            stack.workspace.remove_stack(stack.name, force=True)


PROJECT_PROGRAM = '''\
import pulumi
import pulumi_kubernetes as k8s

config = pulumi.Config()
provider = k8s.Provider("cluster", kubeconfig=config.require_secret("kubeconfig"))
cm = k8s.core.v1.ConfigMap(
    "config",
    metadata={"name": "project-cm", "namespace": config.require("namespace"),
              "annotations": {"pulumi.com/skipAwait": "true"}},
    data={"runtime": "python"},
    opts=pulumi.ResourceOptions(provider=provider),
)
pulumi.export("uid", cm.metadata.uid)
'''


def test_python_project_runs_through_the_language_host(
    cluster: ClusterHandle, namespace: str, pulumi_env: PulumiTestEnv
) -> None:
    """`pulumi up` of a Pulumi.yaml project (runtime: python): the harness language host runs it."""
    project = pulumi_env.work_dir
    (project / "Pulumi.yaml").write_text("name: jupyternetes-project-e2e\nruntime: python\n")
    (project / "__main__.py").write_text(PROJECT_PROGRAM)
    stack = auto.create_stack(
        "project-e2e",
        work_dir=str(project),
        opts=auto.LocalWorkspaceOptions(
            pulumi_home=str(pulumi_env.pulumi_home),
            pulumi_command=pulumi_env.command,
            env_vars=pulumi_env.env,
            secrets_provider="passphrase",
        ),
    )
    stack.set_config("kubeconfig", auto.ConfigValue(cluster.kubeconfig.read_text(), secret=True))
    stack.set_config("namespace", auto.ConfigValue(namespace))
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            up = stack.up()
            assert up.summary.result == "succeeded"
            # Stack + provider + ConfigMap.
            assert _counts(up.summary.resource_changes) == {"create": 3}
            cm = core.read_namespaced_config_map("project-cm", namespace)
            assert cm.data == {"runtime": "python"}
            assert up.outputs["uid"].value == cm.metadata.uid
            # The kubeconfig went in as a secret: it must not be stored in plain text.
            state = "".join(p.read_text() for p in
                            Path(pulumi_env.backend_url.removeprefix("file://")).rglob("*.json"))
            assert "project-cm" in state, "stack state not found under the file:// backend"
            assert "certificate-authority-data" not in state

            down = stack.destroy()
            assert down.summary.result == "succeeded"
            with pytest.raises(client.ApiException) as missing:
                core.read_namespaced_config_map("project-cm", namespace)
            assert missing.value.status == 404
        finally:
            stack.workspace.remove_stack(stack.name, force=True)
