"""End to end: the deploy stack (Pulumi.yaml at the repository root) on a fresh harness cluster.

The real `pulumi` CLI, the harness's Python language host and the real Kubernetes provider run the
project exactly as an admin would (`pulumi stack init`, `pulumi config set`, `pulumi up`, ...) from
the repository root. Then the operator runs with the token of the ServiceAccount the stack created:
the RBAC must be enough for a seed instance's whole life, and SelfSubjectAccessReviews show what it
is not allowed to do. The same for the hub's Role. Then 3 replicas on a PostgreSQL backend (a
real server, tests/e2e/fixtures_postgres.py): sharded, budgeted, allowed the shard Leases. Last,
`pulumi destroy` must leave the CRDs, the instances and users' PVCs where they are.

The tests of this module share one stack and run in file order (each step builds on the last).
`pulumi up` waits for the operator Deployment's rollout: on the harness the kwok node runs any
image; against your own cluster (JUPYTERNETES_E2E_KUBECONFIG) set JUPYTERNETES_E2E_OPERATOR_IMAGE
to an operator image that cluster can pull (`make image`, pushed to its registry).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from harness.examples import load_example, strip_server_fields
from harness.operator_process import OperatorProcess, poll
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.deploy.manifests import (
    BACKEND_SECRET,
    BACKEND_URL_KEY,
    DISRUPTION_BUDGET,
    METRICS_SERVICE,
    STATE_PVC,
    STATE_SECRET,
    operator_args,
)
from jupyternetes.deploy.rbac import HUB, OPERATOR, SHARD_LEASE_VERBS
from jupyternetes.deploy.settings import DeploySettings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CRDS = (f"{INSTANCE_PLURAL}.{GROUP}", f"{TEMPLATE_PLURAL}.{GROUP}")
SEED_TEMPLATE = "default-template"
SEED_NAME = "8dc366d8a0f05869bfdb6e7eb3d83f65"
IMAGE = os.environ.get("JUPYTERNETES_E2E_OPERATOR_IMAGE", "jupyternetes/operator:e2e")
# `pulumi up` waits for the operator Deployment's rollout; two loaded cores.
PULUMI_TIMEOUT = 600
PROVISION_TIMEOUT = 240.0


def wait_for(what: str, check, timeout: float = PROVISION_TIMEOUT, describe=None) -> Any:
    value = poll(check, timeout, 0.25)
    if value:
        return value
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                         f"{describe() if describe else ''}")


def condition(obj: dict | None, type_: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


@dataclass
class DeployStack:
    """One stack of the repository's Pulumi project, driven through the `pulumi` CLI."""

    name: str
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["pulumi", *args, "--stack", self.name, "--non-interactive"]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=PULUMI_TIMEOUT)
        self.log.append(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(cmd)}` exited {proc.returncode}\n"
                                 f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    def config(self, key: str, value: str, path: bool = False) -> None:
        self.run("config", "set", *(["--path"] if path else []), key, value)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--yes", "--skip-preview")

    def preview_json(self, *extra: str) -> dict:
        proc = self.run("preview", "--json", *extra)
        return json.loads(proc.stdout)


@dataclass
class Deployed:
    stack: DeployStack
    api: client.ApiClient
    kubeconfig: Path
    tmp: Path
    operator_ns: str
    user_ns: str
    hub_ns: str
    other_ns: str
    pvs: list[str]

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)


def static_pv(core: client.CoreV1Api, ns: str, claim: str) -> str:
    """A PersistentVolume pre-bound to `ns/claim` (the harness has no volume provisioner)."""
    name = f"pv-{ns}-{claim}"[:253]
    core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"jupyternetes.e2e/test": "true"}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": f"/tmp/jupyternetes-e2e/{name}"},
                 "claimRef": {"namespace": ns, "name": claim}}})
    return name


def token_kubeconfig(admin_kubeconfig: Path, namespace: str, account: str, path: Path,
                     api: client.ApiClient) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (TokenRequest), as a pod would."""
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": account,
                                                "namespace": namespace}}],
        "current-context": "sa"}))
    path.chmod(0o600)
    return path


def can(kubeconfig: Path, verb: str, resource: str, namespace: str = "", group: str = "",
        subresource: str = "", name: str = "") -> bool:
    """SelfSubjectAccessReview as the identity of `kubeconfig`."""
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {
                "verb": verb, "resource": resource, "group": group, "namespace": namespace,
                "subresource": subresource, "name": name}}})
        return bool(review.status.allowed)


@pytest.fixture(scope="module")
def deployed(cluster, tmp_path_factory) -> Iterator[Deployed]:
    """`pulumi up` of the deploy stack, namespaced mode, with the hub's RBAC and the example."""
    from harness import pulumi_env as harness_pulumi

    tmp = tmp_path_factory.mktemp("deploy")
    suffix = uuid.uuid4().hex[:6]
    names = {k: f"jn-{k}-{suffix}" for k in ("op", "users", "hub", "other")}
    backend = harness_pulumi.backend_url(tmp / "pulumi-state")
    env = harness_pulumi.pulumi_env(backend, f"deploy-{suffix}")
    env["KUBECONFIG"] = str(cluster.kubeconfig)  # the admin's current kubeconfig
    stack = DeployStack(f"e2e-{suffix}", env)
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    for key in ("users", "hub", "other"):
        core.create_namespace({"metadata": {"name": names[key]}})
    core.create_namespaced_service_account(names["hub"], {"metadata": {"name": "hub"}})
    pvs = [static_pv(core, names["op"], STATE_PVC)]
    d = Deployed(stack, api, cluster.kubeconfig, tmp, names["op"], names["users"], names["hub"],
                 names["other"], pvs)
    # The stack's settings file (Pulumi.<stack>.yaml) is written beside Pulumi.yaml, as for an
    # admin; it is this test's, so it goes at the end.
    stray = REPO / f"Pulumi.{stack.name}.yaml"
    try:
        stack.run("stack", "init", "--secrets-provider", "passphrase")
        settings = {"namespace": d.operator_ns, "image": IMAGE,
                    "watchNamespaces[0]": d.user_ns, "templateNamespaces[0]": d.hub_ns,
                    "hubNamespace": d.hub_ns, "hubUserNamespace": d.user_ns,
                    "exampleTemplateNamespace": d.hub_ns, "workers": "3",
                    "resources.limits.memory": "768Mi", "resources.requests.cpu": "50m",
                    "otherResourceKinds[0].apiGroup": "",
                    "otherResourceKinds[0].resource": "configmaps",
                    "otherResourceKinds[1].apiGroup": "",
                    "otherResourceKinds[1].resource": "services"}
        for key, value in settings.items():
            stack.config(key, value, path="[" in key or "." in key)
        stack.up()
        yield d
    finally:
        with contextlib.suppress(Exception):
            stack.run("destroy", "--yes", "--skip-preview", check=False)
        with contextlib.suppress(Exception):
            stack.run("stack", "rm", "--yes", "--force", check=False)
        stray.unlink(missing_ok=True)
        for key in ("users", "hub", "other", "op"):
            ns = names[key]
            with contextlib.suppress(client.ApiException):
                for item in d.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL)["items"]:
                    d.custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, INSTANCE_PLURAL, item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                        _content_type="application/merge-patch+json")
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns)
        for pv in d.pvs:
            with contextlib.suppress(client.ApiException):
                core.delete_persistent_volume(pv)
        api.close()


# ---- 1. what `pulumi up` installed ------------------------------------------------------------


def test_up_installs_every_object_with_the_configured_values(deployed: Deployed):
    d = deployed
    ext = client.ApiextensionsV1Api(d.api)
    for crd in CRDS:
        obj = ext.read_custom_resource_definition(crd)
        assert {c.type: c.status for c in obj.status.conditions}["Established"] == "True"
    apps = client.AppsV1Api(d.api)
    dep = apps.read_namespaced_deployment(OPERATOR, d.operator_ns)
    assert dep.spec.replicas == 1 and dep.spec.strategy.type == "Recreate"
    assert dep.status.ready_replicas == 1  # `pulumi up` waited for the rollout
    pod = dep.spec.template.spec
    assert pod.service_account_name == OPERATOR
    (container,) = pod.containers
    assert container.image == IMAGE
    args = container.args
    assert args[0] == "operator"
    assert args[args.index("--namespace") + 1] == d.user_ns
    # otherResourceKinds is the operator's allow-list too (its RBAC on them: below).
    kinds = [args[i + 1] for i, a in enumerate(args) if a == "--other-resource-kind"]
    assert kinds == ["configmaps", "services"] and "--allow-rbac-kinds" not in args
    assert args[args.index("--template-namespace") + 1] == d.hub_ns
    assert args[args.index("--workers") + 1] == "3"
    assert container.resources.limits == {"memory": "768Mi"}
    assert container.resources.requests == {"cpu": "50m", "memory": "256Mi"}
    assert container.security_context.read_only_root_filesystem is True
    assert pod.termination_grace_period_seconds == 150
    secret = d.core.read_namespaced_secret(STATE_SECRET, d.operator_ns)
    assert len(base64.b64decode(secret.data["passphrase"])) >= 32
    assert d.core.read_namespaced_persistent_volume_claim(STATE_PVC, d.operator_ns)
    svc = d.core.read_namespaced_service(METRICS_SERVICE, d.operator_ns)
    assert svc.spec.ports[0].port == 8080 and svc.spec.selector == dep.spec.selector.match_labels
    rbac_api = client.RbacAuthorizationV1Api(d.api)
    roles = {(r.metadata.namespace, r.metadata.name)
             for r in rbac_api.list_role_for_all_namespaces(
                 label_selector="app.kubernetes.io/name=jupyternetes").items}
    assert roles >= {(d.user_ns, OPERATOR), (d.hub_ns, f"{OPERATOR}-templates"),
                     (d.operator_ns, f"{OPERATOR}-leases"), (d.user_ns, HUB)}
    # Namespaced mode: one ClusterRole only, for cluster-scoped reads: `get` on the watched
    # namespace by name, and `get` on StorageClasses (preflight of a claim that would grow).
    cluster_roles = [r for r in rbac_api.list_cluster_role(
        label_selector="app.kubernetes.io/name=jupyternetes").items
        if d.operator_ns in r.metadata.name]
    assert [(r.metadata.name, [(x.resources, x.verbs, x.resource_names) for x in r.rules])
            for r in cluster_roles] == [(f"{OPERATOR}-{d.operator_ns}-namespaces",
                                         [(["namespaces"], ["get"], [d.user_ns]),
                                          (["storageclasses"], ["get"], None)])]
    template = d.custom.get_namespaced_custom_object(GROUP, VERSION, d.hub_ns, TEMPLATE_PLURAL,
                                                     SEED_TEMPLATE)
    assert template["spec"]["pods"][0]["name"] == "notebook"
    # The example is the hub template: the token from the Secret, never a literal env value;
    # usable from the hub's user namespace.
    assert "api_token}" not in json.dumps(template)
    assert template["spec"]["allowedNamespaces"] == sorted([d.hub_ns, d.user_ns])


def test_a_second_preview_shows_no_changes(deployed: Deployed):
    preview = deployed.stack.preview_json("--expect-no-changes")
    ops = {step["op"] for step in preview.get("steps", [])}
    assert ops <= {"same"}, preview.get("changeSummary")


def test_one_config_change_previews_exactly_that_change(deployed: Deployed):
    stack = deployed.stack
    stack.config("workers", "5")
    try:
        preview = stack.preview_json("--diff")
        changed = [s for s in preview["steps"] if s["op"] != "same"]
        assert [(s["op"], s["urn"].rsplit("::", 1)[1]) for s in changed] == \
            [("update", "deployment")], changed
        workers = operator_args(DeploySettings()).index("--workers") + 1
        diff = changed[0].get("detailedDiff") or {}
        assert set(diff) == {f"spec.template.spec.containers[0].args[{workers}]"}, diff
    finally:
        stack.config("workers", "3")
    stack.preview_json("--expect-no-changes")


def test_bad_config_fails_the_preview_with_the_key_and_the_fix(deployed: Deployed):
    stack = deployed.stack
    stack.config("replicas", "2")
    try:
        proc = stack.run("preview", check=False)
        assert proc.returncode != 0
        assert "replicas: 2 operators cannot share one file:// state" in proc.stdout + proc.stderr
        assert "stateBackendUrl" in proc.stdout + proc.stderr
    finally:
        stack.run("config", "rm", "replicas")
    stack.preview_json("--expect-no-changes")


# ---- 2. the operator's RBAC: enough, and no more ----------------------------------------------


@pytest.fixture(scope="module")
def operator_kubeconfig(deployed: Deployed) -> Path:
    return token_kubeconfig(deployed.kubeconfig, deployed.operator_ns, OPERATOR,
                            deployed.tmp / "operator.kubeconfig", deployed.api)


def seed_instance(ns: str, template_ns: str, token_secret: str | None = None) -> dict:
    """The seed instance; with `token_secret`, its hub token comes from that Secret
    (spec.variablesFrom), as the spawner passes it, so the operator must `get` the Secret."""
    body = strip_server_fields(load_example("seed-instance.yaml"))
    body["metadata"] = {"name": SEED_NAME, "namespace": ns}
    body["spec"]["template"] = {"name": SEED_TEMPLATE, "namespace": template_ns}
    body["spec"]["variables"]["jupyternetes.instance.name"] = SEED_NAME
    body["spec"]["variables"]["jupyternetes.instance.namespace"] = ns
    if token_secret:
        del body["spec"]["variables"]["jupyterhub.api_token"]
        body["spec"]["variablesFrom"] = [{"secretRef": {"name": token_secret}}]
    return body


def test_operator_runs_with_the_stacks_service_account(deployed: Deployed, operator_kubeconfig,
                                                       tmp_path):
    from harness import pulumi_env as harness_pulumi

    d = deployed
    backend = harness_pulumi.backend_url(tmp_path / "state")
    # As in the Deployment (POD_NAMESPACE from the pod's fieldRef): the leader-election Lease
    # lives in the operator's namespace, the only place its RBAC allows leases.
    env = {**harness_pulumi.pulumi_env(backend, "operator-e2e"), "POD_NAMESPACE": d.operator_ns}
    op = OperatorProcess(operator_kubeconfig, env, tmp_path / "operator-state",
                         harness_pulumi.paths.pulumi_home(), [d.user_ns],
                         tmp_path / "operator.log", backend_url=backend, workers=2,
                         resync_seconds=20,
                         extra=("--template-namespace", d.hub_ns, "--backoff-base", "0.5",
                                "--backoff-cap", "10", "--other-resource-kind", "configmaps",
                                "--other-resource-kind", "services"))
    d.pvs.append(static_pv(d.core, d.user_ns, f"{SEED_NAME}-workspace"))
    op.start()

    def instance() -> dict | None:
        try:
            return d.custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                         SEED_NAME)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def describe() -> str:
        return f"instance: {json.dumps(instance(), indent=1)}\noperator log:\n{op.log_tail(80)}"

    try:
        d.core.create_namespaced_secret(d.user_ns, {
            "metadata": {"name": f"{SEED_NAME}-hub"},
            # The example template's pod reads JUPYTERHUB_API_TOKEN with a secretKeyRef.
            "stringData": {"jupyterhub.api_token": (token := uuid.uuid4().hex),
                           "JUPYTERHUB_API_TOKEN": token}})
        d.custom.create_namespaced_custom_object(
            GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
            seed_instance(d.user_ns, d.hub_ns, token_secret=f"{SEED_NAME}-hub"))

        def completed_and_ready() -> dict | None:
            inst = instance()
            status = (inst or {}).get("status") or {}
            if (status.get("podsProvisioned") == "Completed"
                    and status.get("pvcsProvisioned") == "Completed"
                    and condition(inst, "Ready").get("status") == "True"):
                return inst
            return None

        wait_for("the seed instance Completed and Ready", completed_and_ready,
                 describe=describe)
        # The template watch works under the namespaced Role: an edit reaches the instance.
        d.custom.patch_namespaced_custom_object(
            GROUP, VERSION, d.hub_ns, TEMPLATE_PLURAL, SEED_TEMPLATE,
            [{"op": "add", "path": "/spec/pods/0/labels/e2e-edit", "value": "1"}],
            _content_type="application/json-patch+json")
        wait_for("TemplateCurrent=False after the template edit",
                 lambda: condition(instance(), "TemplateCurrent").get("status") == "False",
                 describe=describe)
        # Deletion: the operator destroys the stack and drops its finalizer; the PVC stays.
        d.custom.delete_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                 SEED_NAME)
        wait_for("the seed instance gone", lambda: instance() is None, describe=describe)
        assert d.core.read_namespaced_persistent_volume_claim(f"{SEED_NAME}-workspace",
                                                              d.user_ns)
        # otherResources of the kinds the admin allowed (a Service and a ConfigMap): created,
        # and deleted with the instance.
        template = strip_server_fields(load_example("service-template.yaml"))
        template["metadata"]["namespace"] = d.hub_ns
        template["spec"]["allowedNamespaces"] = [d.user_ns]
        d.custom.create_namespaced_custom_object(GROUP, VERSION, d.hub_ns, TEMPLATE_PLURAL,
                                                 template)
        lab = strip_server_fields(load_example("service-instance.yaml"))
        lab["metadata"]["namespace"] = d.user_ns
        lab["spec"]["template"]["namespace"] = d.hub_ns
        d.pvs.append(static_pv(d.core, d.user_ns, "alice-lab-home"))
        d.custom.create_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL, lab)

        def lab_instance() -> dict | None:
            try:
                return d.custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns,
                                                             INSTANCE_PLURAL, "alice-lab")
            except client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise

        wait_for("alice-lab's otherResources Completed", lambda: (
            ((lab_instance() or {}).get("status") or {}).get("otherResourcesProvisioned")
            == "Completed"), describe=lambda: f"{lab_instance()}\n{op.log_tail(60)}")
        assert d.core.read_namespaced_service("alice-lab-http", d.user_ns)
        assert d.core.read_namespaced_config_map("alice-lab-settings", d.user_ns)
        d.custom.delete_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL,
                                                 "alice-lab")
        wait_for("alice-lab gone", lambda: lab_instance() is None,
                 describe=lambda: f"{lab_instance()}\n{op.log_tail(60)}")
        for read in (d.core.read_namespaced_service, d.core.read_namespaced_config_map):
            with pytest.raises(client.ApiException) as gone:
                read(f"alice-lab-{'http' if 'service' in read.__name__ else 'settings'}",
                     d.user_ns)
            assert gone.value.status == 404
        forbidden = [line for line in op.log_text().splitlines() if "forbidden" in line.lower()]
        assert not forbidden, "\n".join(forbidden[:20])
    finally:
        code = op.terminate()
    assert code == 0, op.log_tail()


@pytest.mark.parametrize(("verb", "resource", "where", "group", "sub", "allowed"), [
    ("list", INSTANCE_PLURAL, "user", GROUP, "", True),
    ("patch", INSTANCE_PLURAL, "user", GROUP, "status", True),
    ("create", "pods", "user", "", "", True),
    ("create", "configmaps", "user", "", "", True),
    ("get", "secrets", "user", "", "", True),
    ("watch", TEMPLATE_PLURAL, "hub", GROUP, "", True),
    ("update", "leases", "op", "coordination.k8s.io", "", True),
    ("patch", TEMPLATE_PLURAL, "hub", GROUP, "status", True),
    ("get", "namespaces", "", "", "", False),
    ("list", "namespaces", "", "", "", False),
    ("list", "secrets", "", "", "", False),
    ("list", "secrets", "user", "", "", False),
    ("get", "secrets", "other", "", "", False),
    ("delete", "namespaces", "", "", "", False),
    ("create", TEMPLATE_PLURAL, "hub", GROUP, "", False),
    ("update", TEMPLATE_PLURAL, "hub", GROUP, "", False),
    ("list", INSTANCE_PLURAL, "other", GROUP, "", False),
    ("list", INSTANCE_PLURAL, "", GROUP, "", False),
    ("list", "pods", "", "", "", False),
    ("delete", "persistentvolumeclaims", "user", "", "", False),
    ("create", "deployments", "user", "apps", "", False),
    ("create", "services", "other", "", "", False),
    ("update", "leases", "user", "coordination.k8s.io", "", False),
])
def test_operator_access(deployed: Deployed, operator_kubeconfig, verb, resource, where, group,
                         sub, allowed):
    ns = {"": "", "user": deployed.user_ns, "hub": deployed.hub_ns, "op": deployed.operator_ns,
          "other": deployed.other_ns}[where]
    assert can(operator_kubeconfig, verb, resource, ns, group, sub) is allowed


def test_operator_reads_only_its_watched_namespaces(deployed: Deployed, operator_kubeconfig):
    """`get` on the watched namespace by name (to see that it is being deleted), no other."""
    d = deployed
    assert can(operator_kubeconfig, "get", "namespaces", name=d.user_ns)
    assert not can(operator_kubeconfig, "get", "namespaces", name=d.other_ns)
    assert not can(operator_kubeconfig, "delete", "namespaces", name=d.user_ns)


@pytest.fixture(scope="module")
def hub_kubeconfig(deployed: Deployed) -> Path:
    return token_kubeconfig(deployed.kubeconfig, deployed.hub_ns, "hub",
                            deployed.tmp / "hub.kubeconfig", deployed.api)


@pytest.mark.parametrize(("verb", "resource", "where", "group", "allowed"), [
    ("create", INSTANCE_PLURAL, "user", GROUP, True),
    ("delete", INSTANCE_PLURAL, "user", GROUP, True),
    ("create", "secrets", "user", "", True),
    ("patch", "secrets", "user", "", True),
    ("delete", "secrets", "user", "", True),
    # The hub writes its users' token Secrets and reads none (nor any other Secret).
    ("get", "secrets", "user", "", False),
    ("list", "secrets", "user", "", False),
    ("watch", "secrets", "user", "", False),
    ("watch", "events", "user", "", True),
    ("list", "pods", "user", "", True),
    ("create", INSTANCE_PLURAL, "other", GROUP, False),
    ("create", INSTANCE_PLURAL, "hub", GROUP, False),
    ("create", "secrets", "other", "", False),
    # A stop with the operator down deletes the server's pods (spawner/stopping.py).
    ("delete", "pods", "user", "", True),
    ("delete", "pods", "other", "", False),
    ("create", "pods", "user", "", False),
    ("list", "secrets", "", "", False),
    ("create", TEMPLATE_PLURAL, "user", GROUP, False),
    ("patch", INSTANCE_PLURAL, "user", GROUP, False),
    ("get", "pods", "user", "", False),
    ("update", "pods", "user", "", False),
    # delete_forever deletes (delete_pvc) or releases (a label patch) a deleted user's claims.
    ("delete", "persistentvolumeclaims", "user", "", True),
    ("patch", "persistentvolumeclaims", "user", "", True),
    ("delete", "persistentvolumeclaims", "other", "", False),
])
def test_hub_access(deployed: Deployed, hub_kubeconfig, verb, resource, where, group, allowed):
    ns = {"": "", "user": deployed.user_ns, "hub": deployed.hub_ns,
          "other": deployed.other_ns}[where]
    assert can(hub_kubeconfig, verb, resource, ns, group) is allowed


def test_all_namespaces_mode_uses_cluster_roles(deployed: Deployed, operator_kubeconfig):
    """watchNamespaces ["*"] (with a hub, the default is the hub's user namespace) and no
    templateNamespaces: ClusterRoles, still no secret listing, no template writes, no PVC
    deletes."""
    d = deployed
    d.stack.run("config", "rm", "watchNamespaces")
    d.stack.config("watchNamespaces[0]", "*", path=True)
    d.stack.run("config", "rm", "templateNamespaces")
    d.stack.up()
    rbac_api = client.RbacAuthorizationV1Api(d.api)
    cluster_roles = {r.metadata.name for r in rbac_api.list_cluster_role(
        label_selector="app.kubernetes.io/name=jupyternetes").items}
    assert {f"{OPERATOR}-{d.operator_ns}", f"{OPERATOR}-{d.operator_ns}-templates"} <= \
        cluster_roles
    assert not rbac_api.list_namespaced_role(
        d.user_ns, label_selector="app.kubernetes.io/component=operator").items
    args = client.AppsV1Api(d.api).read_namespaced_deployment(
        OPERATOR, d.operator_ns).spec.template.spec.containers[0].args
    assert "--namespace" not in args and "--template-namespace" not in args
    expected = [("list", INSTANCE_PLURAL, "", GROUP, True),
                ("watch", TEMPLATE_PLURAL, "", GROUP, True),
                ("list", "pods", "", "", True), ("get", "secrets", "other", "", True),
                ("list", "secrets", "", "", False), ("list", "secrets", "other", "", False),
                ("delete", "namespaces", "", "", False),
                ("create", TEMPLATE_PLURAL, "hub", GROUP, False),
                ("delete", "persistentvolumeclaims", "other", "", False),
                ("update", "leases", "other", "coordination.k8s.io", False),
                ("create", "deployments", "other", "apps", False)]
    for verb, resource, where, group, allowed in expected:
        ns = {"": "", "other": d.other_ns, "hub": d.hub_ns}[where]
        assert can(operator_kubeconfig, verb, resource, ns, group) is allowed, \
            (verb, resource, where)


# ---- 3. several replicas on a shared PostgreSQL backend ---------------------------------------


def test_three_replicas_on_postgres_are_sharded_budgeted_and_may_manage_shard_leases(
        deployed: Deployed, operator_kubeconfig, postgres_backend, postgres_server):
    d = deployed
    apps, policy = client.AppsV1Api(d.api), client.PolicyV1Api(d.api)
    d.stack.run("config", "set", "--secret", "stateBackendUrl", postgres_backend)
    d.stack.config("replicas", "3")
    d.stack.up()  # waits for the rollout of 3 ready replicas

    dep = apps.read_namespaced_deployment(OPERATOR, d.operator_ns)
    assert dep.spec.replicas == 3 and dep.status.ready_replicas == 3
    assert dep.spec.strategy.type == "RollingUpdate"
    assert dep.spec.strategy.rolling_update.max_unavailable == 0
    pod = dep.spec.template.spec
    (container,) = pod.containers
    args = container.args
    assert args[args.index("--shards") + 1] == "32"  # the documented default
    assert args[args.index("--replica-id") + 1] == "$(POD_NAME)"
    assert args[args.index("--expected-replicas") + 1] == "3"
    env = {e.name: e for e in container.env}
    assert env["POD_NAME"].value_from.field_ref.field_path == "metadata.name"
    assert env["PULUMI_BACKEND_URL"].value_from.secret_key_ref.name == BACKEND_SECRET
    # The URL's password is in the backend Secret only: not in the Deployment.
    spec_text = json.dumps(d.api.sanitize_for_serialization(dep.spec))
    assert postgres_server.password not in spec_text
    backend = d.core.read_namespaced_secret(BACKEND_SECRET, d.operator_ns)
    assert base64.b64decode(backend.data[BACKEND_URL_KEY]).decode() == postgres_backend
    (term,) = pod.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution
    assert term.pod_affinity_term.topology_key == "kubernetes.io/hostname"
    assert term.pod_affinity_term.label_selector.match_labels == dep.spec.selector.match_labels
    # The file:// state's PVC went with the switch to the shared backend.
    with pytest.raises(client.ApiException) as gone:
        d.core.read_namespaced_persistent_volume_claim(STATE_PVC, d.operator_ns)
    assert gone.value.status == 404

    pdb = policy.read_namespaced_pod_disruption_budget(DISRUPTION_BUDGET, d.operator_ns)
    assert pdb.spec.max_unavailable == 1 and pdb.spec.min_available is None
    assert pdb.spec.selector.match_labels == dep.spec.selector.match_labels
    # The disruption controller counts the 3 replicas and allows one eviction at a time.
    wait_for("the PodDisruptionBudget's status: 3 pods, 1 disruption allowed", lambda: (
        (b := policy.read_namespaced_pod_disruption_budget(DISRUPTION_BUDGET, d.operator_ns))
        .status is not None and b.status.expected_pods == 3
        and b.status.disruptions_allowed == 1), timeout=60,
        describe=lambda: str(policy.read_namespaced_pod_disruption_budget(
            DISRUPTION_BUDGET, d.operator_ns).status))

    role = client.RbacAuthorizationV1Api(d.api).read_namespaced_role(f"{OPERATOR}-leases",
                                                                     d.operator_ns)
    assert [sorted(r.verbs) for r in role.rules if "leases" in r.resources] == \
        [sorted(SHARD_LEASE_VERBS)]
    lease = "coordination.k8s.io"
    for verb in SHARD_LEASE_VERBS:
        assert can(operator_kubeconfig, verb, "leases", d.operator_ns, lease), verb
        assert not can(operator_kubeconfig, verb, "leases", d.other_ns, lease), verb
    for verb in ("update", "delete"):
        assert can(operator_kubeconfig, verb, "leases", d.operator_ns, lease,
                   name=f"{OPERATOR}-x-shard-7"), verb
    for verb in ("watch", "patch", "deletecollection"):
        assert not can(operator_kubeconfig, verb, "leases", d.operator_ns, lease), verb
    assert not can(operator_kubeconfig, "list", "leases", "", lease)  # not cluster-wide

    # Back to one replica: no budget (it would only block every eviction of the one pod).
    d.stack.config("replicas", "1")
    d.stack.up()
    with pytest.raises(client.ApiException) as gone:
        policy.read_namespaced_pod_disruption_budget(DISRUPTION_BUDGET, d.operator_ns)
    assert gone.value.status == 404
    dep = apps.read_namespaced_deployment(OPERATOR, d.operator_ns)
    assert dep.spec.replicas == 1 and "--shards" in dep.spec.template.spec.containers[0].args


# ---- 4. destroy keeps users' work -------------------------------------------------------------


def test_destroy_removes_the_operator_and_keeps_crds_instances_and_pvcs(deployed: Deployed):
    d = deployed
    # A user's instance and PVC that exist when the admin destroys the install.
    body = seed_instance(d.user_ns, d.hub_ns)
    body["metadata"]["name"] = "kept"
    d.custom.create_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL, body)
    d.core.create_namespaced_persistent_volume_claim(d.user_ns, {
        "metadata": {"name": "kept-workspace"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    d.stack.run("destroy", "--yes", "--skip-preview")
    apps = client.AppsV1Api(d.api)
    with pytest.raises(client.ApiException) as gone:
        apps.read_namespaced_deployment(OPERATOR, d.operator_ns)
    assert gone.value.status == 404
    rbac_api = client.RbacAuthorizationV1Api(d.api)
    assert not rbac_api.list_namespaced_role(
        d.user_ns, label_selector="app.kubernetes.io/name=jupyternetes").items
    assert not [r.metadata.name for r in rbac_api.list_cluster_role(
        label_selector="app.kubernetes.io/name=jupyternetes").items
        if d.operator_ns in r.metadata.name]
    ext = client.ApiextensionsV1Api(d.api)
    for crd in CRDS:
        assert ext.read_custom_resource_definition(crd).metadata.deletion_timestamp is None
    assert d.custom.get_namespaced_custom_object(GROUP, VERSION, d.user_ns, INSTANCE_PLURAL, "kept")
    assert d.core.read_namespaced_persistent_volume_claim("kept-workspace", d.user_ns)
    assert d.core.read_namespaced_persistent_volume_claim(f"{SEED_NAME}-workspace", d.user_ns)
