"""The shared watch's change routing: which instance an object is about, and waking waiters
on the hub's loop from a watch thread (no apiserver: nothing here makes a request)."""

from __future__ import annotations

import asyncio
import threading
import time

from kubernetes import client

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.kube.client import Kube
from jupyternetes.spawner.cluster import SharedCluster


def make_cluster() -> SharedCluster:
    return SharedCluster("users", Kube(client.ApiClient(client.Configuration())), workers=2)


def test_objects_are_routed_to_their_instance() -> None:
    cluster = make_cluster()
    instance = {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                "metadata": {"name": "abc", "namespace": "users"}}
    pod = {"metadata": {"name": "abc-notebook", "namespace": "users",
                        "labels": {LABEL_INSTANCE: "abc"}}}
    instance_event = {"involvedObject": {"kind": INSTANCE_KIND, "name": "abc"}}
    unknown_pod_event = {"involvedObject": {"kind": "Pod", "name": "someone-else"}}
    assert cluster.instance_of(instance) == "abc"
    assert cluster.instance_of(pod) == "abc"  # list items carry no kind: labels decide
    assert cluster.instance_of(instance_event) == "abc"
    assert cluster.instance_of(unknown_pod_event) is None
    cluster.pods._apply("ADDED", pod)
    assert cluster.instance_of({"involvedObject": {"kind": "Pod",
                                                   "name": "abc-notebook"}}) == "abc"
    assert [p["metadata"]["name"] for p in cluster.cached_pods("abc")] == ["abc-notebook"]
    assert cluster.cached_pods("other") == []


def test_the_hubs_caches_keep_only_what_the_spawner_reads() -> None:
    cluster = make_cluster()
    managed = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    cluster.pods._apply("ADDED", {
        "metadata": {"name": "abc-notebook", "namespace": "users", "uid": "u1",
                     "labels": {LABEL_INSTANCE: "abc"}, "managedFields": managed},
        "spec": {"nodeName": "node-0", "volumes": [{"name": "home"}],
                 "containers": [{"name": "notebook", "image": "x", "env": [{"name": "A"}]}]},
        "status": {"phase": "Running", "podIP": "198.18.0.9", "hostIP": "198.18.0.1"}})
    cluster.instances._apply("ADDED", {
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "abc", "namespace": "users", "managedFields": managed,
                     "annotations": {"jupyternetes.kadense.io/token-pad": "00"}},
        "spec": {"template": {"name": "t"}}, "status": {"pods": {}}})
    [pod] = cluster.cached_pods("abc")
    assert pod["spec"] == {"nodeName": "node-0", "containers": [{"name": "notebook",
                                                                 "ports": []}]}
    assert pod["status"] == {"phase": "Running", "podIP": "198.18.0.9"}
    assert "managedFields" not in pod["metadata"] and pod["metadata"]["uid"] == "u1"
    instance = cluster.cached_instance("abc")
    assert "managedFields" not in instance["metadata"]
    assert instance["metadata"]["annotations"] == {"jupyternetes.kadense.io/token-pad": "00"}
    assert instance["spec"] == {"template": {"name": "t"}}


def test_a_watch_thread_wakes_only_the_waiters_of_that_instance() -> None:
    cluster = make_cluster()

    async def scenario() -> tuple[float, float]:
        cluster.loop = asyncio.get_running_loop()
        pod = {"metadata": {"name": "abc-notebook", "labels": {LABEL_INSTANCE: "abc"}}}
        timer = threading.Timer(0.2, cluster._on_change, args=("MODIFIED", pod))
        timer.start()
        started = time.monotonic()
        woken, other = await asyncio.gather(
            _timed(cluster.wait_change("abc", 5.0)), _timed(cluster.wait_change("xyz", 0.6)))
        assert time.monotonic() - started < 2.0
        return woken, other

    woken, other = asyncio.run(scenario())
    assert woken < 1.0  # woken by the event, not the 5 s timeout
    assert other >= 0.5  # another instance's waiter sleeps until its own timeout
    assert cluster._waiters == {}
    cluster.executor.shutdown()


async def _timed(awaitable) -> float:
    started = time.monotonic()
    await awaitable
    return time.monotonic() - started
