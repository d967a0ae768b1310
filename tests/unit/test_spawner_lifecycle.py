"""Lifecycle edges of the spawner without an apiserver: a cancel that arrives with a wake-up,
a spawn cancelled while it creates its objects, a stop with no operator, a spawn nobody answers,
a hub restarted mid-spawn, the token across a hub restart, and the Events the hub keeps."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.kube.client import Kube
from jupyternetes.kube.errors import KubeError
from jupyternetes.spawner import decisions, events, manifests, serverobjects, stopping, tokenshare
from jupyternetes.spawner.cluster import SharedCluster
from tests.unit.test_spawner_class import make_spawner


def make_cluster() -> SharedCluster:
    return SharedCluster("users", Kube(client.ApiClient(client.Configuration())), workers=2)


class FakeCluster:
    """The SharedCluster calls the spawner's lifecycle code makes, over plain dicts."""

    namespace = "users"

    def __init__(self) -> None:
        self.instances: dict[str, dict] = {}
        self.pods: dict[str, dict] = {}  # pod name -> pod
        self.secrets: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.executor = ThreadPoolExecutor(max_workers=4)
        self.uids = 0

    def _uid(self) -> str:
        self.uids += 1
        return f"uid-{self.uids}"

    async def call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def wait_change(self, name: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.01))

    # cache
    def cached_instance(self, name: str) -> dict | None:
        return self.instances.get(name)

    def cached_pods(self, name: str) -> list[dict]:
        return [p for p in self.pods.values()
                if p["metadata"]["labels"][LABEL_INSTANCE] == name]

    # API
    def get_instance(self, name: str) -> dict | None:
        return self.instances.get(name)

    def list_pods(self, name: str) -> list[dict]:
        return self.cached_pods(name)

    def delete_instance(self, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete_instance", name, uid))
        instance = self.instances.get(name)
        if instance is None or (uid and instance["metadata"]["uid"] != uid):
            return False
        if instance["metadata"].get("finalizers"):
            instance["metadata"]["deletionTimestamp"] = "now"  # waits for an operator
        else:
            del self.instances[name]
        return True

    def delete_pod(self, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete_pod", name, uid))
        return self.pods.pop(name, None) is not None

    def replace_secret(self, body: dict) -> dict:
        made = {**body, "metadata": {**body["metadata"], "uid": self._uid()}}
        self.secrets[body["metadata"]["name"]] = made
        return made

    def create_instance(self, body: dict) -> dict:
        name = body["metadata"]["name"]
        if name in self.instances:
            raise KubeError(409, "already exists", f"create instance {name}")
        made = {**body, "metadata": {**body["metadata"], "uid": self._uid()}}
        self.instances[name] = made
        return made

    def patch_secret(self, name: str, patch: dict) -> None:
        self.secrets[name]["metadata"].update(patch["metadata"])

    def delete_secret(self, name: str, uid: str | None = None) -> bool:
        self.calls.append(("delete_secret", name, uid))
        secret = self.secrets.get(name)
        if secret is None or (uid and secret["metadata"]["uid"] != uid):
            return False
        del self.secrets[name]
        return True


def pod(name: str, instance: str) -> dict:
    return {"metadata": {"name": name, "uid": f"pod-{name}", "namespace": "users",
                         "labels": {LABEL_INSTANCE: instance}}}


# ---- the hub's cancel ----------------------------------------------------------------------


def test_wait_change_honours_a_cancel_that_arrives_with_the_wake_up() -> None:
    """The hub cancels a spawn (a stop while starting) in the same loop turn a watch event
    wakes it: asyncio.wait_for on Python 3.11 returns normally then, and the spawn went on."""
    cluster = make_cluster()

    async def scenario() -> None:
        cluster.loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(cluster.wait_change("abc", 5.0))
        await asyncio.sleep(0)  # the waiter is registered
        cluster._wake("abc")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
    assert cluster._waiters == {}
    cluster.executor.shutdown()


def secret_and_instance(name: str = "abc") -> tuple[dict, dict]:
    return (manifests.secret_body(name, "users", {"JUPYTERHUB_API_TOKEN": "t"}),
            manifests.instance_body(name, "users", "tpl", None, {}, "alice", ""))


def test_a_spawn_cancelled_while_it_creates_its_objects_leaves_none() -> None:
    fake = FakeCluster()
    release = threading.Event()
    real_create = fake.create_instance

    def slow_create(body: dict) -> dict:
        release.wait(5)
        return real_create(body)

    fake.create_instance = slow_create  # type: ignore[method-assign]

    async def scenario() -> None:
        creating = asyncio.ensure_future(serverobjects.create_cancel_safe(
            fake, *secret_and_instance()))  # type: ignore[arg-type]
        while "abc-hub" not in fake.secrets:
            await asyncio.sleep(0.01)
        creating.cancel()  # the hub's DELETE while the Secret exists and the instance is made
        with pytest.raises(asyncio.CancelledError):
            await creating
        release.set()
        deadline = time.monotonic() + 5
        while (fake.secrets or fake.instances) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert fake.secrets == {} and fake.instances == {}, (fake.secrets, fake.instances)


def test_a_failed_instance_create_removes_its_secret() -> None:
    fake = FakeCluster()
    fake.instances["abc"] = {"metadata": {"name": "abc", "uid": "other"}}
    with pytest.raises(KubeError):
        serverobjects.create(fake, *secret_and_instance())  # type: ignore[arg-type]
    assert fake.secrets == {}
    assert fake.instances["abc"]["metadata"]["uid"] == "other"  # not someone else's


def test_created_objects_are_removed_by_uid_only() -> None:
    fake = FakeCluster()
    created = serverobjects.create(fake, *secret_and_instance())  # type: ignore[arg-type]
    assert fake.secrets["abc-hub"]["metadata"]["ownerReferences"][0]["uid"] == \
        created.instance_uid
    # A later spawn replaced both: removing the first spawn's objects touches neither.
    fake.instances.clear()
    later = serverobjects.create(fake, *secret_and_instance())  # type: ignore[arg-type]
    serverobjects.remove(fake, created)  # type: ignore[arg-type]
    assert fake.instances["abc"]["metadata"]["uid"] == later.instance_uid
    assert fake.secrets["abc-hub"]["metadata"]["uid"] == later.secret_uid


# ---- stop with no operator -------------------------------------------------------------------


def test_stop_with_no_operator_deletes_the_pods_after_the_grace() -> None:
    fake = FakeCluster()
    fake.instances["abc"] = {"metadata": {"name": "abc", "uid": "i1", "finalizers": ["x"]}}
    fake.pods["abc-notebook"] = pod("abc-notebook", "abc")
    started = time.monotonic()
    asyncio.run(stopping.delete_and_wait(fake, "abc", timeout=30,  # type: ignore[arg-type]
                                         pod_grace=0.2))
    assert 0.2 <= time.monotonic() - started < 5
    assert fake.pods == {}
    assert ("delete_pod", "abc-notebook", "pod-abc-notebook") in fake.calls
    assert fake.instances["abc"]["metadata"]["deletionTimestamp"]  # left for the operator


def test_a_start_waits_for_the_old_instance_and_times_out() -> None:
    fake = FakeCluster()
    fake.instances["abc"] = {"metadata": {"name": "abc", "uid": "i1", "finalizers": ["x"]}}
    with pytest.raises(KubeError, match=r"still there after 0\.3s"):
        asyncio.run(stopping.delete_and_wait(fake, "abc", timeout=0.3))  # type: ignore[arg-type]
    assert not any(c[0] == "delete_pod" for c in fake.calls)


def test_a_stop_with_an_operator_does_not_touch_the_pods() -> None:
    fake = FakeCluster()
    fake.instances["abc"] = {"metadata": {"name": "abc", "uid": "i1"}}
    fake.pods["abc-notebook"] = pod("abc-notebook", "abc")

    async def operator() -> None:
        await asyncio.sleep(0.05)
        fake.pods.clear()

    async def scenario() -> None:
        await asyncio.gather(stopping.delete_and_wait(  # type: ignore[arg-type]
            fake, "abc", timeout=30, pod_grace=10), operator())

    asyncio.run(scenario())
    assert not any(c[0] == "delete_pod" for c in fake.calls)


def test_a_stop_waits_for_an_operator_at_work_past_the_grace() -> None:
    """The operator deleted the pods (its destroy is running) but has not yet dropped the
    finalizer when the grace ends: the stop waits for the instance, as without a grace."""
    fake = FakeCluster()
    fake.instances["abc"] = {"metadata": {"name": "abc", "uid": "i1", "finalizers": ["x"]}}
    fake.pods["abc-notebook"] = pod("abc-notebook", "abc")

    async def operator() -> None:
        await asyncio.sleep(0.05)
        fake.pods.clear()
        await asyncio.sleep(0.4)
        del fake.instances["abc"]

    async def scenario() -> None:
        at_work = asyncio.ensure_future(operator())
        await stopping.delete_and_wait(fake, "abc", timeout=30,  # type: ignore[arg-type]
                                       pod_grace=0.1)
        assert "abc" not in fake.instances  # returned once the operator finished, not before
        await at_work

    asyncio.run(scenario())
    assert not any(c[0] == "delete_pod" for c in fake.calls)


# ---- a spawn nobody answers ------------------------------------------------------------------


def test_timeout_message_says_no_operator_answered() -> None:
    created = {"metadata": {"name": "abc", "namespace": "users", "uid": "u"}}
    message = decisions.timeout_message(created, [], "users/abc", 75)
    assert "users/abc was created" in message and "no operator answered in 75s" in message
    assert "operator is running" in message and "kubectl describe jni abc -n users" in message
    answered = {"metadata": {"name": "abc", "namespace": "users", "finalizers": ["f"]},
                "status": {"conditions": [{"type": "Ready", "status": "False",
                                           "message": "pod notebook is Pending"}]}}
    message = decisions.timeout_message(answered, [], "users/abc", 75)
    assert "not ready after 75s: pod notebook is Pending" in message
    deleting = {"metadata": {"name": "abc", "namespace": "users", "deletionTimestamp": "t"}}
    assert "still being deleted" in decisions.timeout_message(deleting, [], "users/abc", 75)
    assert not decisions.operator_answered(created)
    assert decisions.operator_answered(answered)


# ---- hub restarts ---------------------------------------------------------------------------


def test_token_halves_join_only_together() -> None:
    pad, share = tokenshare.split("0123456789abcdef0123456789abcdef")
    assert tokenshare.join(pad, share) == "0123456789abcdef0123456789abcdef"
    assert "0123456789abcdef" not in pad + share
    other_pad, _ = tokenshare.split("0123456789abcdef0123456789abcdef")
    assert tokenshare.join(other_pad, share) != "0123456789abcdef0123456789abcdef"
    assert tokenshare.join("", share) is None and tokenshare.join("zz", "zz") is None


def restored_spawner(fake: FakeCluster, state: dict | None = None):
    spawner = make_spawner(namespace="users")
    spawner.api_token = ""  # as after a hub restart

    async def cluster():
        return fake

    spawner._cluster = cluster  # type: ignore[method-assign]
    spawner._start_finished = None
    if state is not None:
        spawner.load_state(state)
    return spawner


def test_a_restored_spawner_knows_its_token_again() -> None:
    name = instance_name_for_user("alice")
    pad, share = tokenshare.split("the-server-token")
    fake = FakeCluster()
    fake.instances[name] = {"metadata": {"name": name, "uid": "i1", "annotations": {
        tokenshare.PAD_ANNOTATION: pad}}, "status": {}}
    spawner = restored_spawner(fake, {"instance_name": name, "instance_uid": "i1",
                                      "namespace": "users", "token_share": share})
    assert asyncio.run(spawner.poll()) is None
    assert spawner.api_token == "the-server-token"


def test_a_spawn_interrupted_by_a_hub_restart_is_removed_at_its_check() -> None:
    name = instance_name_for_user("alice")
    fake = FakeCluster()
    body = manifests.instance_body(name, "users", "tpl", None, {}, "alice", "")
    fake.instances[name] = {**body, "metadata": {**body["metadata"], "uid": "i1"}}
    fake.secrets[f"{name}-hub"] = {"metadata": {"name": f"{name}-hub", "uid": "s1"}}
    spawner = restored_spawner(fake)  # the hub saved no state: start never returned
    assert asyncio.run(spawner.poll()) == 0
    assert name not in fake.instances and f"{name}-hub" not in fake.secrets
    # Another user's instance of that name (made by hand) is left alone.
    fake.instances[name] = {**body, "metadata": {**body["metadata"], "uid": "i2",
                                                 "annotations": {manifests.USER_ANNOTATION:
                                                                 "bob"}}}
    assert asyncio.run(restored_spawner(fake).poll()) == 0
    assert name in fake.instances


# ---- the Events the hub keeps ----------------------------------------------------------------


def event(i: int, kind: str, name: str, uid: str, message: str = "m") -> dict:
    return {"kind": "Event", "metadata": {"name": f"e{i}", "namespace": "users",
                                          "uid": f"ev{i}", "resourceVersion": str(i),
                                          "managedFields": [{"manager": "kubelet"}] * 5},
            "involvedObject": {"kind": kind, "name": name, "uid": uid, "namespace": "users",
                               "fieldPath": "spec.containers{x}"},
            "reason": "Pulled", "message": message, "type": "Normal", "count": 1,
            "source": {"component": "kubelet", "host": "node"}, "reportingComponent": "k"}


def test_events_of_others_are_not_kept_and_ours_go_with_their_object() -> None:
    cluster = make_cluster()
    instance = {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                "metadata": {"name": "abc", "namespace": "users", "uid": "i1"}}
    cluster.instances._apply("ADDED", instance)
    cluster.pods._apply("ADDED", pod("abc-notebook", "abc"))
    for i in range(20_000):  # a busy namespace: other pods, other instances
        cluster.pod_events._apply("ADDED", event(i, "Pod", f"other-{i % 500}", f"p{i % 500}"))
    for i in range(2_000):
        cluster.instance_events._apply("ADDED", event(100_000 + i, INSTANCE_KIND, f"x{i}", "x"))
    ours = [event(200_000 + i, "Pod", "abc-notebook", "pod-abc-notebook", "m" * 5000)
            for i in range(5)]
    ours.append(event(200_010, "Pod", "abc-notebook-2", "pod-new"))  # not cached yet
    ours.append(event(200_011, INSTANCE_KIND, "abc", "i1"))
    for e in ours:
        watcher = cluster.instance_events if e["involvedObject"]["kind"] == INSTANCE_KIND \
            else cluster.pod_events
        watcher._apply("ADDED", e)
    kept = cluster.pod_events.items() + cluster.instance_events.items()
    assert len(kept) == 7
    assert len(cluster.cached_events("abc")) == 6  # by uid: the not-yet-cached pod's waits
    one = cluster.pod_events.get("users/e200000")
    assert "managedFields" not in one["metadata"] and "source" not in one
    assert len(one["message"]) == events.MAX_MESSAGE
    assert events.slim(one) == one
    size = sum(sys.getsizeof(str(e)) for e in kept)
    assert size < 20_000, size
    # The pod goes: its Events go with it; the instance goes: its Events too.
    cluster.pods._apply("DELETED", pod("abc-notebook", "abc"))
    assert {e["metadata"]["name"] for e in cluster.pod_events.items()} == {"e200010"}
    cluster.instances._apply("DELETED", instance)
    assert cluster.instance_events.items() == []
    cluster.executor.shutdown()


def test_a_pod_that_keeps_making_new_events_is_held_to_the_newest_few() -> None:
    """A crash-looping pod's Events each carry a new message (restart count, exit code), so
    the apiserver does not fold them into `count`: the hub keeps the newest MAX_PER_OBJECT."""
    cluster = make_cluster()
    instance = {"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                "metadata": {"name": "abc", "namespace": "users", "uid": "i1"}}
    cluster.instances._apply("ADDED", instance)
    cluster.pods._apply("ADDED", pod("abc-notebook", "abc"))
    total = events.MAX_PER_OBJECT * 40
    for i in range(total):
        e = event(i, "Pod", "abc-notebook", "pod-abc-notebook", f"restart {i}")
        e["lastTimestamp"] = f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d}Z"
        if i % 7 == 0:  # a new-style Event: eventTime with microseconds, no lastTimestamp
            del e["lastTimestamp"]
            e["eventTime"] = f"2026-12-07T10:{i // 60 % 60:02d}:{i % 60:02d}.000001Z"
        cluster.pod_events._apply("ADDED", e)
    cluster.instance_events._apply("ADDED", event(total, INSTANCE_KIND, "abc", "i1"))
    kept = cluster.cached_events("abc")
    assert len(kept) == events.MAX_PER_OBJECT + 1
    restarts = sorted(int(e["message"].split()[1]) for e in kept if "restart" in e["message"])
    assert restarts == list(range(total - events.MAX_PER_OBJECT, total))
    cluster.executor.shutdown()


def test_the_age_of_an_event_sorts_whole_seconds_and_microseconds_in_time_order() -> None:
    older = {"lastTimestamp": "2026-12-07T10:00:01Z"}
    newer = {"eventTime": "2026-12-07T10:00:01.5Z"}
    newest = {"metadata": {"creationTimestamp": "2026-12-07T10:00:02Z"}}
    assert events.age(older) < events.age(newer) < events.age(newest)
    assert events.age({}) == ""


def test_an_event_is_ours_by_its_object() -> None:
    names = {"abc", "a-b"}
    assert events.is_ours(event(1, INSTANCE_KIND, "abc", "u"), names, set())
    assert not events.is_ours(event(1, INSTANCE_KIND, "abcd", "u"), names, set())
    assert events.is_ours(event(1, "Pod", "a-b-notebook", "u"), names, set())
    assert events.is_ours(event(1, "Pod", "hashed-name", "u"), names, {"hashed-name"})
    assert not events.is_ours(event(1, "Pod", "abcd-notebook", "u"), names, set())
    assert not events.is_ours(event(1, "Node", "abc-x", "u"), names, {"abc-x"})
    assert events.instance_of_pod_name("a-b-c-d", {"a-b"}) == "a-b"
