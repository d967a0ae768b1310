"""pytest plugin: a real Kubernetes cluster for end-to-end tests (registered by conftest.py).

Fixtures are lazy: the control plane starts only when a test asks for `cluster` (directly or
through `namespace` / `crds_installed`), once per session, and is torn down at session end,
also when tests fail.

By default the cluster is the harness's own (harness.cluster.DevCluster, built by
`bash tools/harness/build.sh`). To run the same tests against a cluster you already have
(kind, k3d, a real one), opt in with

    JUPYTERNETES_E2E_KUBECONFIG=$KUBECONFIG pytest -m e2e
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from harness.cluster import DevCluster
from harness.crds import apply_crds
from jupyternetes.crd.definitions import load_crd_documents

EXTERNAL_KUBECONFIG_ENV = "JUPYTERNETES_E2E_KUBECONFIG"


@dataclass
class ClusterHandle:
    """What tests get from the `cluster` fixture, whoever runs the cluster."""

    kubeconfig: Path
    server: str
    dev: DevCluster | None = None  # None when pointed at the user's own cluster

    def api_client(self) -> client.ApiClient:
        """A fresh ApiClient for this cluster (callers may close it; nothing is shared)."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _server_of(kubeconfig: Path) -> str:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return str(cfg.host)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{EXTERNAL_KUBECONFIG_ENV}={external} does not name a kubeconfig file; "
                "unset it to use the harness's own cluster"
            )
        yield ClusterHandle(kubeconfig=path, server=_server_of(path))
        return
    dev = DevCluster()
    dev.start()
    try:
        yield ClusterHandle(kubeconfig=dev.kubeconfig, server=dev.server, dev=dev)
    finally:
        dev.stop()


def _namespace_name(node_name: str) -> str:
    # DNS-1123 label: lowercase alnum and '-', at most 63 characters, unique per test run.
    stem = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={"jupyternetes.e2e/test": "true"})))
        try:
            yield name
        finally:
            # The namespace controller removes the contents; no need to wait for it.
            try:
                core.delete_namespace(name, propagation_policy="Background")
            except client.ApiException as e:
                if e.status != 404:
                    raise


@pytest.fixture(scope="session")
def crds_installed(cluster: ClusterHandle) -> list[str]:
    """Applies every YAML under crds/ and returns the CRD names, all Established."""
    with cluster.api_client() as api:
        return apply_crds(api, load_crd_documents())
