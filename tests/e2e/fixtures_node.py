"""pytest plugin: one real node per session (registered by conftest.py).

`real_cluster` (session) is a harness.cluster.DevCluster with `real_node=True`: the control plane
plus kubelet + containerd + runc + CNI, kube-proxy and CoreDNS on this machine, with the notebook
image (tools/image/notebook.sh) imported. Needs root and the node tools
(tools/harness/node/build.sh). One real node per machine, so the tests that use it (marked
`realnode`; run them alone with `pytest -m realnode`) share this one, and it is torn down at
session end, also when tests fail. The bring-up time is printed.

`node_namespace`: a fresh namespace on it per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from harness import paths
from harness.cluster import DevCluster

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
