"""End to end: a real JupyterHub + configurable-http-proxy spawning through JupyternetesSpawner.

The hub (sqlite, shared-password authenticator, named servers, an admin service token) runs as
its own process with `spawner_class = "jupyternetes"`; the operator runs as `jupyternetes
operator` on the harness cluster; pods land on the loopback node, where the harness's pod runner
starts each one's `jupyterhub-singleuser` as a local process bound to the pod IP. Everything is
driven through the hub's REST API and the proxy, as a user and an admin would.

One hub and one operator serve the whole module (each spawn is a Pulumi `up`; starting them per
test would double the run time on two cores); every test uses its own users.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from kubernetes import client

from harness import pulumi_env as harness_pulumi
from harness.cluster import LOOPBACK_NODE, loopback_placement
from harness.hub import Hub
from harness.operator_process import OperatorProcess
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.crd.naming import instance_name_for_user
from tests.e2e.loopback_pods import wait_service_account

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# Generous: two cores shared with other work; each spawn is a Pulumi `up` plus a notebook start.
SPAWN_TIMEOUT = 240.0
FAST_BACKOFF = ("--backoff-base", "0.5", "--backoff-cap", "10")
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = SPAWN_TIMEOUT,
             describe: Callable[[], str] | None = None, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = describe() if describe else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
        time.sleep(interval)


def spawner_template(namespace: str, name: str = "spawner-template") -> dict:
    with open(REPO / "examples" / "spawner-template.yaml") as f:
        body = yaml.safe_load(f)
    body["metadata"] = {"name": name, "namespace": namespace}
    body["spec"]["pods"][0]["spec"].update(loopback_placement())
    return body


class HubEnv:
    """The module's hub, operator and cluster, with the calls the tests make."""

    def __init__(self, hub: Hub, operator: OperatorProcess, api: client.ApiClient,
                 namespace: str, runner: Any) -> None:
        self.hub = hub
        self.operator = operator
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ns = namespace
        self.runner = runner
        self.tokens: dict[str, str] = {}

    # ---- cluster ----------------------------------------------------------------------------

    def instance(self, name: str) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns,
                                                            INSTANCE_PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def instances_of(self, user: str) -> list[dict]:
        items = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.ns, INSTANCE_PLURAL,
            label_selector=f"hub.jupyter.org/username={user}")["items"]
        return items

    def pods(self, instance: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.ns, label_selector=f"{LABEL_INSTANCE}={instance}").items

    def pvc(self, claim: str) -> Any | None:
        try:
            return self.core.read_namespaced_persistent_volume_claim(claim, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret(self, name: str) -> Any | None:
        try:
            return self.core.read_namespaced_secret(name, self.ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def describe(self, instance: str) -> str:
        obj = self.instance(instance)
        hub_log = self.hub.hub_process.log_tail() if self.hub.hub_process else ""
        return (f"instance: {json.dumps((obj or {}).get('status'), indent=1)[:3000]}\n"
                f"----- hub log -----\n{hub_log}"
                f"\n----- operator log -----\n{self.operator.log_tail()}")

    # ---- hub --------------------------------------------------------------------------------

    def add_user(self, user: str, servers: tuple[str, ...] = ("",)) -> str:
        """Create the user, a token for them, and pre-bound volumes for their servers."""
        status, body = self.hub.api("POST", f"/users/{user}")
        assert status in (201, 409), (status, body)
        status, body = self.hub.api("POST", f"/users/{user}/tokens", {"expires_in": 7200})
        assert status == 201, (status, body)
        self.tokens[user] = body["token"]
        for server in servers:
            self.runner.provide_volume(self.ns, f"{instance_name_for_user(user, server)}-workspace")
        return self.tokens[user]

    @staticmethod
    def server_path(user: str, server: str = "") -> str:
        return f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"

    def spawn(self, user: str, server: str = "", options: dict | None = None) -> tuple[int, Any]:
        return self.hub.api("POST", self.server_path(user, server), options or {})

    def server_model(self, user: str, server: str = "") -> dict | None:
        status, body = self.hub.api("GET", f"/users/{user}")
        assert status == 200, (status, body)
        return (body.get("servers") or {}).get(server)

    def progress(self, user: str, server: str = "", timeout: float = SPAWN_TIMEOUT) -> list[dict]:
        """Every progress event of the pending spawn until it is ready or failed."""
        path = (f"/users/{user}/servers/{server}/progress" if server
                else f"/users/{user}/server/progress")
        events: list[dict] = []
        with requests.get(f"{self.hub.api_url}{path}", stream=True, timeout=timeout,
                          headers={"Authorization": f"token {self.hub.api_token}"}) as resp:
            assert resp.status_code == 200, resp.text
            for line in resp.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def get(self, user: str, path: str, server: str = "", token: str | None = "user",
            **kwargs: Any) -> requests.Response:
        """A request to the user's server through the proxy."""
        headers = {}
        if token == "user":
            token = self.tokens[user]
        if token:
            headers["Authorization"] = f"token {token}"
        prefix = f"/user/{user}/{server + '/' if server else ''}"
        method = kwargs.pop("method", "GET")
        return requests.request(method, f"{self.hub.url}{prefix}{path}", headers=headers,
                                timeout=30, allow_redirects=False, **kwargs)

    def answers(self, user: str, server: str = "") -> bool:
        try:
            return self.get(user, "api/status", server).status_code == 200
        except requests.RequestException:
            return False

    def start_and_wait(self, user: str, server: str = "", options: dict | None = None) -> None:
        status, body = self.spawn(user, server, options)
        assert status in (201, 202), (status, body)
        name = instance_name_for_user(user, server)
        wait_for(f"{user}/{server} ready in the hub",
                 lambda: (self.server_model(user, server) or {}).get("ready"),
                 describe=lambda: self.describe(name))
        wait_for(f"{user}/{server} answering through the proxy",
                 lambda: self.answers(user, server), timeout=60,
                 describe=lambda: self.describe(name))

    def stop(self, user: str, server: str = "") -> None:
        status, body = self.hub.api("DELETE", self.server_path(user, server))
        assert status in (202, 204), (status, body)
        wait_for(f"{user}/{server} stopped in the hub",
                 lambda: self.server_model(user, server) is None)


@pytest.fixture(scope="module")
def env(cluster, crds_installed, pod_runner, tmp_path_factory) -> Iterator[HubEnv]:
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"e2e-hub-{secrets.token_hex(4)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=ns, labels={"jupyternetes.e2e/test": "true"})))
    wait_service_account(core, ns)  # pods are refused until the namespace has its default SA
    templates = [spawner_template(ns)]
    broken = spawner_template(ns, "unrenderable")
    broken["spec"]["pods"][0]["labels"]["broken"] = "{no.such.variable}"
    templates.append(broken)
    crashing = spawner_template(ns, "crashing")
    # The notebook process dies before it ever answers, some seconds after its pod is Ready
    # (no readiness probe), when the hub alone would only be polling the URL.
    crashing["spec"]["pods"][0]["spec"]["containers"][0]["command"] = [
        "python", "-c", "import sys, time; time.sleep(8); sys.exit(3)"]
    templates.append(crashing)
    for body in templates:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL, body)

    root = tmp_path_factory.mktemp("hub-e2e")
    backend = harness_pulumi.backend_url(root / "pulumi-state")
    home = harness_pulumi.paths.pulumi_home()
    operator = OperatorProcess(
        cluster.kubeconfig, harness_pulumi.pulumi_env(backend, secrets.token_urlsafe(16),
                                                      pulumi_home=home),
        root / "operator-state", home, [ns], root / "operator.log", backend_url=backend,
        workers=4, extra=FAST_BACKOFF).start()
    hub = Hub(root=root / "hub", spawner_config={
        "kubeconfig": str(cluster.kubeconfig), "namespace": ns, "hub_namespace": ns,
        "template_name": "spawner-template", "poll_interval": 3,
        "profile_list": [
            {"display_name": "Standard", "slug": "standard",
             "template_name": "spawner-template", "default": True},
            {"display_name": "Broken", "slug": "broken", "template_name": "unrenderable"},
            {"display_name": "Gone", "slug": "gone", "template_name": "no-such-template"},
            {"display_name": "Crashing", "slug": "crashing", "template_name": "crashing"},
        ]},
        # 202 at once: the tests read the progress stream of every spawn.
        extra_config="c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n")
    hub.start()
    e = HubEnv(hub, operator, api, ns, pod_runner)
    try:
        yield e
    finally:
        hub.stop()
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, ns,
                                                         INSTANCE_PLURAL)["items"]:
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL,
                                                   item["metadata"]["name"])
        try:
            wait_for("instances deleted", lambda: not custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, INSTANCE_PLURAL)["items"], timeout=180)
        finally:
            operator.terminate()
            core.delete_namespace(ns)
            api.close()


def spawn_with_progress(env: HubEnv, user: str, server: str = "",
                        options: dict | None = None) -> tuple[int, Any, list[dict]]:
    status, body = env.spawn(user, server, options)
    events = env.progress(user, server) if status == 202 else []
    return status, body, events


# ---- the tests -------------------------------------------------------------------------------


def test_default_server_starts_with_progress_and_auth(env: HubEnv) -> None:
    user = "alice"
    env.add_user(user)
    name = instance_name_for_user(user)
    status, body, events = spawn_with_progress(env, user)
    assert status == 202, (status, body)
    assert events[-1].get("ready"), events
    messages = [e.get("message", "") for e in events]
    percents = [e["progress"] for e in events if "progress" in e]
    assert percents == sorted(percents), events
    assert any("instance" in m and "created" in m for m in messages), messages
    assert any("stack" in m for m in messages), messages
    assert any("pod scheduled" in m for m in messages), messages
    wait_for("alice answering", lambda: env.answers(user), timeout=60,
             describe=lambda: env.describe(name))

    ok = env.get(user, "api/status")
    assert ok.status_code == 200
    assert "started" in ok.json()
    assert env.get(user, "api/status", token=None).status_code == 403
    other = env.add_user("alice-neighbour", servers=())
    assert env.get(user, "api/status", token=other).status_code == 403

    inst = env.instance(name)
    assert inst is not None
    secret = env.secret(f"{name}-hub")
    token = base64.b64decode(secret.data["JUPYTERHUB_API_TOKEN"]).decode()
    assert base64.b64decode(secret.data["jupyterhub.api_token"]).decode() == token
    assert token not in json.dumps(inst)
    assert inst["spec"]["variables"]["jupyterhub.user.name"] == user
    assert inst["spec"]["variables"]["jupyterhub.env.JUPYTERHUB_SERVICE_PREFIX"] == f"/user/{user}/"
    owners = secret.metadata.owner_references or []
    assert [(o.kind, o.name, o.uid) for o in owners] == [
        ("JupyterNotebookInstance", name, inst["metadata"]["uid"])]
    pod = env.pods(name)[0]
    assert token not in json.dumps(client.ApiClient().sanitize_for_serialization(pod.spec))


def test_named_server_gets_its_own_instance(env: HubEnv) -> None:
    user = "nora"
    env.add_user(user, servers=("", "second"))
    env.start_and_wait(user)
    env.start_and_wait(user, "second")
    default, named = instance_name_for_user(user), instance_name_for_user(user, "second")
    assert default != named
    assert env.instance(default) and env.instance(named)
    assert env.answers(user) and env.answers(user, "second")
    status = env.get(user, "api/status", "second")
    assert status.status_code == 200
    assert env.instance(named)["spec"]["variables"]["jupyterhub.server.name"] == "second"

    # Deleting the named server for good removes its instance and its PVC (delete_pvc, the
    # default); the default server and its PVC are untouched.
    status, body = env.hub.api("DELETE", "/users/nora/servers/second", {"remove": True})
    assert status in (202, 204), (status, body)
    wait_for("nora's second server deleted", lambda: env.server_model(user, "second") is None)
    wait_for("its instance gone", lambda: env.instance(named) is None, timeout=120)
    wait_for("its PVC deleted", lambda: env.pvc(f"{named}-workspace") is None, timeout=120)
    assert env.pvc(f"{default}-workspace") is not None
    assert env.answers(user)


def test_stop_keeps_the_pvc_and_the_files(env: HubEnv) -> None:
    user = "bob"
    env.add_user(user)
    name = instance_name_for_user(user)
    env.start_and_wait(user)
    put = env.get(user, "api/contents/hello.txt", method="PUT",
                  json={"type": "file", "format": "text", "content": "kept across stops"})
    assert put.status_code in (200, 201), put.text
    env.stop(user)
    assert env.instance(name) is None
    assert env.pods(name) == []
    assert env.secret(f"{name}-hub") is None or wait_for(
        "the token Secret garbage-collected", lambda: env.secret(f"{name}-hub") is None,
        timeout=60)
    assert env.pvc(f"{name}-workspace") is not None
    env.start_and_wait(user)
    got = env.get(user, "api/contents/hello.txt")
    assert got.status_code == 200, got.text
    assert got.json()["content"] == "kept across stops"


def test_hub_restart_finds_the_running_server(env: HubEnv) -> None:
    user = "carol"
    env.add_user(user)
    name = instance_name_for_user(user)
    env.start_and_wait(user)
    uid = env.instance(name)["metadata"]["uid"]
    pod_uid = env.pods(name)[0].metadata.uid
    env.hub.restart()
    # The hub answers before its spawners are loaded when that takes over 10 s (a loaded
    # machine: "init_spawners did not complete within 10 seconds"), then finishes in the
    # background: wait for it, as a user reloading the page would.
    wait_for("carol's server ready in the restarted hub",
             lambda: (env.server_model(user) or {}).get("ready"), timeout=120,
             describe=lambda: env.describe(name))
    assert env.answers(user)
    # Same instance, same pod: no second instance, no restart of the server.
    assert env.instance(name)["metadata"]["uid"] == uid
    assert [p.metadata.uid for p in env.pods(name)] == [pod_uid]
    assert len(env.instances_of(user)) == 1
    # And the restarted hub still controls it.
    env.stop(user)
    assert env.instance(name) is None


def test_killed_notebook_is_seen_stopped_and_starts_again(env: HubEnv) -> None:
    user = "dave"
    env.add_user(user)
    name = instance_name_for_user(user)
    env.start_and_wait(user)
    pod = env.pods(name)[0]
    pids = env.runner.pids(env.ns, pod.metadata.name)
    assert pids, "the pod runner runs no process for the pod"
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)
    # poll_interval is 3 s: the hub notices, stops the server (deleting the instance).
    wait_for("the hub to see dave's server stopped", lambda: env.server_model(user) is None,
             timeout=120, describe=lambda: env.describe(name))
    wait_for("the instance gone", lambda: env.instance(name) is None, timeout=120)
    env.start_and_wait(user)
    assert env.answers(user)


def test_replaced_pod_is_seen_stopped_not_left_routed_to_a_dead_address(env: HubEnv) -> None:
    """The notebook pod is deleted (evicted, deleted by hand); the operator brings up a new one
    at another address. The proxy's route still points at the old one, and the hub re-checks
    routes only every 5 minutes: poll says the server stopped (exit status 5), the hub drops
    the route, and the user starts again with the files kept. (Before, poll said "running"
    and the route pointed at a dead address until the hub's next route check.)"""
    user = "ruth"
    env.add_user(user)
    name = instance_name_for_user(user)
    env.start_and_wait(user)
    (old,) = env.pods(name)
    routed = old.status.pod_ip
    assert routed and env.server_model(user)["ready"]
    env.core.delete_namespaced_pod(old.metadata.name, env.ns)
    # kwok hands a freed IP to the next pod on the node; on a real node the replacement gets
    # another address. A placeholder pod takes the freed one first (bound to the node
    # directly: no scheduler delay), well before the operator's `up` makes the replacement.
    wait_for("the old pod gone", lambda: not [p for p in env.pods(name)
                                              if p.metadata.uid == old.metadata.uid],
             timeout=60, interval=0.1)
    placeholder = f"placeholder-{secrets.token_hex(3)}"
    env.core.create_namespaced_pod(env.ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": placeholder},
        "spec": {"nodeName": LOOPBACK_NODE, **loopback_placement(),
                 "containers": [{"name": "sleep", "image": "busybox",
                                 "command": ["sleep", "600"]}]}})
    try:
        new = wait_for("the replacement running", lambda: next(
            (p for p in env.pods(name) if p.status.pod_ip), None), timeout=SPAWN_TIMEOUT,
            describe=lambda: env.describe(name))
        assert new.status.pod_ip != routed, "the replacement got the routed address again"
        # poll_interval is 3 s: well inside the wait, far inside the hub's route check.
        wait_for("the hub to see ruth's server stopped", lambda: env.server_model(user) is None,
                 timeout=120, describe=lambda: env.describe(name))
    finally:
        env.core.delete_namespaced_pod(placeholder, env.ns)
    hub_log = env.hub.hub_process.log_tail(400)
    assert "exit code: 5" in hub_log or "exit status 5" in hub_log, hub_log[-3000:]
    assert not env.answers(user), "the proxy still routes ruth to a server"
    wait_for("the instance gone", lambda: env.instance(name) is None, timeout=120)
    assert env.pvc(f"{name}-workspace") is not None
    env.start_and_wait(user)
    assert env.answers(user)


def spawn_failure(env: HubEnv, user: str, options: dict,
                  servers: tuple[str, ...] = ()) -> tuple[str, float]:
    """(failure message the hub reports, seconds from request to failure)."""
    env.add_user(user, servers=servers)
    started = time.monotonic()
    status, body, events = spawn_with_progress(env, user, options=options)
    elapsed = time.monotonic() - started
    if status == 202:
        if not (events and events[-1].get("failed")):
            # Known hub race (6.1.1): the stream of a spawn that fails while its server is
            # starting may close without the final event. Asked again, the hub answers with the
            # failure it kept (the spawner's exception), as a browser reload would see it.
            wait_for(f"{user}'s failed spawn to settle", lambda: env.server_model(user) is None,
                     timeout=60)
            events = env.progress(user)
        assert events and events[-1].get("failed"), (events, env.hub.hub_process.log_tail())
        return events[-1]["message"], elapsed
    # Failed before the hub answered (or the known InvalidStateError 500 of the hub).
    assert status >= 400, (status, body)
    message = body.get("message", "") if isinstance(body, dict) else str(body)
    return message, elapsed


def test_unrenderable_template_fails_fast_with_the_instance_message(env: HubEnv) -> None:
    message, elapsed = spawn_failure(env, "erin", {"profile": "broken"})
    assert "no.such.variable" in message, message
    # start_timeout is 300 s; the failure comes from the status, not a timeout.
    assert elapsed < 120, elapsed
    wait_for("the failed instance removed", lambda: env.instance(
        instance_name_for_user("erin")) is None, timeout=120)


def test_missing_template_fails_fast_with_the_instance_message(env: HubEnv) -> None:
    message, elapsed = spawn_failure(env, "frank", {"profile": "gone"})
    assert "no-such-template" in message and "not found" in message, message
    assert elapsed < 120, elapsed


def test_server_that_dies_before_answering_fails_fast_with_the_pod_message(env: HubEnv) -> None:
    message, elapsed = spawn_failure(env, "hank", {"profile": "crashing"}, servers=("",))
    assert "failed" in message and "exit code 3" in message, message
    # http_timeout is 120 s and start_timeout 300 s: the pod's own status ends the spawn.
    assert elapsed < 100, elapsed


def test_unknown_profile_names_the_choices(env: HubEnv) -> None:
    message, _ = spawn_failure(env, "gina", {"profile": "huge"})
    assert "unknown profile 'huge'" in message and "'standard'" in message, message
    assert env.instance(instance_name_for_user("gina")) is None


def test_ten_users_at_once(env: HubEnv) -> None:
    users = [f"crowd{i}" for i in range(10)]
    for user in users:
        env.add_user(user)
    results: dict[str, Any] = {}

    def spawn(user: str) -> None:
        results[user] = env.spawn(user)

    threads = [threading.Thread(target=spawn, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status in (201, 202) for status, _ in results.values()), results
    for user in users:
        wait_for(f"{user} answering", lambda u=user: env.answers(u), timeout=SPAWN_TIMEOUT * 2,
                 describe=lambda u=user: env.describe(instance_name_for_user(u)))
    assert len({instance_name_for_user(u) for u in users}) == 10
