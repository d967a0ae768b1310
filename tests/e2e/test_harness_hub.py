"""End-to-end: the harness's real JupyterHub + configurable-http-proxy, and a real
`jupyterhub-singleuser` on a loopback pod talking to that hub.

The spawner's own tests (tests/e2e/test_hub*.py) build on these pieces; here only the pieces
themselves are proven: the hub answers through the proxy, logs a user in, keeps its database
across a restart with the proxy untouched, and a notebook server started by the pod runner from
a pod with no command (the default `jupyterhub-singleuser`) serves its PVC on the pod IP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from kubernetes import client

from tests.e2e.loopback_pods import (
    http_get,
    make_claim,
    pod_manifest,
    running_pid,
    wait_for,
    wait_service_account,
)

pytestmark = pytest.mark.e2e


def test_hub_answers_through_the_proxy_and_restart_keeps_db_and_proxy(hub_factory, namespace):
    hub = hub_factory(namespace=namespace)
    status, body = hub.api("GET", "/")
    assert (status, body) == (200, {"version": "6.1.1"})
    assert hub.api_url.startswith(f"http://127.0.0.1:{hub.proxy_port}/")

    session = hub.login("alice")
    me = session.get(f"{hub.api_url}/user", timeout=30)
    assert me.status_code == 200 and me.json()["name"] == "alice"
    wrong = requests.post(f"{hub.url}/hub/login", allow_redirects=False, timeout=30,
                          data={"username": "mallory", "password": "not-it"})
    assert wrong.status_code != 302
    # The admin service token may start servers for anyone (named ones too).
    status, info = hub.api("GET", "/users/alice")
    assert status == 200 and info["servers"] == {}

    proxy_pid = hub.proxy_process.proc.pid
    hub_pid = hub.hub_process.proc.pid
    hub.restart()
    assert hub.hub_process.proc.pid != hub_pid
    assert hub.proxy_process.proc.pid == proxy_pid and hub.proxy_process.running()
    status, users = hub.api("GET", "/users")
    assert status == 200 and [u["name"] for u in users] == ["alice"]
    assert "JupyternetesSpawner" in hub.config_file.read_text()
    assert (hub.log_dir / "jupyterhub.log").read_text().count("===== start at") == 2


@pytest.fixture
def core(cluster, namespace) -> Any:
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        wait_service_account(core, namespace)
        yield core


def test_singleuser_server_on_a_loopback_pod_serves_its_claim(hub_factory, core, namespace,
                                                               pod_runner):
    hub = hub_factory(namespace=namespace)
    assert hub.api("POST", "/users/alice")[0] == 201
    status, token = hub.api("POST", "/users/alice/tokens",
                            {"note": "e2e notebook", "scopes": ["access:servers!user=alice"]})
    assert status == 201, token
    make_claim(core, pod_runner, namespace, "alice-home")
    (pod_runner.pvc_dir(namespace, "alice-home") / "analysis.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    hub_api = f"http://127.0.0.1:{hub.hub_port}/hub/api"
    env = {"JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/alice/",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "JUPYTERHUB_BASE_URL": "/",
           "JUPYTERHUB_API_URL": hub_api, "JUPYTERHUB_API_TOKEN": token["token"],
           "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice", "JUPYTERHUB_USER": "alice",
           # Who may use the server (as the hub's get_env() says): alice's servers.
           "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=alice/",
                                                         "access:servers!user=alice"])}
    # No command: the runner's default, jupyterhub-singleuser, as with the seed template.
    core.create_namespaced_pod(namespace, pod_manifest(
        "jupyter-alice", {"env": [{"name": k, "value": v} for k, v in env.items()],
                          "ports": [{"containerPort": 8888}]},
        claim="alice-home", mount_path="/home/alice/work"))

    ip, _ = running_pid(core, namespace, "jupyter-alice")
    answer = wait_for("jupyterhub-singleuser on the pod IP",
                      lambda: http_get(f"http://{ip}:8888/user/alice/api"), timeout=90)
    assert answer[0] == 200 and "version" in json.loads(answer[1])
    # The server's files are the claim's: the contents API lists what the PVC holds.
    contents = http_get(f"http://{ip}:8888/user/alice/api/contents",
                        headers={"Authorization": f"token {token['token']}"})
    assert contents is not None and contents[0] == 200, contents
    assert [f["name"] for f in json.loads(contents[1])["content"]] == ["analysis.ipynb"]
