"""The no-op path (controller/noop.py): an unchanged instance is answered from the watch caches,
with no apiserver round trip and no engine; anything else goes down the full path.

The property that matters: the cache check says "unchanged" only where the full path, on the
same objects, would return `unchanged` and write nothing. Each scenario below is run both ways.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable

import pytest

from harness.examples import shared_template
from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.noop import DriftFlags
from jupyternetes.controller.reconcile import ReconcileConfig, Reconciler
from jupyternetes.crd.labels import VARIABLES_FROM
from jupyternetes.engine.masking import OPERATOR_LOG_MASK
from tests.unit.test_reconcile_unit import (
    KEY,
    NS,
    POD_NAME,
    TEMPLATE_KEY,
    EngineRecorder,
    KubeRecorder,
    edit_template,
    running_pod,
    seed,
)

NOW = "2026-01-01T00:00:05Z"


class Env:
    """One instance, its template and pod, behind a recorder (the apiserver) and caches that
    can be made to differ from it (a lagging watch)."""

    def __init__(self, secret_ref: bool = False) -> None:
        instance = seed("seed-instance.yaml")
        instance["metadata"].pop("resourceVersion")
        if secret_ref:
            del instance["spec"]["variables"]["jupyterhub.api_token"]
            instance["spec"]["variablesFrom"] = [{"secretRef": {"name": "hub-token"}}]
        self.kube = KubeRecorder(instance, shared_template(seed("seed-template.yaml")))
        self.kube.secrets = {f"{NS}/hub-token": {"metadata": {"name": "hub-token", "labels": {
            VARIABLES_FROM: "true"}}, "data": {
            "jupyterhub.api_token": base64.b64encode(b"s3cret-token-value").decode()}}}
        self.kube.get_secret = self._get_secret  # type: ignore[attr-defined]
        self.engine = EngineRecorder()
        self.pods: dict[str, dict] = {}
        # The caches: None means "same as the apiserver".
        self.cached_instance: dict | None = None
        self.cached_template: dict | None = None

    def _get_secret(self, namespace: str, name: str) -> dict | None:
        self.kube.calls.append(("get_secret", namespace, name))
        return copy.deepcopy(self.kube.secrets.get(f"{namespace}/{name}"))

    def reconciler(self, cached: bool) -> Reconciler:
        lookups: dict[str, Callable] = {}
        if cached:
            lookups = {
                "instance_lookup": lambda key: copy.deepcopy(
                    self.cached_instance if self.cached_instance is not None
                    else self.kube.instances.get(key)),
                "template_lookup": lambda key: copy.deepcopy(
                    self.cached_template if self.cached_template is not None
                    else self.kube.templates.get(key)),
            }
        return Reconciler(self.kube, self.engine, ReconcileConfig(degraded_after=3),
                          pod_lookup=lambda ns, name: self.pods.get(f"{ns}/{name}"),
                          drift=DriftFlags(), metrics=Metrics(), clock=lambda: NOW, **lookups)

    def running(self) -> Env:
        full = self.reconciler(cached=False)
        assert full.reconcile(KEY).action == "provisioned"
        self.pods[f"{NS}/{POD_NAME}"] = running_pod("p1")
        full.reconcile(KEY)  # mirrors the pod
        assert full.reconcile(KEY).action == "unchanged"
        self.kube.calls.clear()
        self.engine.calls.clear()
        return self


def writes(kube: KubeRecorder, engine: EngineRecorder) -> list:
    return [c for c in kube.calls if not c[0].startswith("get")] + engine.calls


def full_path_is_a_no_op(env: Env) -> bool:
    """What the full path does on a copy of the same state: `unchanged` and nothing written."""
    twin = copy.deepcopy(env)
    twin.kube.calls.clear()
    twin.engine.calls.clear()
    events = len(twin.kube.events)
    result = twin.reconciler(cached=False).reconcile(KEY)
    return (result.action == "unchanged" and not writes(twin.kube, twin.engine)
            and len(twin.kube.events) == events)


def test_an_unchanged_instance_is_answered_from_the_caches_without_a_round_trip():
    env = Env().running()
    result = env.reconciler(cached=True).reconcile(KEY)
    assert result.action == "unchanged"
    assert env.kube.calls == []  # no GET instance, template or pod; no write
    assert env.engine.calls == []


def test_secrets_are_still_read_fresh_on_the_no_op_path_and_masked():
    env = Env(secret_ref=True).running()
    assert env.reconciler(cached=True).reconcile(KEY).action == "unchanged"
    assert env.kube.calls == [("get_secret", NS, "hub-token")]
    assert "s3cret-token-value" in OPERATOR_LOG_MASK.forms()


def spec_edit(env: Env) -> None:
    env.kube.instances[KEY]["spec"]["variables"]["jupyterhub.user.name"] = "someone"
    env.kube.instances[KEY]["metadata"]["generation"] = 2


def pod_not_ready(env: Env) -> None:
    env.pods[f"{NS}/{POD_NAME}"] = running_pod("p1", ready=False)


def pod_new_ip(env: Env) -> None:
    env.pods[f"{NS}/{POD_NAME}"]["status"]["podIP"] = "198.18.9.9"


def pod_gone_from_cache_only(env: Env) -> None:
    env.kube.pods[f"{NS}/{POD_NAME}"] = env.pods.pop(f"{NS}/{POD_NAME}")


def pod_gone(env: Env) -> None:
    del env.pods[f"{NS}/{POD_NAME}"]


def deleting(env: Env) -> None:
    env.kube.instances[KEY]["metadata"]["deletionTimestamp"] = NOW


def template_edited(env: Env) -> None:
    edit_template(env.kube)


def template_deleted(env: Env) -> None:
    del env.kube.templates[TEMPLATE_KEY]


def secret_changed(env: Env) -> None:
    env.kube.secrets[f"{NS}/hub-token"]["data"]["jupyterhub.api_token"] = base64.b64encode(
        b"another-token").decode()


def secret_deleted(env: Env) -> None:
    env.kube.secrets.clear()


def failed_last_update(env: Env) -> None:
    env.kube.instances[KEY]["status"]["stack"]["lastUpdate"]["result"] = "failed"


def nothing(env: Env) -> None:
    pass


SCENARIOS = [nothing, spec_edit, pod_not_ready, pod_new_ip, pod_gone, deleting, template_edited,
             template_deleted, failed_last_update]


@pytest.mark.parametrize("change", SCENARIOS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("secret_ref", [False, True], ids=["variables", "variablesFrom"])
def test_the_cache_says_unchanged_exactly_where_the_full_path_would_do_nothing(change,
                                                                              secret_ref):
    env = Env(secret_ref).running()
    change(env)
    assert env.reconciler(cached=True)._unchanged_in_cache(KEY) == full_path_is_a_no_op(env)


def test_a_pod_the_cache_has_not_seen_is_asked_for_on_the_full_path():
    """The pod cache may lag a pod created a moment ago: not a no-op for the cache check, while
    the full path confirms the pod with the apiserver and finds nothing to do."""
    env = Env().running()
    pod_gone_from_cache_only(env)
    assert not env.reconciler(cached=True)._unchanged_in_cache(KEY)
    assert full_path_is_a_no_op(env)
    assert env.reconciler(cached=True).reconcile(KEY).action == "unchanged"
    assert ("get_pod", NS, POD_NAME) in env.kube.calls


@pytest.mark.parametrize("change", [secret_changed, secret_deleted], ids=lambda f: f.__name__)
def test_a_changed_or_missing_secret_is_never_a_no_op(change):
    env = Env(secret_ref=True).running()
    change(env)
    assert not env.reconciler(cached=True)._unchanged_in_cache(KEY)
    assert not full_path_is_a_no_op(env)


@pytest.mark.parametrize("change", [spec_edit, pod_new_ip, template_edited, pod_gone,
                                    deleting], ids=lambda f: f.__name__)
def test_whatever_is_not_a_no_op_takes_the_full_path_with_fresh_reads(change):
    env = Env().running()
    change(env)
    twin = copy.deepcopy(env)
    cached = env.reconciler(cached=True).reconcile(KEY)
    full = twin.reconciler(cached=False).reconcile(KEY)
    assert cached == full
    assert ("get_instance", NS, KEY.split("/")[1]) in env.kube.calls
    assert writes(env.kube, env.engine) == writes(twin.kube, twin.engine)
    assert env.kube.instances[KEY] == twin.kube.instances[KEY]


def test_a_lagging_instance_cache_never_hides_a_change_from_the_apiserver_copy():
    """The cache still has the old spec: the check may say unchanged (the watch event of the
    edit queues the key again); once the cache has the edit, it is not a no-op."""
    env = Env().running()
    env.cached_instance = copy.deepcopy(env.kube.instances[KEY])
    spec_edit(env)
    reconciler = env.reconciler(cached=True)
    assert reconciler._unchanged_in_cache(KEY)  # old copy: nothing to do, as it was
    env.cached_instance = None  # the MODIFIED event arrived
    assert not reconciler._unchanged_in_cache(KEY)
    assert reconciler.reconcile(KEY).action == "provisioned"


def test_a_drift_flag_or_a_missing_cache_entry_takes_the_full_path():
    env = Env().running()
    reconciler = env.reconciler(cached=True)
    reconciler.drift.flag(KEY)
    assert not reconciler._unchanged_in_cache(KEY)
    reconciler.drift.take(KEY)
    assert reconciler._unchanged_in_cache(KEY)
    reconciler.template_lookup = lambda key: None  # not (yet) in the template cache
    assert not reconciler._unchanged_in_cache(KEY)
    assert not env.reconciler(cached=False)._unchanged_in_cache(KEY)  # no caches wired


def test_workers_wait_for_the_first_lists_of_every_watch_but_not_forever():
    import threading

    from jupyternetes.controller.controller import Operator

    op = Operator(kube=None, engine=EngineRecorder(), workers=1)  # type: ignore[arg-type]
    watchers = op.all_watchers()
    waited: list[bool] = []
    worker = threading.Thread(target=lambda: waited.append(op.wait_for_caches(30.0)))
    worker.start()
    for watcher in watchers:
        assert worker.is_alive()  # still waiting for this one
        watcher._synced.set()
    worker.join(5)
    assert waited == [True]
    watchers[-1]._synced.clear()  # a watch that cannot list (no RBAC)
    assert op.wait_for_caches(0.2) is False
    op._stopping.set()
    assert op.wait_for_caches(30.0) is False  # shutting down: no wait


def test_own_writes_are_pending_until_the_cache_holds_the_written_version():
    from jupyternetes.controller.noop import OwnWrites

    now = [0.0]
    writes = OwnWrites(horizon=60.0, clock=lambda: now[0])
    assert not writes.pending(KEY)
    writes.wrote(KEY, {"metadata": {"resourceVersion": "7"}})
    assert writes.pending(KEY)
    writes.seen(KEY, {"metadata": {"resourceVersion": "6"}})  # an event from before the write
    assert writes.pending(KEY)
    writes.seen(KEY, {"metadata": {"resourceVersion": "7"}})
    assert not writes.pending(KEY)
    writes.wrote(KEY, {"metadata": {"resourceVersion": "9"}})
    now[0] = 61.0  # never delivered (a relist jumped past it): expires
    assert not writes.pending(KEY)
    writes.wrote(KEY, None)  # the write found the instance gone
    assert not writes.pending(KEY)


def test_after_its_own_status_write_the_reconciler_does_not_trust_the_older_cached_status():
    """A pod flips and flips back before the cache has the status written in between: the
    stale cache would say "all mirrored"; the full path sees the write and mirrors again."""
    env = Env().running()
    env.kube.instances[KEY]["metadata"]["resourceVersion"] = "100"
    stale = copy.deepcopy(env.kube.instances[KEY])  # what the watch cache keeps showing
    env.cached_instance = stale
    reconciler = env.reconciler(cached=True)
    original = env.kube.patch_instance_status

    def patch_and_bump(namespace, name, status):
        obj = env.kube.instances[f"{namespace}/{name}"]
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return original(namespace, name, status)

    env.kube.patch_instance_status = patch_and_bump  # type: ignore[method-assign]
    pod_not_ready(env)  # 1. the pod stops being ready: written (full path)
    assert reconciler.reconcile(KEY).action == "unchanged"
    assert env.kube.condition("Ready")["status"] == "False"
    env.pods[f"{NS}/{POD_NAME}"] = running_pod("p1")  # 2. ready again, cache still stale
    assert not reconciler._unchanged_in_cache(KEY)  # own write not seen yet
    assert reconciler.reconcile(KEY).action == "unchanged"
    assert env.kube.condition("Ready")["status"] == "True"  # mirrored, not lost
    # The watch delivers the last write: the cache is trusted again.
    env.cached_instance = copy.deepcopy(env.kube.instances[KEY])
    reconciler.own_writes.seen(KEY, env.cached_instance)
    assert reconciler._unchanged_in_cache(KEY)


@pytest.mark.parametrize("change", [*SCENARIOS, secret_changed, secret_deleted],
                         ids=lambda f: f.__name__)
def test_a_warm_render_memo_gives_the_same_answers(change):
    """The memo keeps an instance's last render by what the render depends on (uids,
    generations, the Secrets' digest): after any change, the answer is still the full path's."""
    env = Env(secret_ref=change in (secret_changed, secret_deleted)).running()
    reconciler = env.reconciler(cached=True)
    assert reconciler._unchanged_in_cache(KEY)  # fills the memo
    assert len(reconciler.render_memo) == 1
    change(env)
    assert reconciler._unchanged_in_cache(KEY) == full_path_is_a_no_op(env)


def test_a_memo_hit_renders_nothing_and_a_gone_instance_is_forgotten(monkeypatch):
    from jupyternetes.controller import noop

    env = Env().running()
    reconciler = env.reconciler(cached=True)
    renders = []
    real = noop.render
    monkeypatch.setattr(noop, "render", lambda *a: renders.append(1) or real(*a))
    assert reconciler._unchanged_in_cache(KEY) and reconciler._unchanged_in_cache(KEY)
    assert len(renders) == 1
    template_edited(env)  # a new template generation: rendered again
    reconciler._unchanged_in_cache(KEY)
    assert len(renders) == 2
    del env.kube.instances[KEY]
    assert reconciler.reconcile(KEY).action == "gone"
    assert len(reconciler.render_memo) == 0
