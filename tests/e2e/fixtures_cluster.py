"""pytest plugin: a real Kubernetes cluster for end-to-end tests (registered by conftest.py).

Fixtures are lazy: the control plane starts only when a test asks for `cluster` (directly or
through `namespace` / `crds_installed`), once per session, and is torn down at session end,
also when tests fail.

By default the cluster is the harness's own (jupyternetes.harness.cluster.DevCluster, built by
`bash tools/harness/build.sh`). To run the same tests against a cluster you already have
(kind, k3d, a real one), opt in with

    JUPYTERNETES_E2E_KUBECONFIG=$KUBECONFIG pytest -m e2e
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from jupyternetes.harness.cluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
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


def load_crd_documents(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition document in the YAML files under crd_dir."""
    files = sorted([*crd_dir.rglob("*.yaml"), *crd_dir.rglob("*.yml")])
    docs = [
        doc
        for f in files
        for doc in yaml.safe_load_all(f.read_text())
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    if not docs:
        raise FileNotFoundError(f"no CustomResourceDefinition YAML found under {crd_dir}")
    return docs


def apply_crds(api: client.ApiClient, docs: list[dict[str, Any]], timeout: float = 60) -> list[str]:
    """Create or replace each CRD and wait until the apiserver reports it Established.

    Raises ApiException when the apiserver rejects a CRD (e.g. a non-structural schema)."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(doc)
        except client.ApiException as e:
            if e.status != 409:
                raise
            current = ext.read_custom_resource_definition(name)
            body = {**doc, "metadata": {**doc["metadata"],
                                        "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, body)
        names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c for c in (crd.status.conditions or [])}
            established = conditions.get("Established")
            if established is not None and established.status == "True":
                break
            if time.monotonic() > deadline:
                problems = {t: f"{c.status} {c.reason}: {c.message}" for t, c in conditions.items()}
                raise TimeoutError(f"CRD {name} not Established after {timeout} s: {problems}")
            time.sleep(0.2)
    return names


@pytest.fixture(scope="session")
def crds_installed(cluster: ClusterHandle) -> list[str]:
    """Applies every YAML under crds/ and returns the CRD names, all Established."""
    with cluster.api_client() as api:
        return apply_crds(api, load_crd_documents())
