"""pytest plugin: one real node per session (registered by conftest.py).

`real_cluster` (session) is a harness.cluster.DevCluster with `real_node=True`: the control plane
plus kubelet + containerd + runc + CNI, kube-proxy and CoreDNS on this machine, with the notebook
image (tools/image/notebook.sh) imported. Needs root and the node tools
(tools/harness/node/build.sh). One real node per machine, so the tests that use it (marked
`realnode`; run them alone with `pytest -m realnode`) share this one, and it is torn down at
session end, also when tests fail. The bring-up time is printed.

`node_namespace`: a fresh namespace on it per test.

`operator_image` (session): the operator image (tools/image/operator.sh: `make image`'s build,
cached by its inputs' hash) imported into the node's containerd.

Helpers the real-node tests share: `wait_for`, `seed_template_for` (the seed template with the
notebook image, allowed for some namespaces), `hub_service` (the template's
hub.<ns>.svc.cluster.local:8081 pointing at a hub process on the bridge).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from harness import paths
from harness.cluster import DevCluster
from harness.examples import load_example, shared_template, strip_server_fields
from harness.node import GATEWAY
from jupyternetes.crd.definitions import GROUP, TEMPLATE_PLURAL, VERSION
from tests.e2e.loopback_pods import http_get

T = TypeVar("T")
TIMEOUT = 180.0  # a loaded 2-core machine; a pod is Ready in ~2 s when idle

REPO = Path(__file__).resolve().parents[2]


def notebook_image() -> tuple[Path, str]:
    """The notebook image's OCI archive and name, built by tools/image/notebook.sh when missing
    or stale (a no-op when up to date)."""
    subprocess.run(["bash", str(REPO / "tools/image/notebook.sh")], check=True,
                   env=dict(os.environ, PYTHON=os.environ.get("PYTHON", _venv_python())))
    archive = paths.cache_dir() / "image" / "jupyternetes-notebook.oci.tar"
    return archive, Path(f"{archive}.image").read_text().strip()


def _venv_python() -> str:
    return sys.executable


@dataclass
class RealCluster:
    dev: DevCluster
    notebook_image: str  # name of the imported notebook image (imagePullPolicy: Never)

    @property
    def kubeconfig(self) -> Path:
        return self.dev.kubeconfig


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[RealCluster]:
    if os.geteuid() != 0:
        pytest.fail("the real-node tests need root (containerd, runc, CNI bridge, kubelet)")
    archive, image = notebook_image()
    t0 = time.monotonic()
    dev = DevCluster(real_node=True, node_images=(archive,))
    dev.start()
    line = (f"real node up in {time.monotonic() - t0:.1f} s "
            f"({', '.join(f'{k} {v:.1f}' for k, v in dev.timing.items())})")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    try:
        yield RealCluster(dev, image)
    finally:
        dev.stop()


@pytest.fixture
def node_api(real_cluster: RealCluster) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=str(real_cluster.kubeconfig)) as api:
        yield api


@pytest.fixture
def node_namespace(node_api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(node_api)
    name = f"rn-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def operator_image(real_cluster: RealCluster) -> str:
    """The operator image's name, built when its inputs changed and imported into containerd."""
    proc = subprocess.run(["bash", str(REPO / "tools/image/operator.sh")], check=True,
                          stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHON=os.environ.get("PYTHON", _venv_python())))
    image = proc.stdout.strip().splitlines()[-1]
    assert real_cluster.dev.node is not None
    real_cluster.dev.node.import_image(paths.cache_dir() / "image" /
                                       "jupyternetes-operator.oci.tar")
    return image


@pytest.fixture(scope="session")
def hub_image(real_cluster: RealCluster) -> str:
    """The hub image's name (tools/image/hub.sh, cached by its inputs' hash), imported."""
    proc = subprocess.run(["bash", str(REPO / "tools/image/hub.sh")], check=True,
                          stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHON=os.environ.get("PYTHON", _venv_python())))
    assert real_cluster.dev.node is not None
    real_cluster.dev.node.import_image(paths.cache_dir() / "image" / "jupyternetes-hub.oci.tar")
    return proc.stdout.strip().splitlines()[-1]


# ---- helpers ---------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], T | None], timeout: float = TIMEOUT,
             describe: Callable[[], str] = lambda: "") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{describe()}")


def http_text(url: str) -> str | None:
    """The body of a 2xx answer from this host, None otherwise (nothing answers, an error)."""
    answer = http_get(url)
    return answer[1].decode() if answer and 200 <= answer[0] < 300 else None


def ensure(create: Callable[[], object]) -> None:
    """Create, accepting that it exists already (the node is shared by the session)."""
    try:
        create()
    except client.ApiException as e:
        if e.status != 409:
            raise


def seed_template_for(api: client.ApiClient, image: str, namespaces: tuple[str, ...],
                      ) -> dict[str, Any]:
    """examples/seed-template.yaml in its namespace (`kadense`), its notebook image swapped
    for `image` (imagePullPolicy Never), usable from `namespaces`; created or updated."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    template = shared_template(strip_server_fields(load_example("seed-template.yaml")),
                               namespaces)
    hub_ns = template["metadata"]["namespace"]
    notebook = template["spec"]["pods"][0]["spec"]["containers"][0]
    notebook.update(image=image, imagePullPolicy="Never")
    template["spec"]["pods"][0]["spec"]["terminationGracePeriodSeconds"] = 2
    ensure(lambda: core.create_namespace({"metadata": {"name": hub_ns}}))
    ensure(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, hub_ns, TEMPLATE_PLURAL, template))
    custom.patch_namespaced_custom_object(GROUP, VERSION, hub_ns, TEMPLATE_PLURAL,
                                          template["metadata"]["name"],
                                          {"spec": template["spec"]})
    return template


def hub_service(api: client.ApiClient, namespace: str, hub_port: int) -> None:
    """The hub's Service as z2jh names it (`hub`, port 8081), its endpoint a hub process
    listening on the bridge address (harness.hub.Hub(hub_host=GATEWAY))."""
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    with contextlib.suppress(client.ApiException):
        core.delete_namespaced_service("hub", namespace)
    with contextlib.suppress(client.ApiException):
        discovery.delete_namespaced_endpoint_slice("hub", namespace)
    core.create_namespaced_service(namespace, {"metadata": {"name": "hub"}, "spec": {
        "ports": [{"name": "hub", "port": 8081, "targetPort": hub_port}]}})
    discovery.create_namespaced_endpoint_slice(namespace, {
        "metadata": {"name": "hub", "labels": {"kubernetes.io/service-name": "hub"}},
        "addressType": "IPv4", "endpoints": [{"addresses": [GATEWAY]}],
        "ports": [{"name": "hub", "port": hub_port, "protocol": "TCP"}]})
