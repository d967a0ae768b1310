# The fixtures of test_operator.py are imported by name and then taken as test arguments.
# ruff: noqa: F811
"""End to end: the trust model (templates cannot escalate beyond what their authors may do).

The real operator (subprocess), the real apiserver and the real Pulumi engine, as in
test_operator.py. Each refusal must be a `Provisioned=False` condition whose reason and message
say what to change, with no object made (no engine call); each allowed case must provision.

- a template is used only from the namespaces it allows (spec.allowedNamespaces, default its
  own);
- otherResources kinds outside the operator's allow-list (--other-resource-kind) are refused,
  RBAC kinds even inside it unless the admin opts in (--allow-rbac-kinds);
- spec.variablesFrom reads only the spawner's `<instance>-hub` Secret or Secrets labelled
  `jupyternetes.kadense.io/variables-from: "true"`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from kubernetes import client

from harness.examples import load_example, strip_server_fields
from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
    VERSION,
)
from tests.e2e.test_operator import (  # noqa: F401  (fixtures are used by name)
    HUB_NAMESPACE,
    Cluster,
    condition,
    hub,
    provisioned,
    start_operator,
    volumes,
    wait_for,
)

pytestmark = pytest.mark.e2e

RBAC = "rbac.authorization.k8s.io"


def refused(hub: Cluster, ns: str, name: str, reason: str) -> Callable[[], dict | None]:
    def check() -> dict | None:
        inst = hub.instance(ns, name)
        cond = condition(inst, "Provisioned")
        return inst if cond.get("reason") == reason and cond.get("status") == "False" else None
    return check


def create_template(hub: Cluster, ns: str, name: str, spec: dict) -> None:
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, ns, TEMPLATE_PLURAL, {
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})


def create_instance(hub: Cluster, ns: str, name: str, template: str,
                    template_ns: str | None = None, variables: dict | None = None,
                    secrets: tuple[str, ...] = ()) -> None:
    spec: dict = {"template": {"name": template, **(
        {"namespace": template_ns} if template_ns else {})}, "variables": variables or {}}
    if secrets:
        spec["variablesFrom"] = [{"secretRef": {"name": s}} for s in secrets]
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, ns, INSTANCE_PLURAL, {
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})


def create_secret(hub: Cluster, ns: str, name: str, data: dict[str, str],
                  labels: dict[str, str] | None = None) -> None:
    hub.core.create_namespaced_secret(ns, {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def config_map(hub: Cluster, ns: str, name: str) -> dict | None:
    try:
        return hub.core.read_namespaced_config_map(name, ns).to_dict()
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def role_binding(hub: Cluster, ns: str, name: str) -> object | None:
    try:
        return client.RbacAuthorizationV1Api(hub.api).read_namespaced_role_binding(name, ns)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_instance_using_a_template_its_namespace_is_not_allowed_is_refused_until_allowed(
        hub, namespace, volumes, start_operator):
    ns, name, template = namespace, "trust-other-ns", "trust-private"
    body = strip_server_fields(load_example("seed-template.yaml"))
    body["metadata"] = {"name": template, "namespace": HUB_NAMESPACE}
    body["spec"].pop("allowedNamespaces", None)  # the default: only its own namespace
    hub.custom.create_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, body)
    try:
        volumes.provide(ns, name)
        op = start_operator([ns])
        hub.create_instance(ns, name, template=template)
        inst = wait_for("TemplateNotAllowed", refused(hub, ns, name, "TemplateNotAllowed"),
                        describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
        message = condition(inst, "Provisioned")["message"]
        assert f"{HUB_NAMESPACE}/{template}" in message
        assert "spec.allowedNamespaces" in message and ns in message
        assert inst["status"]["podsProvisioned"] == "Failed"
        assert hub.pods(ns, name) == [] and hub.pvcs(ns, name) == []
        assert "stack" not in inst["status"] or not inst["status"]["stack"].get("lastUpdate")
        hub.wait_event(ns, name, "Warning", "TemplateNotAllowed", "spec.allowedNamespaces")

        # The template's author allows the namespace: the instance is provisioned.
        hub.custom.patch_namespaced_custom_object(
            GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL, template,
            {"spec": {"allowedNamespaces": [ns]}},
            _content_type="application/merge-patch+json")
        wait_for("Completed once allowed", provisioned(hub, ns, name),
                 describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    finally:
        hub.custom.delete_namespaced_custom_object(GROUP, VERSION, HUB_NAMESPACE, TEMPLATE_PLURAL,
                                                   template)


def test_kinds_outside_the_allow_list_and_rbac_kinds_without_the_opt_in_are_refused(
        hub, namespace, start_operator):
    ns, name, template = namespace, "trust-kinds", "trust-kinds"
    create_template(hub, ns, template, {"otherResources": [
        {"name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
         "data": {"user": "{user}"}},
        {"name": "grant", "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
         "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]},
    ]})
    create_instance(hub, ns, name, template, variables={"user": "alice"})
    cm_name, rb_name = f"{name}-settings", f"{name}-grant"

    # No allow-list: neither kind.
    op = start_operator([ns])
    inst = wait_for("KindNotAllowed", refused(hub, ns, name, "KindNotAllowed"),
                    describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    message = condition(inst, "Provisioned")["message"]
    assert "spec.otherResources[settings]" in message and "ConfigMap" in message
    assert "spec.otherResources[grant]" in message and "RoleBinding" in message
    assert "--other-resource-kind" in message
    assert config_map(hub, ns, cm_name) is None and role_binding(hub, ns, rb_name) is None
    assert op.terminate() == 0, op.log_tail()

    # Both kinds listed, no opt-in: the RoleBinding alone is refused, and says how to opt in.
    kinds = ("--other-resource-kind", "configmaps",
             "--other-resource-kind", f"rolebindings.{RBAC}")
    op = start_operator([ns], extra=kinds)
    inst = wait_for("KindNotAllowed for the RoleBinding only", lambda: (
        (i := refused(hub, ns, name, "KindNotAllowed")())
        and "settings" not in condition(i, "Provisioned")["message"] and i),
        describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    message = condition(inst, "Provisioned")["message"]
    assert "spec.otherResources[grant]" in message and "--allow-rbac-kinds" in message
    assert config_map(hub, ns, cm_name) is None and role_binding(hub, ns, rb_name) is None
    assert op.terminate() == 0, op.log_tail()

    # The admin opts in: both are made.
    op = start_operator([ns], extra=(*kinds, "--allow-rbac-kinds"))
    wait_for("Completed with the opt-in", provisioned(hub, ns, name),
             describe=lambda: hub.describe(ns, name) + "\n" + op.log_tail())
    assert config_map(hub, ns, cm_name)["data"] == {"user": "alice"}
    assert role_binding(hub, ns, rb_name) is not None


def test_variables_from_reads_only_the_hub_secret_and_labelled_secrets(
        hub, namespace, start_operator):
    ns, template = namespace, "trust-secrets"
    create_template(hub, ns, template, {"otherResources": [
        {"name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
         "data": {"a": "{token}", "b": "{colour}"}},
    ]})
    op = start_operator([ns], extra=("--other-resource-kind", "configmaps"))
    # The spawner's `<instance>-hub` (by name) and a labelled Secret: accepted.
    create_secret(hub, ns, "trusted-hub", {"token": "t0ken"})
    create_secret(hub, ns, "colours", {"colour": "blue"},
                  labels={"jupyternetes.kadense.io/variables-from": "true"})
    create_instance(hub, ns, "trusted", template, secrets=("trusted-hub", "colours"))
    # Any other Secret of the namespace: refused, and not read into any object.
    create_secret(hub, ns, "db-password", {"colour": "s3cr3t-db"})
    create_secret(hub, ns, "other-hub", {"token": "n0t-y0urs"})  # another instance's
    create_instance(hub, ns, "snoop", template, variables={"token": "x"},
                    secrets=("db-password",))
    create_instance(hub, ns, "trusted2", template, variables={"colour": "red"},
                    secrets=("other-hub",))

    inst = wait_for("SecretNotAllowed", refused(hub, ns, "snoop", "SecretNotAllowed"),
                    describe=lambda: hub.describe(ns, "snoop") + "\n" + op.log_tail())
    message = condition(inst, "Provisioned")["message"]
    assert f"Secret {ns}/db-password" in message
    assert "spec.variablesFrom[0].secretRef.name" in message
    assert "jupyternetes.kadense.io/variables-from" in message
    assert "s3cr3t-db" not in message
    assert config_map(hub, ns, "snoop-settings") is None
    wait_for("SecretNotAllowed for another instance's hub Secret",
             refused(hub, ns, "trusted2", "SecretNotAllowed"),
             describe=lambda: hub.describe(ns, "trusted2") + "\n" + op.log_tail())
    assert config_map(hub, ns, "trusted2-settings") is None

    wait_for("Completed", provisioned(hub, ns, "trusted"),
             describe=lambda: hub.describe(ns, "trusted") + "\n" + op.log_tail())
    assert config_map(hub, ns, "trusted-settings")["data"] == {"a": "t0ken", "b": "blue"}

    # The Secret's owner labels it for variablesFrom: the refused instance goes ahead.
    hub.core.patch_namespaced_secret("db-password", ns, {"metadata": {"labels": {
        "jupyternetes.kadense.io/variables-from": "true"}}})
    wait_for("Completed once labelled", provisioned(hub, ns, "snoop"),
             describe=lambda: hub.describe(ns, "snoop") + "\n" + op.log_tail())
