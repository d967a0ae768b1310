"""End to end (real JupyterHub + proxy + operator): profiles as KubeSpawner admins write them.

Through the hub's REST API, as a user or a script would: a `profile_options` choice picks a
template and sets variables (its `kubespawner_override` becomes `{jupyterhub.spawner.*}`
variables) that reach the instance and the rendered pod; an unlisted value that fails its
`validation_regex` fails the spawn request at once, naming the option; a profile restricted to
a JupyterHub group is neither on another user's spawn page nor startable by them through the
API. The profile_list is a callable(spawner), as hub configs often write it.

Reuses test_hub's module hub and operator (`env`), restarted with this module's settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from jupyternetes.crd.definitions import GROUP, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.naming import instance_name_for_user
from tests.e2e import test_hub as base
from tests.e2e.test_hub import HubEnv, spawner_template, wait_for

pytestmark = pytest.mark.e2e

# test_hub's module fixture: its own hub and operator for this module.
env = base.env

MIB = 1024 ** 2
PROFILES = [
    {"display_name": "Small", "slug": "small", "template_name": "profiles-small",
     "default": True},
    {"display_name": "GPU", "slug": "gpu", "template_name": "profiles-small",
     "kubespawner_override": {"cpu_limit": 0.5, "mem_limit": "256M",
                              "extra_resource_limits": {"nvidia.com/gpu": "1"}},
     "profile_options": {"image": {
         "display_name": "Image",
         "choices": {
             "base": {"display_name": "Base", "default": True,
                      "kubespawner_override": {"image": "jupyter/base:1"}},
             "torch": {"display_name": "Torch", "template_name": "profiles-torch",
                       "variables": {"torch.flavour": "cuda"},
                       "kubespawner_override": {"image": "jupyter/torch:2"}}},
         "unlisted_choice": {"enabled": True, "display_name": "Other image",
                             "validation_regex": "^jupyter/.+:.+$",
                             "validation_message": "an image jupyter/<name>:<tag>",
                             "kubespawner_override": {"image": "{value}"}}}}},
    {"display_name": "Staff only", "slug": "staff-only", "template_name": "profiles-small",
     "allowed_groups": ["staff"]},
]
# The torch template shows what the operator rendered from the spawner's variables.
RENDERED = {
    "example.com/image": "{jupyterhub.spawner.image}",
    "example.com/mem-limit": "{jupyterhub.spawner.mem_limit}",
    "example.com/cpu-limit": "{jupyterhub.spawner.cpu_limit}",
    "example.com/gpus": "{jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu}",
    "example.com/flavour": "{torch.flavour}",
}


@pytest.fixture(scope="module")
def hub_env(env: HubEnv) -> Iterator[HubEnv]:
    for name in ("profiles-small", "profiles-torch"):
        body = spawner_template(env.ns, name)
        if name == "profiles-torch":
            body["spec"]["pods"][0]["annotations"] = dict(RENDERED)
        env.custom.create_namespaced_custom_object(GROUP, VERSION, env.ns, TEMPLATE_PLURAL,
                                                   body)
    saved = env.hub.extra_config
    # The hub's default slow_spawn_timeout (10 s): a spawn request that fails at once answers
    # with its error, as a user's POST sees it.
    env.hub.extra_config = (f"PROFILES = {PROFILES!r}\n\n"
                            "async def profile_list(spawner):\n"
                            "    return PROFILES\n\n"
                            "c.JupyternetesSpawner.profile_list = profile_list\n")
    env.hub.restart()
    try:
        yield env
    finally:
        env.hub.extra_config = saved


def spawn_as(env: HubEnv, user: str, options: dict) -> tuple[int, dict, float]:
    """POST the user's server with their own token: (status, body, seconds)."""
    started = time.monotonic()
    resp = requests.post(f"{env.hub.api_url}/users/{user}/server", json=options, timeout=60,
                         headers={"Authorization": f"token {env.tokens[user]}"})
    body = resp.json() if resp.content else {}
    return resp.status_code, body, time.monotonic() - started


def test_a_choice_through_the_rest_api_reaches_the_instance_and_its_pod(hub_env: HubEnv) -> None:
    env, user = hub_env, "pia"
    env.add_user(user)
    name = instance_name_for_user(user)
    status, body, _ = spawn_as(env, user, {"profile": "gpu", "image": "torch"})
    assert status in (201, 202), (status, body)
    wait_for("pia ready in the hub", lambda: (env.server_model(user) or {}).get("ready"),
             describe=lambda: env.describe(name))
    instance = env.instance(name)
    assert instance["spec"]["template"]["name"] == "profiles-torch"  # the choice's template
    values = instance["spec"]["variables"]
    expected = {
        "jupyterhub.spawner.image": "jupyter/torch:2",
        "jupyterhub.spawner.mem_limit": str(256 * MIB),
        "jupyterhub.spawner.cpu_limit": "0.5",
        "jupyterhub.spawner.extra_resource_limits.nvidia.com_gpu": "1",
        "torch.flavour": "cuda",
        "jupyterhub.env.MEM_LIMIT": str(256 * MIB),
    }
    assert {k: values.get(k) for k in expected} == expected
    annotations = env.pods(name)[0].metadata.annotations or {}
    assert {k: annotations.get(k) for k in RENDERED} == {
        "example.com/image": "jupyter/torch:2", "example.com/mem-limit": str(256 * MIB),
        "example.com/cpu-limit": "0.5", "example.com/gpus": "1",
        "example.com/flavour": "cuda"}
    env.stop(user)


def test_an_unlisted_value_that_fails_validation_fails_at_once_naming_the_option(
        hub_env: HubEnv) -> None:
    env, user = hub_env, "rex"
    env.add_user(user, servers=())
    status, body, elapsed = spawn_as(env, user, {
        "profile": "gpu", "profile-option-image--unlisted-choice": "docker.io/evil:1"})
    assert status == 400, (status, body)
    message = body.get("message", "")
    assert "profile option 'image' of profile 'gpu'" in message, message
    assert "'docker.io/evil:1' does not match" in message, message
    assert elapsed < 30, elapsed  # no instance, no timeout: the request itself is refused
    assert env.server_model(user) is None
    assert env.instance(instance_name_for_user(user)) is None


def test_a_group_restricted_profile_is_neither_shown_nor_startable_by_others(
        hub_env: HubEnv) -> None:
    env = hub_env
    env.add_user("sam", servers=())
    env.add_user("tia", servers=())
    status, body = env.hub.api("POST", "/groups/staff")
    assert status in (201, 409), (status, body)
    status, body = env.hub.api("POST", "/groups/staff/users", {"users": ["tia"]})
    assert status == 200, (status, body)

    for user, sees in (("sam", False), ("tia", True)):
        page = env.hub.login(user).get(f"{env.hub.url}/hub/spawn", timeout=60)
        assert page.status_code == 200, page.text[:500]
        assert "value='gpu'" in page.text, page.text[:2000]
        assert ("value='staff-only'" in page.text) is sees, (user, page.text[:2000])

    status, body, _ = spawn_as(env, "sam", {"profile": "staff-only"})
    assert status == 400, (status, body)
    assert "profile 'staff-only' is not offered to sam" in body.get("message", ""), body
    assert env.server_model("sam") is None
    assert env.instance(instance_name_for_user("sam")) is None
