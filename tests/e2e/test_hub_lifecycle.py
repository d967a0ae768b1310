"""End to end (real JupyterHub + proxy + operator): lifecycle edges a hub meets every day.

Each edge is tried as a user or an admin would, through the hub's REST API (issue 20, item 4,
and "stop() when the operator is down" of item 3):

- a stop requested while the server is still starting is honoured (no HTTP 500, nothing left);
- a hub restarted in the middle of a spawn leaves nothing running it does not know about;
- after a stop that follows a hub restart, the server's old API token no longer works;
- a spawn while the operator is down fails at start_timeout with a message that says so;
- a stop while the operator is down still stops the pod, without a 300 s hang.

Reuses test_hub's module hub and operator (`env`). The restart test restarts the hub with a
short pod_delete_grace and, for the one user whose spawn waits for it, a short start_timeout
(a pre_spawn_hook, as an admin may set one per user), which the operator-down test then uses
(it restarts the hub itself when run alone).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
import requests

from jupyternetes.crd.naming import instance_name_for_user
from tests.e2e import test_hub as base
from tests.e2e.test_hub import HubEnv, wait_for

pytestmark = pytest.mark.e2e

env = base.env  # this module's own hub and operator (test_hub's module fixture)

# Short, so that the operator-down spawn fails within the test's budget; only for that user
# (every other spawn keeps the module's 300 s: one takes 10-60 s on a loaded two-core machine).
WAITING_USER = "zed"
START_TIMEOUT = 30
POD_DELETE_GRACE = 10
SETTINGS = {"pod_delete_grace": POD_DELETE_GRACE}
SHORT_START_HOOK = f"""
def _short_start(spawner):
    if spawner.user.name == {WAITING_USER!r}:
        spawner.start_timeout = {START_TIMEOUT}
c.Spawner.pre_spawn_hook = _short_start
"""
CLEANUP = 120.0  # seconds for the operator to destroy a stack and the pods to go


def nothing_left(env: HubEnv, name: str) -> bool:
    return env.instance(name) is None and not env.pods(name) and env.secret(f"{name}-hub") is None


def server_token(env: HubEnv, name: str) -> str:
    secret = env.secret(f"{name}-hub")
    assert secret is not None, f"no token Secret {name}-hub"
    return base64.b64decode(secret.data["JUPYTERHUB_API_TOKEN"]).decode()


def token_works(env: HubEnv, token: str) -> bool:
    resp = requests.get(f"{env.hub.api_url}/user", timeout=30,
                        headers={"Authorization": f"token {token}"})
    assert resp.status_code in (200, 401, 403), (resp.status_code, resp.text)
    return resp.status_code == 200


def set_settings(env: HubEnv) -> bool:
    """Put SETTINGS and the short start hook into the hub's config; whether that changed it
    (the hub runs with them from its next start)."""
    config = env.hub.spawner_config
    changed = any(config.get(k) != v for k, v in SETTINGS.items())
    config.update(SETTINGS)
    if SHORT_START_HOOK not in env.hub.extra_config:
        env.hub.extra_config += SHORT_START_HOOK
        changed = True
    return changed


def stop_request(env: HubEnv, user: str) -> tuple[int, Any]:
    return env.hub.api("DELETE", env.server_path(user))


def test_stop_while_starting_is_honoured(env: HubEnv) -> None:
    """(a) Two users: one stops right after the start request, one as its pod appears. Each
    DELETE succeeds (no "pending spawn" 500), the hub shows the server stopped, and no
    instance, pod or `<instance>-hub` token Secret is left (none ownerless)."""
    early, late = "stella", "stan"
    for user in (early, late):
        env.add_user(user)
    names = {u: instance_name_for_user(u) for u in (early, late)}

    status, body = env.spawn(early)
    assert status in (201, 202), (status, body)
    status, body = stop_request(env, early)
    assert status in (202, 204), (status, body)

    status, body = env.spawn(late)
    assert status in (201, 202), (status, body)
    wait_for(f"{late}'s pod to appear", lambda: env.pods(names[late]), interval=0.1,
             describe=lambda: env.describe(names[late]))
    status, body = stop_request(env, late)
    assert status in (202, 204), (status, body)

    for user, name in names.items():
        wait_for(f"{user} stopped in the hub", lambda u=user: env.server_model(u) is None,
                 timeout=CLEANUP, describe=lambda n=name: env.describe(n))
        wait_for(f"no instance, pod or token Secret of {user} left",
                 lambda n=name: nothing_left(env, n), timeout=CLEANUP,
                 describe=lambda n=name: env.describe(n))
    # The stopped user starts normally again.
    env.start_and_wait(late)


def test_hub_restart_mid_spawn_leaves_nothing_and_revokes_the_old_token(env: HubEnv) -> None:
    """(b) A spawn interrupted by a hub restart: its instance, pod and Secret are removed at
    the hub's start, and the hub shows no server. (c) A server running across the restart,
    stopped after it: its old API token no longer authenticates."""
    running, interrupted = "rhea", "ike"
    for user in (running, interrupted):
        env.add_user(user)
    running_name = instance_name_for_user(running)
    interrupted_name = instance_name_for_user(interrupted)
    env.start_and_wait(running)
    token = server_token(env, running_name)
    assert token_works(env, token)

    status, body = env.spawn(interrupted)
    assert status in (201, 202), (status, body)
    wait_for(f"{interrupted}'s instance created", lambda: env.instance(interrupted_name),
             interval=0.1, describe=lambda: env.describe(interrupted_name))
    set_settings(env)  # for test_operator_down_... (one restart for both)
    env.hub.restart()

    wait_for(f"{running}'s server ready in the restarted hub",
             lambda: (env.server_model(running) or {}).get("ready"), timeout=120,
             describe=lambda: env.describe(running_name))
    # Bounded: the hub checks every server it had at start-up.
    wait_for(f"{interrupted}'s interrupted server removed", lambda: nothing_left(
        env, interrupted_name) and env.server_model(interrupted) is None, timeout=CLEANUP,
        describe=lambda: env.describe(interrupted_name))

    assert token_works(env, token)
    env.stop(running)
    assert not token_works(env, token), "the stopped server's API token still authenticates"


def test_operator_down_spawn_fails_with_a_message_and_stop_still_stops_the_pod(
        env: HubEnv) -> None:
    """(d) A spawn while no operator runs fails at start_timeout with a message naming the
    instance, that no operator answered, and what to check. (e) A server stopped while no
    operator runs: its pod is gone within pod_delete_grace (plus the pod's own deletion), not
    after a 300 s hang."""
    if set_settings(env):
        env.hub.restart()
    running, waiting = "wes", WAITING_USER
    for user in (running, waiting):
        env.add_user(user)
    running_name = instance_name_for_user(running)
    waiting_name = instance_name_for_user(waiting)
    env.start_and_wait(running)
    env.operator.terminate()
    try:
        failure: dict[str, Any] = {}

        def spawn_and_read_progress() -> None:
            started = time.monotonic()
            status, body = env.spawn(waiting)
            failure["status"] = (status, body)
            if status == 202:
                failure["events"] = env.progress(waiting, timeout=START_TIMEOUT + 60)
            failure["elapsed"] = time.monotonic() - started

        spawning = threading.Thread(target=spawn_and_read_progress)
        spawning.start()

        stopped_at = time.monotonic()
        status, body = stop_request(env, running)
        assert status in (202, 204), (status, body)
        wait_for(f"{running}'s pod gone with no operator", lambda: not env.pods(running_name),
                 timeout=POD_DELETE_GRACE + 60, describe=lambda: env.describe(running_name))
        wait_for(f"{running} stopped in the hub", lambda: env.server_model(running) is None,
                 timeout=30, describe=lambda: env.describe(running_name))
        stop_seconds = time.monotonic() - stopped_at

        spawning.join(START_TIMEOUT + 90)
        assert not spawning.is_alive()
        status, body = failure["status"]
        assert status == 202, (status, body)
        events = failure["events"]
        if not (events and events[-1].get("failed")):
            # The hub's known race (see test_hub.spawn_failure): ask again for the kept failure.
            wait_for(f"{waiting}'s failed spawn to settle",
                     lambda: env.server_model(waiting) is None, timeout=60)
            events = env.progress(waiting)
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert waiting_name in message and "no operator" in message, message
        assert "operator is running" in message, message
        assert failure["elapsed"] > START_TIMEOUT * 0.8, failure["elapsed"]
        print(f"stop with the operator down: {stop_seconds:.1f}s; spawn failed after "
              f"{failure['elapsed']:.1f}s: {message}")
    finally:
        env.operator.start()
    # With the operator back, what waited for it goes.
    for name in (running_name, waiting_name):
        wait_for(f"instance {name} gone once the operator is back",
                 lambda n=name: nothing_left(env, n), timeout=CLEANUP,
                 describe=lambda n=name: env.describe(n))
