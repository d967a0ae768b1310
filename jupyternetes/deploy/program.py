"""The deploy stack's Pulumi program: CRDs, namespace, RBAC, state, operator (with a
PodDisruptionBudget when it has several replicas), metrics Service.

`stacks/__main__.py` (the project's `main`, see Pulumi.yaml) calls `main()`. Every object is a
manifest from `manifests`/`rbac` declared as a raw `pulumi.CustomResource`, like the instance
stacks do (`jupyternetes.program`), so what is applied is exactly the manifest the unit tests read.
The default Kubernetes provider is used on purpose: it follows the admin's kubeconfig and the
`kubernetes:kubeconfig` / `kubernetes:context` config like any Pulumi Kubernetes project.

Nothing here deletes users' work: CRDs are retained on destroy (deleting a CRD deletes every
instance, and with them every user's stack), and user PVCs were never this stack's objects.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

import pulumi

from jupyternetes.crd.definitions import load_crd_documents
from jupyternetes.deploy import hub, manifests, rbac
from jupyternetes.deploy.settings import DeploySettings, settings_from_config
from jupyternetes.engine.runtime.program import KUBERNETES_PROVIDER_VERSION, type_token


def config_lookup(config: pulumi.Config):
    """`pulumi.Config` as the `get` settings_from_config wants: lists and maps (set with
    `--path` or as JSON) come back parsed, every other value as the string the CLI stored."""

    def get(key: str) -> Any:
        raw = config.get(key)
        if raw is None:
            return None
        if raw.lstrip()[:1] in ("[", "{"):
            try:
                return json.loads(raw)
            except ValueError:
                return raw
        return raw

    return get


def declare(resource_name: str, manifest: dict[str, Any],
            opts: pulumi.ResourceOptions | None = None) -> pulumi.CustomResource:
    # version: the raw resource must ask for the same provider plugin the SDK pins.
    base = pulumi.ResourceOptions(version=KUBERNETES_PROVIDER_VERSION)
    return pulumi.CustomResource(type_token(manifest["apiVersion"], manifest["kind"]),
                                 resource_name, manifest,
                                 opts=pulumi.ResourceOptions.merge(base, opts))


def passphrase_secret(settings: DeploySettings, configured: pulumi.Output | None,
                      namespace: pulumi.Resource) -> pulumi.CustomResource:
    """The Secret with the instance stacks' passphrase: the `statePassphrase` config, or when that
    is empty a value generated here.

    Kept from the first `up` on: every run computes a new candidate (a generated value differs
    each time), and ignore_changes keeps the value first applied, which the state holds as a
    secret (both fields: the provider turns stringData into data before diffing). That is on
    purpose for a configured value too: every instance stack's secrets are encrypted with it,
    so changing it under them would make them unreadable.
    """
    generated = secrets.token_urlsafe(32)
    value = (configured.apply(lambda v: v or generated) if configured is not None
             else pulumi.Output.from_input(generated))
    return declare("secret/state",
                   manifests.state_secret(settings, pulumi.Output.secret(value)),
                   pulumi.ResourceOptions(ignore_changes=["stringData", "data"],
                                          depends_on=[namespace]))


def declare_hub(settings: DeploySettings, add: Any, crds: list[pulumi.CustomResource],
                declared: dict[str, pulumi.CustomResource]) -> None:
    """The hub of `hub.enabled` (jupyternetes/deploy/hub.py). Its Secret's generated values
    (proxy token, cookie secret, shared password) are kept from the first `up`, as the
    passphrase is."""
    # Everything of the hub is created after its namespace (and deleted before it).
    ns: list[pulumi.Resource] = [declared["namespace"]]
    if settings.hub_namespace != settings.namespace:
        hub_ns = add("hub/namespace", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": settings.hub_namespace,
                                                    "labels": hub.labels("hub")}})
        ns = [hub_ns]
    add("hub/serviceaccount", hub.service_account(settings), ns)
    values = [secrets.token_hex(32), secrets.token_hex(32), secrets.token_urlsafe(12)]
    hub_secret = declare("hub/secret", hub.secret(settings, *(
        pulumi.Output.secret(v) for v in values)),
        pulumi.ResourceOptions(ignore_changes=["stringData", "data"], depends_on=ns))
    declared["hub/secret"] = hub_secret
    add("hub/configmap", hub.config_map(settings, settings.example_template_namespace,
                                        manifests.EXAMPLE_TEMPLATE_NAME), ns)
    add("hub/pvc", hub.db_pvc(settings), ns)
    for name, manifest in hub.services(settings).items():
        add(f"hub/service/{name}", manifest, ns)
    add("hub/deployment/proxy", hub.proxy_deployment(settings), [hub_secret, *ns])
    add("hub/deployment/hub", hub.hub_deployment(settings), [hub_secret, *ns, *crds])
    for name, manifest in hub.network_policies(settings).items():
        add(f"hub/networkpolicy/{name}", manifest, ns)


def hub_url(declared: dict[str, pulumi.CustomResource]) -> pulumi.Output:
    """Where users log in: proxy-public's cluster IP (a LoadBalancer's address, when the cloud
    gives one, is in `kubectl get svc proxy-public`)."""
    service: Any = declared[f"hub/service/{hub.PROXY_PUBLIC}"]
    return service.spec.apply(lambda spec: f"http://{spec['clusterIP']}/")


def hub_password(declared: dict[str, pulumi.CustomResource]) -> pulumi.Output:
    secret: Any = declared["hub/secret"]
    return pulumi.Output.secret(secret.stringData.apply(lambda data: data[hub.PASSWORD_KEY]))


def declare_crds(settings: DeploySettings) -> dict[str, pulumi.CustomResource]:
    """crds/ as they are; retained on destroy unless retainCrds is false."""
    return {f"crd/{doc['metadata']['name']}":
            declare(f"crd/{doc['metadata']['name']}", doc,
                    pulumi.ResourceOptions(retain_on_delete=settings.retain_crds))
            for doc in load_crd_documents()}


def declare_all(settings: DeploySettings, passphrase: pulumi.Output | None = None,
                ) -> dict[str, pulumi.CustomResource]:
    """Every object of the install; returns them by resource name (tests read this)."""
    declared: dict[str, pulumi.CustomResource] = {}

    def add(name: str, manifest: dict[str, Any] | None,
            depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.CustomResource | None:
        if manifest is None:
            return None
        resource = declare(name, manifest, pulumi.ResourceOptions(depends_on=list(depends_on)))
        declared[name] = resource
        return resource

    declared.update(declare_crds(settings))
    crds = list(declared.values())
    ns = add("namespace", manifests.namespace(settings))
    assert ns is not None
    account = add("serviceaccount", manifests.service_account(settings), [ns])
    assert account is not None
    secret = passphrase_secret(settings, passphrase, ns)
    declared["secret/state"] = secret
    pvc = add("pvc/state", manifests.state_pvc(settings), [ns])
    backend = add("secret/backend", manifests.backend_secret(
        settings, pulumi.Output.secret(settings.state_backend_url)), [ns])
    roles = [add(obj.resource_name, obj.manifest, [ns, account])
             for obj in rbac.operator_rbac(settings, manifests.labels())]
    for obj in rbac.hub_rbac(settings, manifests.labels("hub-rbac")):
        add(obj.resource_name, obj.manifest)
    ready = [r for r in [*crds, ns, account, secret, pvc, backend, *roles] if r is not None]
    add("deployment", manifests.deployment(settings), ready)
    add("poddisruptionbudget", manifests.disruption_budget(settings), [ns])
    add("service/metrics", manifests.metrics_service(settings), [ns])
    if settings.example_template_namespace:
        add("example-template", hub.example_template_image(manifests.example_template(
            settings.example_template_namespace, manifests.example_users(settings)), settings),
            crds)
    if settings.hub_install:
        declare_hub(settings, add, crds, declared)
    return declared


def main() -> None:
    config = pulumi.Config()
    settings = settings_from_config(config_lookup(config))
    declared = declare_all(settings, config.get_secret("statePassphrase"))
    pulumi.export("namespace", settings.namespace)
    pulumi.export("serviceAccount", rbac.OPERATOR)
    pulumi.export("metricsService", manifests.METRICS_SERVICE)
    pulumi.export("rbacMode", "cluster" if settings.cluster_wide else
                  "user-namespaces" if settings.hub_user_namespaces else "namespaced")
    if settings.hub_user_namespaces:
        # The spawner's c.JupyternetesSpawner.user_namespace_role_bindings.
        pulumi.export("hubUserNamespaceRoleBindings", rbac.user_namespace_role_bindings(settings))
    pulumi.export("crds", sorted(n.removeprefix("crd/") for n in declared if n.startswith("crd/")))
    if settings.hub_install:
        pulumi.export("hubUrl", hub_url(declared))
        pulumi.export("hubPassword", hub_password(declared))
        pulumi.export("hubNamespace", settings.hub_namespace)
