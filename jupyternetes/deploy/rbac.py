"""Least-privilege RBAC for the operator and for the hub, derived from what the code calls (pure).

Operator (`jupyternetes operator`, its engine workers and their Kubernetes provider):
- instances: list+watch (kube/informer.py), get + merge patch of metadata.finalizers
(kube/client.py),
  merge patch of the status subresource (kube/client.py). `finalizers` (update) lets it own objects
  with
  blockOwnerDeletion under the OwnerReferencesPermissionEnforcement admission plugin.
- templates: get (reconcile) and list+watch (template watch), cluster-wide unless
  templateNamespaces restricts them, because an instance may use a template from any namespace;
  merge patch of their status subresource (instance counts, kube.patch_template_status).
- namespaces: get (kube.namespace_terminating: deletion always ends in a namespace being
  deleted). Cluster-scoped, so a ClusterRole even in namespaced mode, then limited by
  resourceNames to the watched namespaces.
- pods: list+watch (pod status mirror), get (old-pod hook, refresh), and what the Kubernetes
  provider does to apply a pod: server-side apply is a PATCH that needs `create` too when the
  object is new, `delete` for destroy and replacement.
- persistentvolumeclaims: get, create, patch, and list (controller/preflight.py lists the
  instance's claims to report retained ones). No delete: PVCs are retained on destroy.
- storageclasses (storage.k8s.io): get, cluster-wide (cluster-scoped), for the StorageClass of a
  claim a template edit would grow (preflight: is expansion allowed).
- otherResources kinds the admin lists in otherResourceKinds: as pods, list+watch included: the
  provider's delete await watches the object (checked: without them the destroy of an instance
  with a Service and a ConfigMap hangs in that await, with no error, until the provider's
  timeout).
- events: create (kube.emit_event), patch (client-go style recorders aggregate by patching).
- secrets: get only, for an instance's `spec.variablesFrom[].secretRef` (the hub token Secret
  `<instance>-hub` and Secrets labelled jupyternetes.kadense.io/variables-from); never list or
  watch. Only in the watched namespaces (with the default of the hub's user namespace, only
  there).
- leases (coordination.k8s.io), only in the operator's own namespace, exactly the verbs the
  one Lease loop uses in both modes (leader election and `--shards`): list/create/update/delete
  for the leader's or the shards' Leases and the membership Leases (the docstring of
  coordination/leasestore.py lists why each).
Namespaced Roles in each watched namespace when watchNamespaces is set; ClusterRoles only when the
operator watches every namespace.

Hub (the spawner), in the user namespace only, exactly the verbs it calls (spawner/cluster.py):
- instances: create, delete, get (poll), list+watch (its shared informer);
- secrets: create, delete and patch of its `<instance>-hub` token Secret (replace_secret deletes
  a leftover one, then creates; patch adds the instance as owner). Never get, list or watch: the
  hub cannot read the other users' tokens, or any other Secret of the namespace;
- pods, events: list+watch (informers for progress and poll); delete on pods: a stop with the
  operator down deletes the server's pods itself after `pod_delete_grace` (spawner/stopping.py);
- persistentvolumeclaims: list+watch, and delete + patch for delete_forever (a deleted user's
  claims are deleted, or released by a label patch with `delete_pvc = False`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, TEMPLATE_PLURAL
from jupyternetes.crd.labels import USER_NAMESPACE_LABEL
from jupyternetes.deploy.settings import DeploySettings, ResourceKind

RBAC_API = "rbac.authorization.k8s.io/v1"

OPERATOR = "jupyternetes-operator"
HUB = "jupyternetes-hub"


def rule(api_group: str, resources: Iterable[str], verbs: Iterable[str]) -> dict[str, Any]:
    return {"apiGroups": [api_group], "resources": list(resources), "verbs": list(verbs)}


def operator_workload_rules(kinds: Iterable[ResourceKind] = ()) -> list[dict[str, Any]]:
    """What the operator needs where instances live (one namespace or all)."""
    rules = [
        rule(GROUP, [INSTANCE_PLURAL], ["get", "list", "watch", "patch"]),
        rule(GROUP, [f"{INSTANCE_PLURAL}/status"], ["patch"]),
        rule(GROUP, [f"{INSTANCE_PLURAL}/finalizers"], ["update"]),
        rule("", ["pods"], ["get", "list", "watch", "create", "patch", "delete"]),
        rule("", ["persistentvolumeclaims"], ["get", "list", "create", "patch"]),
        rule("", ["events"], ["create", "patch"]),
        rule("", ["secrets"], ["get"]),
    ]
    by_group: dict[str, list[str]] = {}
    for kind in kinds:
        by_group.setdefault(kind.api_group, []).append(kind.resource)
    for group, resources in sorted(by_group.items()):
        rules.append(rule(group, sorted(set(resources)),
                          ["get", "list", "watch", "create", "patch", "delete"]))
    return rules


def template_rules() -> list[dict[str, Any]]:
    return [rule(GROUP, [TEMPLATE_PLURAL], ["get", "list", "watch"]),
            rule(GROUP, [f"{TEMPLATE_PLURAL}/status"], ["patch"])]


def namespace_rules(names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """get on namespaces: all of them, or (names given) only those."""
    namespaces = rule("", ["namespaces"], ["get"])
    if names:
        namespaces["resourceNames"] = list(names)
    return [namespaces]


def storage_class_rules() -> list[dict[str, Any]]:
    return [rule("storage.k8s.io", ["storageclasses"], ["get"])]


ELECTION_LEASE_VERBS = ("list", "create", "update", "delete")  # one Lease loop: lease.py
SHARD_LEASE_VERBS = ("list", "create", "update", "delete")


def lease_rules(sharded: bool = False) -> list[dict[str, Any]]:
    verbs = SHARD_LEASE_VERBS if sharded else ELECTION_LEASE_VERBS
    return [rule("coordination.k8s.io", ["leases"], verbs)]


def hub_rules() -> list[dict[str, Any]]:
    return [
        rule(GROUP, [INSTANCE_PLURAL], ["create", "get", "list", "watch", "delete"]),
        rule("", ["secrets"], ["create", "delete", "patch"]),
        rule("", ["events"], ["list", "watch"]),
        # delete: a stop with the operator down removes the server's pods (spawner/stopping.py).
        rule("", ["pods"], ["list", "watch", "delete"]),
        # delete + patch: delete_forever deletes or releases a deleted user's claims.
        rule("", ["persistentvolumeclaims"], ["list", "watch", "delete", "patch"]),
    ]


@dataclass(frozen=True)
class RbacObject:
    """One RBAC manifest and the Pulumi resource name it is declared under."""

    resource_name: str
    manifest: dict[str, Any]


def _meta(name: str, labels: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _role_pair(key: str, name: str, namespace: str | None, rules: list[dict[str, Any]],
               subject: dict[str, str], labels: dict[str, str]) -> list[RbacObject]:
    """A Role + RoleBinding (namespace given) or ClusterRole + ClusterRoleBinding."""
    kind = "Role" if namespace else "ClusterRole"
    binding_kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    where = f"{namespace}/{name}" if namespace else name
    return [
        RbacObject(f"{key}-{kind.lower()}/{where}", {
            "apiVersion": RBAC_API, "kind": kind,
            "metadata": _meta(name, labels, namespace), "rules": rules}),
        RbacObject(f"{key}-{binding_kind.lower()}/{where}", {
            "apiVersion": RBAC_API, "kind": binding_kind,
            "metadata": _meta(name, labels, namespace),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [subject]}),
    ]


def operator_rbac(settings: DeploySettings, labels: dict[str, str]) -> list[RbacObject]:
    """Every Role/ClusterRole and binding for the operator's ServiceAccount."""
    subject = {"kind": "ServiceAccount", "name": OPERATOR, "namespace": settings.namespace}
    cluster_name = f"{OPERATOR}-{settings.namespace}"  # one install per namespace, unique names
    objects: list[RbacObject] = []
    workload = operator_workload_rules(settings.other_resource_kinds)
    if settings.hub_user_namespaces:
        # The workload rules as a ClusterRole bound in each user namespace by the hub's
        # RoleBinding (user_namespace_role_bindings); cluster-wide only what is
        # cluster-scoped: the label-selected namespace watch and StorageClasses.
        objects.append(_cluster_role(user_namespace_role(settings, OPERATOR), workload, labels))
        objects += _role_pair("namespaces", f"{cluster_name}-namespaces", None,
                              namespace_watch_rules() + storage_class_rules(), subject, labels)
    elif settings.cluster_wide:
        objects += _role_pair("operator", cluster_name, None,
                              workload + namespace_rules() + storage_class_rules(),
                              subject, labels)
    else:
        for namespace in settings.watch_namespaces:
            objects += _role_pair("operator", OPERATOR, namespace, workload, subject, labels)
        objects += _role_pair("namespaces", f"{cluster_name}-namespaces", None,
                              namespace_rules(settings.watch_namespaces)
                              + storage_class_rules(), subject, labels)
    if settings.template_namespaces:
        for namespace in settings.template_namespaces:
            objects += _role_pair("templates", f"{OPERATOR}-templates", namespace,
                                  template_rules(), subject, labels)
    else:
        objects += _role_pair("templates", f"{cluster_name}-templates", None, template_rules(),
                              subject, labels)
    objects += _role_pair("leases", f"{OPERATOR}-leases", settings.namespace,
                          lease_rules(settings.sharded), subject, labels)
    return objects


def hub_rbac(settings: DeploySettings, labels: dict[str, str]) -> list[RbacObject]:
    """The hub's Role in the user namespace (nothing when no hubNamespace is configured); with
    hubUserNamespaces its rights to make user namespaces instead (user_namespace_rbac)."""
    if not settings.hub_enabled:
        return []
    subject = {"kind": "ServiceAccount", "name": settings.hub_service_account,
               "namespace": settings.hub_namespace}
    if settings.hub_user_namespaces:
        return user_namespace_rbac(settings, subject, labels)
    return _role_pair("hub", HUB, settings.hub_instance_namespace, hub_rules(), subject, labels)


# ---- user namespaces (hubUserNamespaces) --------------------------------------------------------
#
# RBAC cannot grant by a namespace's labels, and a user's namespace is made at spawn time, so
# neither a Role made in advance nor a label-scoped grant exists for it. The two ClusterRoles
# `user_namespace_role` (the hub's rules, the operator's workload rules) are therefore bound in
# each user namespace by RoleBindings the hub creates with the namespace (the spawner's
# user_namespace_role_bindings = `user_namespace_role_bindings(settings)`). For that the hub
# needs, cluster-wide: create/get on namespaces, create on rolebindings and resourcequotas, and
# `bind` on exactly those two ClusterRoles (Kubernetes lets a RoleBinding reference a role only
# when its creator holds the role's rights or `bind` on it). `create rolebindings` cannot be
# limited to some namespaces by RBAC, and `bind` does not limit the subjects, so a
# ValidatingAdmissionPolicy does (`hub_admission_policy`): the hub's RoleBindings only in
# namespaces labelled jupyternetes.kadense.io/user-namespace=true, only to those two roles,
# each only for its own ServiceAccount; its namespaces only with that label; its quotas only
# in those namespaces. Nothing grants the hub or the operator anything in other namespaces.


def user_namespace_role(settings: DeploySettings, who: str) -> str:
    """Name of the ClusterRole `who` (OPERATOR or HUB) is bound to in each user namespace."""
    return f"{who}-user-namespace-{settings.namespace}"


def namespace_watch_rules() -> list[dict[str, Any]]:
    """The operator's label-selected namespace watch (controller/namespacescope.py) and
    kube.namespace_terminating."""
    return [rule("", ["namespaces"], ["get", "list", "watch"])]


def hub_namespace_rules(settings: DeploySettings) -> list[dict[str, Any]]:
    bind = rule("rbac.authorization.k8s.io", ["clusterroles"], ["bind"])
    bind["resourceNames"] = [user_namespace_role(settings, HUB),
                             user_namespace_role(settings, OPERATOR)]
    return [rule("", ["namespaces"], ["create", "get"]),
            rule("", ["resourcequotas"], ["create"]),
            rule("rbac.authorization.k8s.io", ["rolebindings"], ["create"]),
            bind]


def user_namespace_role_bindings(settings: DeploySettings) -> list[dict[str, Any]]:
    """The spawner's `user_namespace_role_bindings` for this install (exported)."""
    return [
        {"name": HUB, "clusterRole": user_namespace_role(settings, HUB),
         "serviceAccount": {"name": settings.hub_service_account,
                            "namespace": settings.hub_namespace}},
        {"name": OPERATOR, "clusterRole": user_namespace_role(settings, OPERATOR),
         "serviceAccount": {"name": OPERATOR, "namespace": settings.namespace}},
    ]


def _cluster_role(name: str, rules: list[dict[str, Any]], labels: dict[str, str]) -> RbacObject:
    return RbacObject(f"user-namespace-clusterrole/{name}", {
        "apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": _meta(name, labels),
        "rules": rules})


def _cel_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def hub_admission_policy(settings: DeploySettings,
                         labels: dict[str, str]) -> list[RbacObject]:
    """The ValidatingAdmissionPolicy (+ binding) that keeps the hub's namespace rights to the
    user namespaces (see the comment above `user_namespace_role`)."""
    name = f"{HUB}-user-namespaces-{settings.namespace}"
    key, value = USER_NAMESPACE_LABEL
    hub_user = (f"system:serviceaccount:{settings.hub_namespace}:"
                f"{settings.hub_service_account}")
    labelled = (f"has(namespaceObject.metadata.labels) && {_cel_string(key)} in "
                f"namespaceObject.metadata.labels && namespaceObject.metadata.labels"
                f"[{_cel_string(key)}] == {_cel_string(value)}")
    allowed = " || ".join(
        f"(object.roleRef.name == {_cel_string(b['clusterRole'])} && object.subjects.all(s, "
        f"s.kind == 'ServiceAccount' && s.name == {_cel_string(b['serviceAccount']['name'])} "
        f"&& s.namespace == "
        f"{_cel_string(b['serviceAccount']['namespace'])}))"
        for b in user_namespace_role_bindings(settings))
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(name, labels),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["*"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["rolebindings"]},
                {"apiGroups": [""], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                 "resources": ["namespaces", "resourcequotas"]}]},
            "matchConditions": [{"name": "the-hub",
                                 "expression": f"request.userInfo.username == "
                                               f"{_cel_string(hub_user)}"}],
            "validations": [
                {"expression": f"request.resource.resource != 'namespaces' || "
                               f"(has(object.metadata.labels) && {_cel_string(key)} in "
                               f"object.metadata.labels && object.metadata.labels"
                               f"[{_cel_string(key)}] == {_cel_string(value)})",
                 "message": f"the hub makes only user namespaces, labelled {key}={value}"},
                {"expression": f"request.resource.resource == 'namespaces' || ({labelled})",
                 "message": f"the hub binds roles and sets quotas only in namespaces labelled "
                            f"{key}={value}"},
                {"expression": f"request.resource.resource != 'rolebindings' || "
                               f"(object.roleRef.kind == 'ClusterRole' && has(object.subjects) "
                               f"&& ({allowed}))",
                 "message": "the hub binds only the user-namespace ClusterRoles, each to its "
                            "own ServiceAccount"},
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(name, labels),
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [RbacObject(f"hub-admission-policy/{name}", policy),
            RbacObject(f"hub-admission-policy-binding/{name}", binding)]


def user_namespace_rbac(settings: DeploySettings, subject: dict[str, str],
                        labels: dict[str, str]) -> list[RbacObject]:
    """The hub's side of hubUserNamespaces: its ClusterRole bound in each user namespace, its
    cluster-wide rights to make them, and the admission policy that limits those."""
    return [_cluster_role(user_namespace_role(settings, HUB), hub_rules(), labels),
            *_role_pair("hub-namespaces", f"{HUB}-namespaces-{settings.namespace}", None,
                        hub_namespace_rules(settings), subject, labels),
            *hub_admission_policy(settings, labels)]
