"""The install as an admin runs it, on the real node: `pulumi up` of the deploy stack (Pulumi.yaml
at the repository root) with the locally built operator image (tools/image/operator.sh) imported
into containerd. The operator runs as the stack's Deployment: its own pod, the stack's
ServiceAccount (in-cluster config, the projected token), a read-only root filesystem, its Pulumi
state on a PVC the cluster provisioned, Ready through its real probes (`pulumi up` itself waits
for the rollout). It turns the seed instance into a real notebook container. Then its pod is
deleted: the Deployment brings a new one, the state on the PVC is still there, and an instance
created right before the deletion converges. (The seed's server reaches the hub by the template's
hub.kadense.svc.cluster.local, a Service to a hub process on the bridge.)

The module's `installed` stack is shared by the tests of this module (the real node by the
session: tests/e2e/fixtures_node.py).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from kubernetes import client, config

from harness import pulumi_env as harness_pulumi
from harness.examples import load_example, strip_server_fields
from harness.hub import Hub
from harness.node import GATEWAY, NODE_NAME
from harness.provisioner import PROVISIONER
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.naming import instance_name_for_user, stack_name
from jupyternetes.deploy.manifests import STATE_PVC, selector_labels
from jupyternetes.deploy.rbac import OPERATOR
from tests.e2e.deploystack import REPO, DeployStack
from tests.e2e.fixtures_node import (
    RealCluster,
    ensure,
    http_text,
    hub_service,
    seed_template_for,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.realnode]
SEED_TEMPLATE_NAMESPACE = "kadense"
PROVISION_TIMEOUT = 300.0


@dataclass
class Installed:
    stack: DeployStack
    api: client.ApiClient
    operator_ns: str
    user_ns: str
    up_seconds: float

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def operator_pods(self) -> list[client.V1Pod]:
        selector = ",".join(f"{k}={v}" for k, v in selector_labels().items())
        return [p for p in self.core.list_namespaced_pod(
            self.operator_ns, label_selector=selector).items if not p.metadata.deletion_timestamp]

    def ready_operator(self) -> client.V1Pod | None:
        for pod in self.operator_pods():
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod
        return None

    def describe(self) -> str:
        out = []
        for pod in self.core.list_namespaced_pod(self.operator_ns).items:
            out.append(f"pod {pod.metadata.name}: {pod.status.phase} "
                       f"{[(c.type, c.status, c.message) for c in pod.status.conditions or []]}")
            with contextlib.suppress(client.ApiException):
                out.append(self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.operator_ns, container=pod.spec.containers[0].name,
                    tail_lines=30))
        events = self.core.list_namespaced_event(self.operator_ns).items
        out += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events[-20:]]
        return "\n".join(out)


@pytest.fixture(scope="module")
def installed(real_cluster: RealCluster, operator_image: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """`pulumi up` of the deploy stack: the operator watching one user namespace, reading
    templates in the seed's `kadense`, its image the one just imported (pullPolicy Never)."""
    tmp = tmp_path_factory.mktemp("real-install")
    suffix = uuid.uuid4().hex[:6]
    operator_ns, user_ns = f"rn-op-{suffix}", f"rn-users-{suffix}"
    node_api = config.new_client_from_config(config_file=str(real_cluster.kubeconfig))
    core = client.CoreV1Api(node_api)
    core.create_namespace({"metadata": {"name": user_ns}})
    ensure(lambda: core.create_namespace({"metadata": {"name": SEED_TEMPLATE_NAMESPACE}}))
    env = harness_pulumi.pulumi_env(harness_pulumi.backend_url(tmp / "pulumi-state"),
                                    f"real-{suffix}")
    env["KUBECONFIG"] = str(real_cluster.kubeconfig)
    stack = DeployStack(f"real-{suffix}", env)
    stray = REPO / f"Pulumi.{stack.name}.yaml"
    try:
        stack.run("stack", "init", "--secrets-provider", "passphrase")
        settings = {"namespace": operator_ns, "image": operator_image,
                    "imagePullPolicy": "Never", "watchNamespaces[0]": user_ns,
                    "templateNamespaces[0]": SEED_TEMPLATE_NAMESPACE, "workers": "2",
                    # A deleted pod's in-flight `up`s get this long before SIGKILL.
                    "shutdownGraceSeconds": "20", "logLevel": "info"}
        for key, value in settings.items():
            stack.config(key, value, path="[" in key)
        t0 = time.monotonic()
        stack.up()  # waits for the Deployment's rollout: the operator pod Ready
        up_seconds = time.monotonic() - t0
        print(f"pulumi up of the deploy stack (operator pod Ready): {up_seconds:.1f} s")
        yield Installed(stack, node_api, operator_ns, user_ns, up_seconds)
    finally:
        with contextlib.suppress(Exception):
            stack.run("destroy", "--yes", "--skip-preview", check=False)
        with contextlib.suppress(Exception):
            stack.run("stack", "rm", "--yes", "--force", check=False)
        stray.unlink(missing_ok=True)
        for ns in (user_ns, operator_ns):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns)
        node_api.close()


def seed_instance(user_ns: str, name: str) -> dict:
    instance = strip_server_fields(load_example("seed-instance.yaml"))
    instance["metadata"].update(namespace=user_ns, name=name)
    instance["spec"]["variables"]["jupyternetes.instance.name"] = name
    instance["spec"]["variables"]["jupyternetes.instance.namespace"] = user_ns
    return instance


def checkpoint(volume: Path, namespace: str, name: str) -> dict | None:
    """The instance's Pulumi checkpoint in the operator's state volume (on this machine)."""
    for path in volume.rglob(f"{stack_name(namespace, name)}.json"):
        if ".pulumi/stacks" in str(path):
            return json.loads(path.read_text())
    return None


def test_pulumi_up_runs_the_operator_in_its_pod_which_survives_deletion(
        installed: Installed, real_cluster: RealCluster):
    d = installed
    core, custom = d.core, d.custom
    t0 = time.monotonic()
    pod = d.ready_operator()
    assert pod is not None, d.describe()
    # The stack's ServiceAccount, its token projected (in-cluster config), read-only root.
    assert pod.spec.service_account_name == OPERATOR
    assert pod.spec.node_name == NODE_NAME
    operator = next(c for c in pod.spec.containers if c.name == "operator")
    assert operator.security_context.read_only_root_filesystem is True
    assert operator.image_pull_policy == "Never"
    status = next(c for c in pod.status.container_statuses if c.name == "operator")
    assert status.ready and status.container_id.startswith("containerd://")
    # Its state PVC: provisioned dynamically by the cluster's default StorageClass.
    pvc = core.read_namespaced_persistent_volume_claim(STATE_PVC, d.operator_ns)
    assert pvc.status.phase == "Bound"
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == PROVISIONER
    volume = Path(pv.spec.local.path)

    seed_template_for(d.api, real_cluster.notebook_image, (d.user_ns,))
    first, second = "seed-first", "seed-second"

    def ready(name: str):
        def check() -> dict | None:
            try:
                inst = custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                           INSTANCE_PLURAL, name)
            except client.ApiException:
                return None
            conditions = {c["type"]: c["status"]
                          for c in (inst.get("status") or {}).get("conditions", [])}
            notebook = (inst.get("status") or {}).get("pods", {}).get("notebook", {})
            return inst if conditions.get("Ready") == "True" and notebook.get("podAddress") \
                else None
        return check

    def describe(name: str):
        def text() -> str:
            with contextlib.suppress(client.ApiException):
                inst = custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                           INSTANCE_PLURAL, name)
                return f"instance: {json.dumps(inst.get('status'), indent=1)}\n{d.describe()}"
            return d.describe()
        return text

    with Hub(hub_host=GATEWAY) as hub:
        hub_service(d.api, SEED_TEMPLATE_NAMESPACE, hub.hub_port)
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                   seed_instance(d.user_ns, first))
            wait_for(f"instance {first} Ready through the operator's pod", ready(first),
                     PROVISION_TIMEOUT, describe(first))
            notebook = core.read_namespaced_pod(f"{first}-notebook", d.user_ns)
            assert notebook.status.container_statuses[0].container_id.startswith("containerd://")
            print(f"seed instance Ready {time.monotonic() - t0:.1f} s after the operator")
            # Its server passed its hub check by the template's hub.kadense.svc.cluster.local
            # (it exits after ~45 s without a hub) and answers on its pod IP.
            answer = wait_for("the notebook server's /api", lambda: http_text(
                f"http://{notebook.status.pod_ip}:8888/user/jovyan/api"), PROVISION_TIMEOUT)
            assert '"version"' in answer
            server_log = core.read_namespaced_pod_log(f"{first}-notebook", d.user_ns)
            assert "Failed to connect to my Hub" not in server_log, server_log
            # `kubectl logs` of the operator (apiserver -> kubelet -> containerd) shows it.
            logs = core.read_namespaced_pod_log(pod.metadata.name, d.operator_ns,
                                                container="operator")
            assert first in logs, logs[-3000:]
            state = checkpoint(volume, d.user_ns, first)
            assert state is not None, sorted(str(p) for p in volume.rglob("*"))[:50]

            # An instance in flight, then the operator's pod deleted (SIGTERM, grace).
            custom.create_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                   seed_instance(d.user_ns, second))
            t1 = time.monotonic()
            core.delete_namespaced_pod(pod.metadata.name, d.operator_ns)
            new = wait_for("a new operator pod Ready (the Deployment's)", lambda: (
                p if (p := d.ready_operator()) and p.metadata.uid != pod.metadata.uid else None),
                PROVISION_TIMEOUT, d.describe)
            print(f"operator pod replaced and Ready in {time.monotonic() - t1:.1f} s")
            wait_for(f"in-flight instance {second} Ready", ready(second), PROVISION_TIMEOUT,
                     describe(second))
            # The same volume, the first stack's state still there, the second's beside it.
            assert core.read_namespaced_persistent_volume_claim(
                STATE_PVC, d.operator_ns).spec.volume_name == pv.metadata.name
            after = checkpoint(volume, d.user_ns, first)
            assert after is not None
            assert len(after["checkpoint"]["latest"]["resources"]) == \
                len(state["checkpoint"]["latest"]["resources"])
            assert checkpoint(volume, d.user_ns, second) is not None
            # The first user's server was not touched by the new replica.
            assert core.read_namespaced_pod(f"{first}-notebook", d.user_ns).metadata.uid == \
                notebook.metadata.uid
            assert new.spec.service_account_name == OPERATOR
        finally:
            for name in (first, second):
                with contextlib.suppress(client.ApiException):
                    custom.delete_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                           INSTANCE_PLURAL, name)
            wait_for("the instances deleted by the operator (finalizers honoured)", lambda: not
                     custom.list_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                          INSTANCE_PLURAL)["items"],
                     PROVISION_TIMEOUT, d.describe)


# ---- pod-level features of a template, in a real container ----------------------------------

FEATURES_SCRIPT = """
set -e
echo "secret=$FROM_SECRET"
echo "uid=$(id -u)"
echo "memory.limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
cd /sys/fs/cgroup/cpu && echo "cpu.quota=$(cat cpu.cfs_quota_us) period=$(cat cpu.cfs_period_us)"
echo hello > /work/owned-by-me
echo written
exec sleep 3600
"""


def features_template(namespace: str, image: str, users: str) -> dict:
    """A template using what the hub template uses: env from a secretKeyRef, runAsUser from the
    typed `{jupyterhub.user.id:int}`, a PVC, and resource limits."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "JupyterNotebookTemplate",
        "metadata": {"name": "features", "namespace": namespace},
        "spec": {"allowedNamespaces": [users], "pvcs": [{"name": "work", "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "pods": [{"name": "main", "spec": {
                "terminationGracePeriodSeconds": 1,
                "securityContext": {"runAsUser": "{jupyterhub.user.id:int}"},
                "containers": [{
                    "name": "main", "image": image, "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", FEATURES_SCRIPT],
                    "env": [{"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {
                        "name": "{jupyternetes.instance.name}-values", "key": "value"}}}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": "500m", "memory": "96Mi"}},
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                "volumes": [{"name": "work", "persistentVolumeClaim": {
                    "claimName": "{jupyternetes.pvcs.work}"}}]}}]},
    }


def test_pod_features_of_a_template_are_real_in_the_container(installed: Installed,
                                                               real_cluster: RealCluster):
    """env from a secretKeyRef, runAsUser from `{jupyterhub.user.id:int}` (the file it writes on
    its PVC is that uid's on the volume), resource limits in the container's own cgroup (v1 on
    this host). A NetworkPolicy is accepted by the apiserver but not enforced: the node's CNI
    (bridge + host-local) has no policy engine (README)."""
    d = installed
    core, custom = d.core, d.custom
    t0 = time.monotonic()
    custom_template = features_template(SEED_TEMPLATE_NAMESPACE, real_cluster.notebook_image,
                                        d.user_ns)
    ensure(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, SEED_TEMPLATE_NAMESPACE, "jupyternotebooktemplates", custom_template))
    name, uid = "features", 4321
    core.create_namespaced_secret(d.user_ns, {"metadata": {"name": f"{name}-values"},
                                              "stringData": {"value": "from-a-secret"}})
    custom.create_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "JupyterNotebookInstance",
        "metadata": {"name": name, "namespace": d.user_ns},
        "spec": {"template": {"name": "features", "namespace": SEED_TEMPLATE_NAMESPACE},
                 "variables": {"jupyterhub.user.id": str(uid)}}})
    pod_name = f"{name}-main"
    try:
        def written() -> str | None:
            with contextlib.suppress(client.ApiException):
                logs = core.read_namespaced_pod_log(pod_name, d.user_ns) or ""
                return logs if "written" in logs else None
            return None

        logs = wait_for("the features pod writing its file", written, PROVISION_TIMEOUT,
                        d.describe)
        print(f"features pod running {time.monotonic() - t0:.1f} s after its instance")
        assert "secret=from-a-secret" in logs, logs
        assert f"uid={uid}" in logs, logs
        assert f"memory.limit={96 * 1024 * 1024}" in logs, logs
        assert "cpu.quota=50000 period=100000" in logs, logs
        pvc = core.read_namespaced_persistent_volume_claim(f"{name}-work", d.user_ns)
        volume = Path(core.read_persistent_volume(pvc.spec.volume_name).spec.local.path)
        assert (volume / "owned-by-me").stat().st_uid == uid
        assert (volume / "owned-by-me").read_text() == "hello\n"
    finally:
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                   name)
        wait_for("the features instance deleted", lambda: not any(
            i["metadata"]["name"] == name for i in custom.list_namespaced_custom_object(
                GROUP, VERSION, d.user_ns, INSTANCE_PLURAL)["items"]), PROVISION_TIMEOUT)


# ---- hub.enabled: JupyterHub in pods, users through proxy-public -------------------------------


def test_hub_enabled_serves_users_through_proxy_public(installed: Installed,
                                                       real_cluster: RealCluster,
                                                       hub_image: str):
    """The same stack with `hub.enabled: true`: the hub and the proxy run from the hub image
    (tools/image/hub.sh) as z2jh lays them out; a user logs in at the stack's `hubUrl`
    (proxy-public's cluster IP, answered by kube-proxy on this machine), spawns the example
    template (the notebook image), and the server answers through the proxy. The server's
    OAuth round trip goes to the hub by its Service DNS name (the template's
    JUPYTERHUB_API_URL), with the token from the spawner's Secret (a secretKeyRef). The hub's
    pod deleted: its replacement finds the running server (database on its PVC, the proxy's
    route kept) and leaves the notebook pod alone. A file written before a stop is there after
    the next start (the user's PVC)."""
    d = installed
    stack = d.stack
    settings = {"hub.enabled": "true", "hub.image": hub_image, "hub.imagePullPolicy": "Never",
                "singleuser.image": real_cluster.notebook_image,
                "singleuser.imagePullPolicy": "Never", "cull.timeout": "3600",
                "hubUserNamespace": d.user_ns,
                # The example template lives beside the hub, in the operator's namespace.
                "templateNamespaces[1]": d.operator_ns}
    for key, value in settings.items():
        stack.config(key, value, path="." in key or "[" in key)
    t0 = time.monotonic()
    stack.up()  # waits for the hub's and the proxy's rollouts (their readiness probes)
    print(f"pulumi up with hub.enabled (hub and proxy Ready): {time.monotonic() - t0:.1f} s")
    url = stack.run("stack", "output", "hubUrl").stdout.strip()
    password = stack.run("stack", "output", "hubPassword", "--show-secrets").stdout.strip()
    assert url.startswith("http://198.19."), url  # proxy-public's cluster IP
    hub_pod = next(p for p in d.core.list_namespaced_pod(d.operator_ns).items
                   if p.metadata.labels.get("app.kubernetes.io/component") == "hub")
    assert hub_pod.spec.service_account_name == "hub"

    session = requests.Session()
    wait_for("proxy-public answering", lambda: _ok(session, f"{url}hub/login"), 120,
             d.describe)
    login = session.post(f"{url}hub/login", allow_redirects=False, timeout=30, data={
        "username": "alice", "password": password,
        "_xsrf": session.cookies.get("_xsrf", path="/hub/") or ""})
    assert login.status_code == 302, (login.status_code, login.text[:500])
    t1 = time.monotonic()
    session.get(f"{url}hub/spawn", timeout=60)  # no options form: starts the default server
    name = instance_name_for_user("alice")

    def describe() -> str:
        with contextlib.suppress(client.ApiException):
            inst = d.custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                         INSTANCE_PLURAL, name)
            return f"{json.dumps(inst.get('status'), indent=1)}\n{d.describe()}"
        return d.describe()

    # Through the proxy: the route the hub added to the user's pod.
    wait_for("alice's server through proxy-public", lambda: '"version"' in (
        _text(session, f"{url}user/alice/api") or ""), PROVISION_TIMEOUT, describe)
    print(f"alice's server answering through the proxy {time.monotonic() - t1:.1f} s "
          "after the spawn")
    # Authenticated: the server's OAuth with the hub (a browser's redirects through the proxy;
    # the code exchange goes to the hub by its Service DNS name), then its API with the cookie.
    lab = session.get(f"{url}user/alice/lab", timeout=60)
    assert lab.status_code == 200 and lab.url.startswith(f"{url}user/alice/"), \
        (lab.status_code, lab.url, lab.text[:300])
    status = session.get(f"{url}user/alice/api/status", timeout=60)
    assert status.status_code == 200 and "started" in status.json(), status.text[:500]
    pod = d.core.read_namespaced_pod(f"{name}-notebook", d.user_ns)
    env = {e.name: e for e in pod.spec.containers[0].env}
    assert env["JUPYTERHUB_API_URL"].value == \
        f"http://hub.{d.operator_ns}.svc.cluster.local:8081/hub/api"
    assert env["JUPYTERHUB_API_TOKEN"].value_from.secret_key_ref.name == f"{name}-hub"
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")

    # A file in work/ (the template mounts the user's PVC at /home/jovyan/work, the server's
    # root is /home/jovyan, as in docker-stacks' images). First a token of alice's from the hub
    # (kept in the hub's database on its PVC), for API calls to her server without cookies.
    made = session.post(f"{url}hub/api/users/alice/tokens", timeout=60, json={"note": "e2e"},
                        headers={"X-XSRFToken": _hub_xsrf(session)})
    assert made.status_code in (200, 201), (made.status_code, made.text[:300])
    auth = {"Authorization": f"token {made.json()['token']}"}
    put = requests.put(f"{url}user/alice/api/contents/work/kept.txt", timeout=60,
                       headers=auth, json={"type": "file", "format": "text",
                                           "content": "still here\n"})
    assert put.status_code in (200, 201), (put.status_code, put.text[:300])

    # The hub's pod restarted: the new hub finds alice's server running (its database on the
    # PVC, the proxy's route kept) and leaves her notebook pod alone.
    notebook_uid = pod.metadata.uid
    d.core.delete_namespaced_pod(hub_pod.metadata.name, d.operator_ns)
    t2 = time.monotonic()

    def new_hub_ready() -> bool:
        for p in d.core.list_namespaced_pod(d.operator_ns).items:
            if (p.metadata.labels.get("app.kubernetes.io/component") == "hub"
                    and p.metadata.uid != hub_pod.metadata.uid
                    and p.metadata.deletion_timestamp is None):
                return any(c.type == "Ready" and c.status == "True"
                           for c in p.status.conditions or [])
        return False

    wait_for("a new hub pod Ready", new_hub_ready, PROVISION_TIMEOUT, d.describe)
    wait_for("the new hub reporting alice's server ready", lambda: _server_ready(
        f"{url}hub/api/users/alice", auth), PROVISION_TIMEOUT, describe)
    print(f"hub pod replaced and alice's server found ready {time.monotonic() - t2:.1f} s "
          "after the deletion")
    assert d.core.read_namespaced_pod(f"{name}-notebook", d.user_ns).metadata.uid == notebook_uid
    assert requests.get(f"{url}user/alice/api/status", headers=auth,
                        timeout=60).status_code == 200

    _stop(url, auth)
    wait_for("alice's instance deleted at stop", lambda: not _instance_exists(d, name),
             PROVISION_TIMEOUT, describe)

    # The next start: a new pod on the same PVC, where the file written before the stop is
    # (a file outside work/ would have gone with the old container).
    started = requests.post(f"{url}hub/api/users/alice/server", headers=auth, timeout=60)
    assert started.status_code in (201, 202), (started.status_code, started.text[:300])
    wait_for("alice's server again through proxy-public", lambda: _server_ready(
        f"{url}hub/api/users/alice", auth), PROVISION_TIMEOUT, describe)
    kept = requests.get(f"{url}user/alice/api/contents/work/kept.txt", headers=auth, timeout=60)
    assert kept.status_code == 200, (kept.status_code, kept.text[:300])
    assert kept.json()["content"] == "still here\n"
    assert d.core.read_namespaced_pod(f"{name}-notebook", d.user_ns).metadata.uid != notebook_uid

    _stop(url, auth)
    wait_for("alice's instance deleted at the second stop", lambda: not _instance_exists(
        d, name), PROVISION_TIMEOUT, describe)


def _hub_xsrf(session: requests.Session) -> str:
    return session.cookies.get("_xsrf", path="/hub/") or ""


def _stop(url: str, auth: dict[str, str]) -> None:
    stop = requests.delete(f"{url}hub/api/users/alice/server", headers=auth, timeout=60)
    assert stop.status_code in (202, 204), (stop.status_code, stop.text[:300])


def _instance_exists(d: Installed, name: str) -> bool:
    return any(i["metadata"]["name"] == name for i in d.custom.list_namespaced_custom_object(
        GROUP, VERSION, d.user_ns, INSTANCE_PLURAL)["items"])


def _server_ready(user_url: str, auth: dict[str, str]) -> bool:
    """The hub's model of the user: the default server ready (it has polled the spawner)."""
    try:
        resp = requests.get(user_url, headers=auth, timeout=10)
    except requests.RequestException:
        return False
    if resp.status_code != 200:
        return False
    server = (resp.json().get("servers") or {}).get("")
    return bool(server and server.get("ready"))


def _text(session: requests.Session, url: str) -> str | None:
    try:
        resp = session.get(url, timeout=10)
    except requests.RequestException:
        return None
    return resp.text if resp.status_code == 200 else None


def _ok(session: requests.Session, url: str) -> bool:
    return _text(session, url) is not None
