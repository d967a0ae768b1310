"""End to end (real JupyterHub + proxy + operator): a user's home belongs to the account.

- A deleted user's claims are deleted (`delete_pvc`, the default) or released (`delete_pvc =
  False`), never handed to a later account of the same name; an admin can hand a released
  claim over on purpose with the adopt annotation.
- An existing claim that differs from the template (grown with `kubectl patch`, made by hand
  and handed over with the adopt annotation) is used as it is and does not block a start; a
  claim that is not the instance's fails the spawn at once with the instance's own message.

The "home" is the claim's folder on this machine: the pod runner mounts a claim's bound
PersistentVolume (its hostPath), as a kubelet does, so a new claim of the same name (bound to a
new volume) does not see the old claim's files. Files are written and read through the user's
notebook server (the contents API), as the user would.

Reuses test_hub's module hub and operator (`env`); the hub is restarted with this module's
settings (a profile on an expandable StorageClass, a shorter start_timeout).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from jupyternetes.crd.definitions import GROUP, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import (
    ADOPT_ANNOTATION,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    RELEASED_FROM,
)
from jupyternetes.crd.naming import instance_name_for_user
from tests.e2e import test_hub as base
from tests.e2e.test_hub import (
    HubEnv,
    spawn_failure,
    spawner_template,
    wait_for,
)

pytestmark = pytest.mark.e2e

# test_hub's module fixture: its own hub and operator for this module.
env = base.env

ADOPT, ACCOUNT, RELEASED = ADOPT_ANNOTATION, LABEL_ACCOUNT, RELEASED_FROM
# Short, so that a spawn that waits for the timeout (the bug) fails the test in minutes; a
# spawn that fails from the instance's status fails in seconds.
START_TIMEOUT = 150
FAST = 90.0


@pytest.fixture(scope="module")
def hub_env(env: HubEnv) -> Iterator[HubEnv]:
    storage = client.StorageV1Api(env.core.api_client)
    expandable = f"{env.ns}-expandable"
    storage.create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": expandable, "labels": {"jupyternetes.e2e/test": "true"}},
        "provisioner": "kubernetes.io/no-provisioner", "allowVolumeExpansion": True,
        "volumeBindingMode": "Immediate"})
    growable = spawner_template(env.ns, "growable")
    growable["spec"]["pvcs"][0]["spec"]["storageClassName"] = expandable
    env.custom.create_namespaced_custom_object(GROUP, VERSION, env.ns, TEMPLATE_PLURAL,
                                            growable)
    config = env.hub.spawner_config
    saved = {k: config.get(k) for k in ("profile_list", "start_timeout")}
    config["profile_list"] = [*config["profile_list"], {
        "display_name": "Growable", "slug": "growable", "template_name": "growable"}]
    config["start_timeout"] = START_TIMEOUT
    env.hub.restart()
    env.expandable = expandable  # type: ignore[attr-defined]
    try:
        yield env
    finally:
        config.update(saved)
        with contextlib.suppress(client.ApiException):
            storage.delete_storage_class(expandable)


@contextlib.contextmanager
def spawner_setting(env: HubEnv, key: str, value: object) -> Iterator[None]:
    config = env.hub.spawner_config
    had, old = key in config, config.get(key)
    config[key] = value
    env.hub.restart()
    try:
        yield
    finally:
        if had:
            config[key] = old
        else:
            config.pop(key, None)
        env.hub.restart()


def claim_of(user: str) -> str:
    return f"{instance_name_for_user(user)}-workspace"


def claim_folder(env: HubEnv, claim: str) -> Path:
    """The host folder of the claim's bound volume (what its pods see)."""
    pvc = wait_for(f"claim {claim} bound", lambda: (lambda c: c if c is not None and c.spec
                   .volume_name else None)(env.pvc(claim)), timeout=120)
    pv = env.core.read_persistent_volume(pvc.spec.volume_name)
    return Path(pv.spec.host_path.path)


def write_file(env: HubEnv, user: str, path: str, text: str) -> None:
    put = env.get(user, f"api/contents/{path}", method="PUT",
                  json={"type": "file", "format": "text", "content": text})
    assert put.status_code in (200, 201), put.text


def read_file(env: HubEnv, user: str, path: str) -> str | None:
    got = env.get(user, f"api/contents/{path}")
    if got.status_code == 404:
        return None
    assert got.status_code == 200, got.text
    return got.json()["content"]


def delete_user(env: HubEnv, user: str) -> None:
    """Stop the user's server and delete the account through the hub API, as an admin does."""
    if (env.server_model(user) or {}).get("ready"):
        env.stop(user)
    status, body = env.hub.api("DELETE", f"/users/{user}")
    assert status == 204, (status, body)
    assert env.hub.api("GET", f"/users/{user}")[0] == 404


def pvc_json(env: HubEnv, claim: str) -> dict | None:
    try:
        resp = env.core.read_namespaced_persistent_volume_claim(claim, env.ns,
                                                                _preload_content=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(resp.data)


def condition(instance: dict | None, kind: str) -> dict:
    for cond in ((instance or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


# ---- 2. a deleted user's home is never handed to the next user of the same name --------------


def test_deleted_users_home_is_not_handed_to_a_namesake(hub_env: HubEnv) -> None:
    env, user = hub_env, "ursula"
    name, claim = instance_name_for_user(user), claim_of(user)
    env.add_user(user)
    env.start_and_wait(user)
    write_file(env, user, "diary.txt", "ursula's own words")
    old_folder = claim_folder(env, claim)
    assert (old_folder / "diary.txt").read_text() == "ursula's own words"
    old_uid = env.pvc(claim).metadata.uid
    account = (env.instance(name)["metadata"].get("labels") or {}).get(ACCOUNT)
    assert account, env.instance(name)["metadata"]
    assert (pvc_json(env, claim)["metadata"]["labels"] or {}).get(ACCOUNT) == account

    delete_user(env, user)
    # delete_pvc is on by default: the claim goes with the account.
    wait_for("ursula's claim deleted", lambda: env.pvc(claim) is None, timeout=120)

    env.add_user(user)  # the namesake, with a fresh volume as a provisioner would give
    env.start_and_wait(user)
    new = env.pvc(claim)
    assert new.metadata.uid != old_uid
    assert claim_folder(env, claim) != old_folder
    assert read_file(env, user, "diary.txt") is None
    new_account = (env.instance(name)["metadata"].get("labels") or {}).get(ACCOUNT)
    assert new_account and new_account != account
    assert (pvc_json(env, claim)["metadata"]["labels"] or {}).get(ACCOUNT) == new_account
    env.stop(user)


def test_kept_claim_is_released_and_handed_over_only_by_an_admin(hub_env: HubEnv) -> None:
    env, user = hub_env, "vera"
    name, claim = instance_name_for_user(user), claim_of(user)
    with spawner_setting(env, "delete_pvc", False):
        env.add_user(user)
        env.start_and_wait(user)
        write_file(env, user, "thesis.txt", "vera's thesis")
        uid = env.pvc(claim).metadata.uid
        delete_user(env, user)

        # Kept, but released: no instance's labels, and who it was released from.
        released = wait_for("vera's claim released", lambda: (lambda c: c if c and LABEL_INSTANCE
                            not in (c["metadata"].get("labels") or {}) else None)(
                            pvc_json(env, claim)), timeout=120)
        assert released["metadata"]["uid"] == uid
        labels = released["metadata"].get("labels") or {}
        assert ACCOUNT not in labels, labels
        note = (released["metadata"].get("annotations") or {}).get(RELEASED, "")
        assert "vera" in note and "account" in note, released["metadata"]

        # The namesake's spawn fails at once and says what an admin can do; nothing mounted.
        message, elapsed = spawn_failure(env, user, {})
        assert elapsed < FAST, (elapsed, message)
        assert claim in message and ADOPT in message, message
        assert env.pvc(claim).metadata.uid == uid
        assert LABEL_INSTANCE not in (pvc_json(env, claim)["metadata"].get("labels") or {})

        # The admin hands it over on purpose: the new account gets the files.
        env.core.patch_namespaced_persistent_volume_claim(
            claim, env.ns, {"metadata": {"annotations": {ADOPT: name}}})
        wait_for("vera's failed server settled", lambda: env.server_model(user) is None,
                 timeout=60)
        env.start_and_wait(user)
        assert read_file(env, user, "thesis.txt") == "vera's thesis"
        adopted = pvc_json(env, claim)
        assert adopted["metadata"]["uid"] == uid
        account = (env.instance(name)["metadata"].get("labels") or {}).get(ACCOUNT)
        assert (adopted["metadata"].get("labels") or {}).get(ACCOUNT) == account
        env.stop(user)


# ---- 3. existing claims that differ from the template do not block a start ------------------


def test_claim_grown_with_kubectl_patch_is_used_as_it_is(hub_env: HubEnv) -> None:
    env, user = hub_env, "walt"
    name, claim = instance_name_for_user(user), claim_of(user)
    env.add_user(user, servers=())
    env.runner.provide_volume(env.ns, claim, size="5Gi",
                              storage_class=env.expandable)  # type: ignore[attr-defined]
    env.start_and_wait(user, options={"profile": "growable"})
    write_file(env, user, "data.csv", "1,2,3")
    env.stop(user)
    # The admin grows the claim (z2jh admins do this with kubectl patch).
    env.core.patch_namespaced_persistent_volume_claim(
        claim, env.ns, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    uid = env.pvc(claim).metadata.uid
    account = (pvc_json(env, claim)["metadata"].get("labels") or {}).get(ACCOUNT)
    assert account
    # A hub restart in between: the account (and so the claim's owner) is the same after it.
    env.hub.restart()

    started = time.monotonic()
    env.start_and_wait(user, options={"profile": "growable"})
    assert time.monotonic() - started < START_TIMEOUT
    assert read_file(env, user, "data.csv") == "1,2,3"
    kept = pvc_json(env, claim)
    assert kept["metadata"]["uid"] == uid
    assert kept["spec"]["resources"]["requests"]["storage"] == "2Gi"  # never shrunk
    assert kept["metadata"]["labels"][ACCOUNT] == account
    cond = condition(env.instance(name), "PVCsKept")
    assert cond.get("status") == "True", env.instance(name).get("status")
    assert claim in cond["message"] and "2Gi" in cond["message"], cond
    env.stop(user)


def test_claim_made_by_hand_fails_fast_then_is_used_as_it_is_once_handed_over(
        hub_env: HubEnv) -> None:
    env, user = hub_env, "xena"
    name, claim = instance_name_for_user(user), claim_of(user)
    env.runner.provide_volume(env.ns, claim, size="5Gi")
    # Migrated in by an admin: bigger than the template's 1Gi, no jupyternetes labels.
    env.core.create_namespaced_persistent_volume_claim(env.ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": env.ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "3Gi"}}}})
    folder = claim_folder(env, claim)
    (folder / "migrated.txt").write_text("from the old system")

    message, elapsed = spawn_failure(env, user, {})
    assert elapsed < FAST, (elapsed, message)
    assert claim in message and ADOPT in message, message
    assert message.strip() != "Spawn failed:"

    env.core.patch_namespaced_persistent_volume_claim(
        claim, env.ns, {"metadata": {"annotations": {ADOPT: name}}})
    wait_for("xena's failed server settled", lambda: env.server_model(user) is None,
             timeout=60)
    env.start_and_wait(user)
    assert read_file(env, user, "migrated.txt") == "from the old system"
    kept = pvc_json(env, claim)
    assert kept["spec"]["resources"]["requests"]["storage"] == "3Gi"
    assert kept["metadata"]["labels"][LABEL_INSTANCE] == name
    env.stop(user)
