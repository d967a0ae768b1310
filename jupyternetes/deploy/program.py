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
from jupyternetes.deploy import manifests, rbac
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
        add("example-template", manifests.example_template(
            settings.example_template_namespace, manifests.example_users(settings)), crds)
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
