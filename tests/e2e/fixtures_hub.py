"""pytest plugin: the loopback node, its pod runner, and real JupyterHubs (registered by
conftest.py). All lazy: nothing starts unless a test asks.

- `loopback_node` (session): name of the kwok node whose pods get loopback IPs; put
  `cluster.loopback_placement()` into a pod spec (or a template's pod spec) to land there.
- `pod_runner` (session): the `PodRunner` playing that node's container runtime: its pods'
  containers run as local processes, bound to the pod IP. `pod_runner.provide_volume(ns, claim)`
  pre-binds a PersistentVolume (a new one once the old was released); `pod_runner.claim_dir(ns,
  claim)` is where the bound claim's files are (`pvc_dir` for the first volume of a name).
- `hub_factory` (per test): `hub_factory(namespace=..., spawner_config=..., extra_config=...,
  env=...)` starts a `Hub` (real jupyterhub + configurable-http-proxy) whose
  JupyternetesSpawner uses the test cluster's kubeconfig; every hub is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from harness.cluster import LOOPBACK_NODE, loopback_cidr
from harness.hub import Hub
from harness.podrunner import PodRunner, ensure_loopback_node
from tests.e2e.fixtures_cluster import ClusterHandle


@pytest.fixture(scope="session")
def loopback_node(cluster: ClusterHandle) -> str:
    port = urlparse(cluster.server).port or 0
    with cluster.api_client() as api:
        return ensure_loopback_node(api, loopback_cidr(port), LOOPBACK_NODE)


@pytest.fixture(scope="session")
def pod_runner(cluster: ClusterHandle, loopback_node: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRunner]:
    api = cluster.api_client()
    runner = PodRunner(api, tmp_path_factory.mktemp("podrunner"), node=loopback_node)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
        runner.delete_volumes()
        api.close()


@pytest.fixture
def hub_factory(cluster: ClusterHandle,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Hub]]:
    hubs: list[Hub] = []

    def make(namespace: str | None = None, spawner_config: dict[str, Any] | None = None,
             extra_config: str = "", env: dict[str, str] | None = None,
             start: bool = True) -> Hub:
        config: dict[str, Any] = {"kubeconfig": str(cluster.kubeconfig)}
        if namespace:
            config["namespace"] = namespace
            config["hub_namespace"] = namespace
        config.update(spawner_config or {})
        hub = Hub(root=tmp_path_factory.mktemp("hub"), spawner_config=config,
                  extra_config=extra_config, env=dict(env or {}))
        hubs.append(hub)
        return hub.start() if start else hub

    yield make
    for hub in hubs:
        hub.stop()
