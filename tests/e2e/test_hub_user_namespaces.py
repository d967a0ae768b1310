"""End to end (real JupyterHub + proxy + operator): user namespaces and KubeSpawner's claims.

The hub and the operator run with the deploy stack's RBAC for `hubUserNamespaces` (the objects
`deploy/rbac.py` declares, applied as they are, and a ServiceAccount token for each, as their
pods would have): the hub makes each user's namespace (labelled, with the RoleBindings that give
the hub and the operator their rights there, and a ResourceQuota), the operator finds it with
`--namespace-selector` and serves it. Nothing in the cluster grants either of them pods or
secrets anywhere else.

Migration: a claim made as KubeSpawner names and labels it (`claim-<user>`, its
hub.jupyter.org/username annotation), with a file in it, in the user's namespace as KubeSpawner
left it (labelled and annotated as the README's migration steps say), shows up in the user's
first Jupyternetes server through a template whose claim entry asks for KubeSpawner's claim. A
KubeSpawner-named claim that is another user's is refused at once with the reason.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from harness import pulumi_env as harness_pulumi
from harness.hub import Hub
from harness.operator_process import OperatorProcess
from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL, VERSION
from jupyternetes.crd.labels import (
    HUB_USER_ANNOTATION,
    KUBESPAWNER_CLAIM,
    LABEL_ACCOUNT,
    LABEL_INSTANCE,
    USER_NAMESPACE_LABEL,
    USER_NAMESPACE_SELECTOR,
)
from jupyternetes.crd.naming import instance_name_for_user
from jupyternetes.deploy import rbac
from jupyternetes.deploy.settings import settings_from_config
from tests.e2e.loopback_pods import wait_service_account
from tests.e2e.test_deploy import can, token_kubeconfig
from tests.e2e.test_hub import (
    FAST_BACKOFF,
    HubEnv,
    spawn_failure,
    spawner_template,
    wait_for,
)

pytestmark = pytest.mark.e2e

E2E_LABEL = {"jupyternetes.e2e/test": "true"}
QUOTA = {"hard": {"persistentvolumeclaims": "3"}}
class UserNamespacesEnv(HubEnv):
    """HubEnv with the hub namespace as `ns`; users' objects live in `user_ns(user)`."""

    def user_ns(self, user: str) -> str:
        return f"{self.ns}-{user}"

    def pods_of(self, user: str) -> list[Any]:
        return self.core.list_namespaced_pod(
            self.user_ns(user), label_selector=f"{LABEL_INSTANCE}={instance_name_for_user(user)}"
        ).items

    def claim(self, user: str, name: str) -> Any | None:
        try:
            return self.core.read_namespaced_persistent_volume_claim(name, self.user_ns(user))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def describe(self, instance: str = "") -> str:
        """The hub's own lines about spawns (not its request log), and the operator's tail."""
        lines = []
        for log in sorted(self.hub.log_dir.glob("*.log")):
            lines += [line for line in log.read_text(errors="replace").splitlines()
                      if "jupyternetes" in line or "failed" in line.lower()
                      or "Error" in line][-40:]
        return ("----- hub log (spawner lines) -----\n" + "\n".join(lines)
                + f"\n----- operator log -----\n{self.operator.log_tail(30)}")

    def wait_ready(self, user: str) -> None:
        """Until the user's server answers; fails at once with the hub's reason when the spawn
        fails."""
        def ready() -> bool | None:
            model = self.server_model(user)
            if model is None:
                raise AssertionError(f"{user}'s spawn failed:\n{self.describe()}")
            return model.get("ready")

        wait_for(f"{user} ready in the hub", ready, describe=self.describe)
        wait_for(f"{user} answering", lambda: self.answers(user), timeout=60,
                 describe=self.describe)


def _calls(api: client.ApiClient, kind: str, namespace: str | None) -> tuple[Any, Any]:
    """(create, delete) of the typed client for one kind of the deploy stack's objects."""
    name = "".join(f"_{c.lower()}" if c.isupper() else c for c in kind).lstrip("_")
    group = (client.AdmissionregistrationV1Api(api) if "Admission" in kind
             else client.RbacAuthorizationV1Api(api))
    if namespace:
        create = getattr(group, f"create_namespaced_{name}")
        delete = getattr(group, f"delete_namespaced_{name}")
        return (lambda body: create(namespace, body)), (lambda n: delete(n, namespace))
    return getattr(group, f"create_{name}"), getattr(group, f"delete_{name}")


def apply_cluster_objects(api: client.ApiClient, objects: list[rbac.RbacObject]) -> list[Any]:
    """Create the deploy stack's objects as declared; returns their deletes for the clean-up."""
    deletes = []
    for obj in objects:
        manifest = obj.manifest
        create, delete = _calls(api, manifest["kind"], manifest["metadata"].get("namespace"))
        create(manifest)
        deletes.append(lambda d=delete, n=manifest["metadata"]["name"]: d(n))
    return deletes


def as_kubespawner_made_it(env: UserNamespacesEnv, user: str, owner: str) -> str:
    """The user's namespace and `claim-<user>` as KubeSpawner left them (owner: the claim's
    hub user), plus the README's two migration commands on the namespace; returns the claim's
    folder on this machine with a file in it."""
    ns, claim = env.user_ns(user), f"claim-{user}"
    env.core.create_namespace({"metadata": {"name": ns, "labels": dict(E2E_LABEL)}})
    # README, "Migrating from KubeSpawner": label and annotate the namespaces KubeSpawner made.
    env.core.patch_namespace(ns, {"metadata": {
        "labels": {USER_NAMESPACE_LABEL[0]: USER_NAMESPACE_LABEL[1]},
        "annotations": {HUB_USER_ANNOTATION: user}}})
    wait_service_account(env.core, ns)
    env.runner.provide_volume(ns, claim)
    env.core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": claim, "labels": {
            "app": "jupyterhub", "component": "singleuser-storage", "heritage": "jupyterhub",
            "hub.jupyter.org/username": owner, "app.kubernetes.io/managed-by": "kubespawner"},
            "annotations": {HUB_USER_ANNOTATION: owner,
                            "hub.jupyter.org/kubespawner-version": "7.1.0"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for(f"{claim} bound", lambda: (env.claim(user, claim).spec.volume_name or None),
             timeout=120)
    folder = env.runner.claim_dir(ns, claim)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "from-kubespawner.txt").write_text(f"{owner}'s notes from KubeSpawner days")
    return claim


@pytest.fixture(scope="module")
def env(cluster, crds_installed, pod_runner, tmp_path_factory) -> Iterator[UserNamespacesEnv]:
    api = cluster.api_client()
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"e2e-uns-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": ns, "labels": dict(E2E_LABEL)}})
    settings = settings_from_config({"namespace": ns, "hubNamespace": ns,
                                     "hubUserNamespaces": True}.get)
    for account in ("hub", rbac.OPERATOR):
        core.create_namespaced_service_account(ns, {"metadata": {"name": account}})
    made = apply_cluster_objects(api, rbac.operator_rbac(settings, dict(E2E_LABEL))
                                 + rbac.hub_rbac(settings, dict(E2E_LABEL)))
    policy_name = f"{rbac.HUB}-user-namespaces-{ns}"
    admission = client.AdmissionregistrationV1Api(api)

    def type_checked() -> dict | None:
        status = admission.read_validating_admission_policy(policy_name).to_dict().get(
            "status") or {}
        return status if status.get("observed_generation") else None

    checked = wait_for("the admission policy type-checked", type_checked, timeout=60)
    assert not (checked.get("type_checking") or {}).get("expression_warnings"), checked
    root = tmp_path_factory.mktemp("hub-uns")
    hub_config = token_kubeconfig(cluster.kubeconfig, ns, "hub", root / "hub.kubeconfig", api)
    operator_config = token_kubeconfig(cluster.kubeconfig, ns, rbac.OPERATOR,
                                       root / "operator.kubeconfig", api)
    # One template for everyone, in the hub's namespace, usable from the user namespaces; its
    # claim entry asks for KubeSpawner's claim of the user (a new claim when there is none).
    template = spawner_template(ns, "migrated")
    template["spec"]["allowedNamespaces"] = ["*"]
    template["spec"]["pvcs"][0]["annotations"] = {
        KUBESPAWNER_CLAIM: "claim-{jupyterhub.kubespawner.user_server}"}
    template["spec"]["pvcs"][0]["spec"]["storageClassName"] = ""
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL, template)

    backend = harness_pulumi.backend_url(root / "pulumi-state")
    home = harness_pulumi.paths.pulumi_home()
    operator_env = harness_pulumi.pulumi_env(backend, secrets.token_urlsafe(16),
                                             pulumi_home=home)
    operator_env["POD_NAMESPACE"] = ns  # its Leases: in its own namespace, as in its pod
    operator = OperatorProcess(
        operator_config, operator_env,
        root / "operator-state", home, [], root / "operator.log", backend_url=backend,
        workers=4, extra=(*FAST_BACKOFF, "--namespace-selector", USER_NAMESPACE_SELECTOR))
    hub = Hub(root=root / "hub", spawner_config={
        "kubeconfig": str(hub_config), "hub_namespace": ns,
        "enable_user_namespaces": True, "user_namespace_labels": dict(E2E_LABEL),
        "user_namespace_quota": QUOTA,
        "user_namespace_role_bindings": rbac.user_namespace_role_bindings(settings),
        "template_name": "migrated", "template_namespace": ns, "poll_interval": 3,
        "start_timeout": 150},
        extra_config="c.JupyterHub.tornado_settings = {'slow_spawn_timeout': 0}\n")
    e = UserNamespacesEnv(hub, operator, api, ns, pod_runner)
    e.settings = settings  # type: ignore[attr-defined]
    e.hub_config = hub_config  # type: ignore[attr-defined]
    e.operator_config = operator_config  # type: ignore[attr-defined]
    try:
        operator.start()
        hub.start()
        yield e
    finally:
        hub.stop()
        user_namespaces = [n.metadata.name for n in core.list_namespace(
            label_selector=USER_NAMESPACE_SELECTOR).items if n.metadata.name.startswith(ns)]
        try:
            for user_ns in user_namespaces:
                for item in custom.list_namespaced_custom_object(
                        GROUP, VERSION, user_ns, INSTANCE_PLURAL)["items"]:
                    custom.delete_namespaced_custom_object(GROUP, VERSION, user_ns,
                                                           INSTANCE_PLURAL,
                                                           item["metadata"]["name"])
            wait_for("user instances deleted", lambda: not any(
                custom.list_namespaced_custom_object(GROUP, VERSION, n, INSTANCE_PLURAL)["items"]
                for n in user_namespaces), timeout=180)
        finally:
            operator.terminate()
            for name in [*user_namespaces, ns]:
                with contextlib.suppress(client.ApiException):
                    core.delete_namespace(name)
            for delete in made:
                with contextlib.suppress(client.ApiException):
                    delete()
            api.close()


def test_two_users_two_namespaces_and_a_kubespawner_claim_adopted(
        env: UserNamespacesEnv) -> None:
    ann, bob = "ann", "bob"
    claim = as_kubespawner_made_it(env, ann, owner=ann)
    claim_uid = env.claim(ann, claim).metadata.uid
    env.runner.provide_volume(env.user_ns(bob), f"claim-{bob}")  # bob's namespace: not yet
    for user in (ann, bob):
        env.add_user(user, servers=())
        status, body = env.spawn(user)
        assert status in (201, 202), (status, body)
    for user in (ann, bob):
        env.wait_ready(user)

    for user in (ann, bob):
        ns = env.user_ns(user)
        namespace = env.core.read_namespace(ns)
        assert namespace.metadata.labels[USER_NAMESPACE_LABEL[0]] == "true"
        assert namespace.metadata.annotations[HUB_USER_ANNOTATION] == user
        instance = env.custom.get_namespaced_custom_object(
            GROUP, VERSION, ns, INSTANCE_PLURAL, instance_name_for_user(user))
        assert instance["metadata"]["namespace"] == ns
        assert [p.metadata.namespace for p in env.pods_of(user)] == [ns]
        bindings = client.RbacAuthorizationV1Api(env.core.api_client).list_namespaced_role_binding(
            ns).items
        assert {b.role_ref.name for b in bindings} >= {
            rbac.user_namespace_role(env.settings, rbac.HUB),  # type: ignore[attr-defined]
            rbac.user_namespace_role(env.settings, rbac.OPERATOR)}  # type: ignore[attr-defined]
    # The admin's quota, in each user namespace.
    assert env.core.read_namespaced_resource_quota(
        "jupyternetes-user-quota", env.user_ns(bob)).spec.hard == QUOTA["hard"]

    # ann's first Jupyternetes server has her KubeSpawner home: same claim object, her file.
    got = env.get(ann, "api/contents/from-kubespawner.txt")
    assert got.status_code == 200, got.text
    assert got.json()["content"] == "ann's notes from KubeSpawner days"
    adopted = env.claim(ann, claim)
    assert adopted.metadata.uid == claim_uid
    assert adopted.metadata.labels[LABEL_INSTANCE] == instance_name_for_user(ann)
    assert adopted.metadata.labels.get(LABEL_ACCOUNT)  # bound to ann's account from now on
    # bob had no KubeSpawner claim: he gets a new one of KubeSpawner's name, empty.
    assert env.claim(bob, f"claim-{bob}").metadata.labels[LABEL_INSTANCE] == (
        instance_name_for_user(bob))
    assert env.get(bob, "api/contents/from-kubespawner.txt").status_code == 404
    for user in (ann, bob):
        env.stop(user)


def test_another_users_kubespawner_claim_is_refused_at_once(env: UserNamespacesEnv) -> None:
    # cara's namespace holds a claim of cara's name that KubeSpawner made for "dan".
    claim = as_kubespawner_made_it(env, "cara", owner="dan")
    message, elapsed = spawn_failure(env, "cara", {})
    assert elapsed < 90, (elapsed, message)
    assert claim in message and "annotation is 'dan'" in message, message
    assert env.claim("cara", claim).metadata.labels.get(LABEL_INSTANCE) is None


def test_rbac_keeps_hub_and_operator_to_the_user_namespaces(env: UserNamespacesEnv) -> None:
    hub_config, operator_config = env.hub_config, env.operator_config  # type: ignore[attr-defined]
    settings = env.settings  # type: ignore[attr-defined]
    user_ns = env.user_ns("bob")  # made by test 1, or now by the hub's first spawn for bob
    if not can(hub_config, "list", "pods", user_ns):
        pytest.fail(f"the hub cannot list pods in {user_ns}: its RoleBinding is missing")
    assert can(operator_config, "create", "pods", user_ns)
    assert not can(hub_config, "get", "secrets", user_ns)  # never reads a token
    for config in (hub_config, operator_config):
        assert not can(config, "list", "pods")  # nothing cluster-wide
        assert not can(config, "create", "pods", env.ns)
        assert not can(config, "get", "secrets", "kube-system")
    # The admission policy: no binding of the operator's role outside user namespaces, or to
    # another subject, although RBAC alone would let the hub do both.
    from kubernetes import config as kube_config

    with kube_config.new_client_from_config(config_file=str(hub_config)) as hub_api:
        hub_rbac = client.RbacAuthorizationV1Api(hub_api)
        role = rbac.user_namespace_role(settings, rbac.OPERATOR)
        for namespace, subject in ((env.ns, {"kind": "ServiceAccount", "name": rbac.OPERATOR,
                                             "namespace": env.ns}),
                                   (user_ns, {"kind": "ServiceAccount", "name": "hub",
                                              "namespace": env.ns})):
            with pytest.raises(client.ApiException) as refused:
                hub_rbac.create_namespaced_role_binding(namespace, {
                    "metadata": {"name": "escalate"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": role},
                    "subjects": [subject]})
            assert refused.value.status in (403, 422), refused.value.body
            assert "ValidatingAdmissionPolicy" in refused.value.body, refused.value.body
