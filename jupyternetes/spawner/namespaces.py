"""User namespaces (`enable_user_namespaces`): the namespace a spawn creates, as KubeSpawner does.

The namespace carries the hub's selector label (`USER_NAMESPACE_LABEL`, by which an operator run
with `--namespace-selector` starts watching it: no cluster-wide list of every namespace's
objects), the user label and the admin's extra labels/annotations, and the owner annotation
`hub.jupyter.org/username` with the raw user name. A namespace that exists already is used only
when that annotation names the same user: a `user_namespace_template` that maps two users to one
namespace (or a namespace made by someone else) fails the spawn with the reason, it never puts
one user's server next to another's. An optional ResourceQuota (`user_namespace_quota`, the
quota's spec) is created once in each new namespace; an existing quota of that name is left as
the admin may have changed it.

Manifests are pure; `ensure` does the I/O, with the hub's Kube client, in the hub's API thread pool.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jupyternetes.crd.labels import HUB_USER_ANNOTATION, MANAGED_BY, USER_NAMESPACE_LABEL
from jupyternetes.crd.naming import label_value
from jupyternetes.kube.client import Kube
from jupyternetes.kube.errors import KubeError, to_kube_error

USER_LABEL = "hub.jupyter.org/username"
QUOTA_NAME = "jupyternetes-user-quota"
NOT_FOUND_RETRIES = 4


def namespace_body(name: str, user_name: str, labels: Mapping[str, str] | None = None,
                   annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The user's Namespace: the admin's labels/annotations, then ours (which win)."""
    return {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {**dict(labels or {}), USER_NAMESPACE_LABEL[0]: USER_NAMESPACE_LABEL[1],
                       USER_LABEL: label_value(user_name), MANAGED_BY[0]: MANAGED_BY[1]},
            "annotations": {**dict(annotations or {}), HUB_USER_ANNOTATION: user_name},
        },
    }


def quota_body(namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": QUOTA_NAME, "namespace": namespace,
                         "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
            "spec": dict(spec)}


def role_binding_body(namespace: str, binding: Mapping[str, Any]) -> dict[str, Any]:
    """A RoleBinding in the user's namespace from one `user_namespace_role_bindings` item:
    {name, clusterRole, serviceAccount: {name, namespace}} (the deploy stack exports them)."""
    try:
        account = binding["serviceAccount"]
        subject = {"kind": "ServiceAccount", "name": str(account["name"]),
                   "namespace": str(account["namespace"])}
        name, role = str(binding["name"]), str(binding["clusterRole"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"user_namespace_role_bindings: {binding!r} needs name, clusterRole "
                         f"and serviceAccount {{name, namespace}}") from exc
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [subject]}


def owner_problem(namespace: Mapping[str, Any], user_name: str) -> str | None:
    """None when an existing namespace is this user's (its owner annotation), else why not."""
    meta = namespace.get("metadata") or {}
    name = meta.get("name")
    owner = (meta.get("annotations") or {}).get(HUB_USER_ANNOTATION)
    if owner == user_name:
        return None
    if owner is None:
        return (f"namespace {name} exists and was not made by the hub for user {user_name!r} "
                f"(no {HUB_USER_ANNOTATION} annotation): it is not used for their server. "
                f"If it is meant for them: kubectl annotate namespace {name} "
                f"{HUB_USER_ANNOTATION}={user_name}; otherwise change user_namespace_template")
    return (f"namespace {name} belongs to user {owner!r} ({HUB_USER_ANNOTATION}), not "
            f"{user_name!r}: user_namespace_template maps both users to one namespace, and a "
            f"user's server never goes into another user's namespace. Make the template "
            f"unique per user (it should contain {{username}})")


def ensure(kube: Kube, name: str, user_name: str, labels: Mapping[str, str] | None = None,
           annotations: Mapping[str, str] | None = None,
           quota: Mapping[str, Any] | None = None,
           role_bindings: Sequence[Mapping[str, Any]] = ()) -> bool:
    """Create the user's namespace, its RoleBindings and quota unless they are there; True
    when the namespace was created. A KubeError when it exists but is not this user's, or the
    apiserver refuses. The RoleBindings give the hub and the operator their rights there
    (deploy/rbac.py); existing ones are left as they are."""
    bindings = [role_binding_body(name, binding) for binding in role_bindings]
    body = namespace_body(name, user_name, labels, annotations)
    created = True
    try:
        kube.core.create_namespace(body, _preload_content=False)
    except ApiException as exc:
        if exc.status != 409:
            raise to_kube_error(exc, f"create namespace {name}") from exc
        created = False
    if not created:
        try:
            resp = kube.core.read_namespace(name, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"get namespace {name}") from exc
        existing = json.loads(resp.data)
        problem = owner_problem(existing, user_name)
        if problem:
            raise KubeError(409, problem, f"namespace {name}")
        if (existing.get("metadata") or {}).get("deletionTimestamp"):
            raise KubeError(409, f"namespace {name} is being deleted; start the server again "
                            "once it is gone", f"namespace {name}")
    rbac = client.RbacAuthorizationV1Api(kube.core.api_client)
    for binding in bindings:
        for attempt in range(NOT_FOUND_RETRIES + 1):
            try:
                rbac.create_namespaced_role_binding(name, binding, _preload_content=False)
                break
            except ApiException as exc:
                if exc.status == 409:
                    break
                # Admission policies of Kubernetes 1.30-1.34 (before the fix of
                # kubernetes#135352) may not find a namespace created a moment ago.
                if exc.status == 404 and attempt < NOT_FOUND_RETRIES:
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise to_kube_error(exc, f"create rolebinding {name}/"
                                         f"{binding['metadata']['name']}") from exc
    if quota:
        try:
            kube.core.create_namespaced_resource_quota(name, quota_body(name, quota),
                                                       _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise to_kube_error(exc, f"create resourcequota {name}/{QUOTA_NAME}") from exc
    return created
