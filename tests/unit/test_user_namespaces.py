"""User namespaces and instance names (issue 20, section 2): pure naming rules, the namespace
manifests and owner check, the operator's label-selected scopes, the deploy stack's RBAC."""

from __future__ import annotations

import pytest

from jupyternetes.controller.namespacescope import NamespaceScope
from jupyternetes.controller.orphans import OrphanCollector
from jupyternetes.crd.labels import HUB_USER_ANNOTATION, USER_NAMESPACE_SELECTOR
from jupyternetes.crd.naming import dns_label, instance_name_for_user, is_dns1123_label
from jupyternetes.deploy import manifests, rbac
from jupyternetes.deploy.settings import SettingsError, settings_from_config
from jupyternetes.kube.informer import ADDED, DELETED, MODIFIED, RESYNC
from jupyternetes.spawner import names, namespaces

# ---- names -----------------------------------------------------------------------------------


def test_dns_label_keeps_valid_names_and_hashes_every_cleaned_one():
    assert dns_label("jhub-alice") == "jhub-alice"
    cleaned = {dns_label(text) for text in ("jhub-Ann.B", "jhub-ann-b.", "jhub-ann_b",
                                             "jhub-ANN-B", "jhub-ann-b")}
    assert len(cleaned) == 5  # all differ, although four clean up to jhub-ann-b
    for text in ("jhub-Ann.B", "x" * 200, "ü", "", "-a-", "user@example.com"):
        assert is_dns1123_label(dns_label(text)), text
    assert dns_label("jhub-Ann.B") == dns_label("jhub-Ann.B")  # stable


def test_user_namespace_template_like_kubespawner():
    assert names.user_namespace("{hubnamespace}-{username}", "alice", "", "jhub") == "jhub-alice"
    # KubeSpawner's rule: the `default` hub namespace gives `user-<name>`.
    assert names.user_namespace("{hubnamespace}-{username}", "alice", "", "default") == (
        "user-alice")
    odd = names.user_namespace("{hubnamespace}-{username}", "Alice@Example.org", "", "jhub")
    assert is_dns1123_label(odd) and odd.startswith("jhub-alice-example-org-")
    with pytest.raises(names.NameTemplateError, match=r"unknown field \{user\}"):
        names.user_namespace("ns-{user}", "alice", "", "jhub")
    with pytest.raises(names.NameTemplateError, match="empty"):
        names.user_namespace("{servername}", "alice", "", "jhub")


def test_instance_name_template_default_and_unique_per_user_and_server():
    assert names.instance_name("", "alice", "", "jhub") == instance_name_for_user("alice")
    first = names.instance_name("hub2-{uuid}", "alice", "", "jhub")
    assert first == f"hub2-{instance_name_for_user('alice')}"
    seen = {names.instance_name("hub2-{username}-{uuid}", user, server, "jhub")
            for user, server in (("a", "b-c"), ("a-b", "c"), ("a", ""), ("a", "x"),
                                 ("A", ""), ("Ann.B", "lab"))}
    assert len(seen) == 6
    assert all(is_dns1123_label(name) for name in seen)
    with pytest.raises(names.NameTemplateError, match=r"no \{uuid\}"):
        names.instance_name("hub2-{username}", "alice", "", "jhub")
    with pytest.raises(names.NameTemplateError, match="reserved"):
        names.instance_name("j-{uuid}", "alice", "", "jhub")


# ---- the namespace ---------------------------------------------------------------------------


def test_namespace_body_labels_win_over_the_admins():
    body = namespaces.namespace_body("jhub-alice", "Alice", {
        "team": "x", "jupyternetes.kadense.io/user-namespace": "false"}, {"note": "n"})
    labels = body["metadata"]["labels"]
    assert labels["jupyternetes.kadense.io/user-namespace"] == "true"
    assert labels["team"] == "x" and labels["hub.jupyter.org/username"] == "Alice"
    assert body["metadata"]["annotations"] == {"note": "n", HUB_USER_ANNOTATION: "Alice"}
    assert namespaces.quota_body("jhub-alice", {"hard": {"pods": "2"}})["spec"] == {
        "hard": {"pods": "2"}}


def test_an_existing_namespace_is_used_only_when_it_is_the_users():
    mine = {"metadata": {"name": "n", "annotations": {HUB_USER_ANNOTATION: "alice"}}}
    assert namespaces.owner_problem(mine, "alice") is None
    assert "belongs to user 'alice'" in namespaces.owner_problem(mine, "bob")
    assert "was not made by the hub" in namespaces.owner_problem({"metadata": {"name": "n"}},
                                                                 "alice")


def test_role_binding_body():
    body = namespaces.role_binding_body("jhub-alice", {
        "name": "jupyternetes-hub", "clusterRole": "r",
        "serviceAccount": {"name": "hub", "namespace": "jhub"}})
    assert body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "r"}
    assert body["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": "jhub"}]
    with pytest.raises(ValueError, match="needs name, clusterRole"):
        namespaces.role_binding_body("x", {"name": "a"})


# ---- the operator's label-selected scopes ----------------------------------------------------


def test_namespace_scope_adds_and_removes_namespaces():
    added, removed = [], []
    scope = NamespaceScope(None, USER_NAMESPACE_SELECTOR, added.append,  # type: ignore[arg-type]
                           removed.append)
    scope.on_namespace(ADDED, {"metadata": {"name": "jhub-alice"}})
    scope.on_namespace(MODIFIED, {"metadata": {"name": "jhub-alice"}})
    scope.on_namespace(RESYNC, {"metadata": {"name": "jhub-bob"}})
    scope.on_namespace(DELETED, {"metadata": {"name": "jhub-alice"}})
    assert added == ["jhub-alice", "jhub-alice"] and removed == ["jhub-alice"]
    assert scope.served() == []  # not listed yet: nothing is served


class _Engine:
    def __init__(self) -> None:
        self.destroyed: list[str] = []

    def list_stacks(self) -> list[str]:
        return ["jhub-alice.i1", "other.i2", "jhub-bob.gone"]

    def destroy(self, namespace: str, name: str, stack: str | None = None):
        self.destroyed.append(stack or "")
        return type("R", (), {"result": "succeeded"})()


def test_orphans_in_label_mode_judge_only_served_namespaces_and_none_before_the_list():
    engine = _Engine()
    served: list[str] = []
    collector = OrphanCollector(engine, lambda: [("jhub-alice", "i1")], served=lambda: served)
    assert collector.collect() == []  # nothing known to be served: nothing is an orphan
    served[:] = ["jhub-alice", "jhub-bob"]
    assert collector.collect() == ["jhub-bob.gone"]  # `other` is not served: kept
    assert engine.destroyed == ["jhub-bob.gone"]


# ---- the deploy stack ------------------------------------------------------------------------


def _settings(**config):
    return settings_from_config({"hubNamespace": "jhub", "hubUserNamespaces": True,
                                 **config}.get)


def test_user_namespace_settings():
    s = _settings()
    assert s.hub_user_namespaces and not s.cluster_wide and s.watch_namespaces == ()
    assert manifests.operator_args(s)[-2:] == ["--namespace-selector", USER_NAMESPACE_SELECTOR]
    assert manifests.example_users(s) == ("*",)
    with pytest.raises(SettingsError, match="needs hubNamespace"):
        settings_from_config({"hubUserNamespaces": True}.get)
    with pytest.raises(SettingsError, match="unset watchNamespaces"):
        _settings(watchNamespaces=["a"])


def _by_kind(objects):
    found: dict[str, list[dict]] = {}
    for obj in objects:
        found.setdefault(obj.manifest["kind"], []).append(obj.manifest)
    return found


def test_user_namespace_rbac_binds_nothing_cluster_wide_but_namespaces():
    s = _settings()
    labels = {"app": "x"}
    operator = _by_kind(rbac.operator_rbac(s, labels))
    hub = _by_kind(rbac.hub_rbac(s, labels))
    op_role = rbac.user_namespace_role(s, rbac.OPERATOR)
    hub_role = rbac.user_namespace_role(s, rbac.HUB)
    roles = {r["metadata"]["name"]: r for r in operator["ClusterRole"] + hub["ClusterRole"]}
    assert roles[op_role]["rules"] == rbac.operator_workload_rules()
    assert roles[hub_role]["rules"] == rbac.hub_rules()
    bound = {b["roleRef"]["name"] for b in operator["ClusterRoleBinding"]
             + hub["ClusterRoleBinding"]}
    # The workload roles are bound only in user namespaces (by the hub's RoleBindings).
    assert op_role not in bound and hub_role not in bound
    for name in bound:
        for r in roles.get(name, {}).get("rules", []):
            assert "secrets" not in r["resources"] and "pods" not in r["resources"], name
    ns_rules = [r for b in bound if b in roles for r in roles[b]["rules"]
                if "namespaces" in r["resources"]]
    assert {"list", "watch", "create"} <= {v for r in ns_rules for v in r["verbs"]}
    bind = [r for r in roles[f"{rbac.HUB}-namespaces-{s.namespace}"]["rules"]
            if r["verbs"] == ["bind"]]
    assert bind[0]["resourceNames"] == [hub_role, op_role]
    policy = hub["ValidatingAdmissionPolicy"][0]["spec"]
    assert "system:serviceaccount:jhub:hub" in policy["matchConditions"][0]["expression"]
    assert hub["ValidatingAdmissionPolicyBinding"][0]["spec"]["validationActions"] == ["Deny"]
    bindings = rbac.user_namespace_role_bindings(s)
    assert [b["clusterRole"] for b in bindings] == [hub_role, op_role]
    assert bindings[1]["serviceAccount"] == {"name": rbac.OPERATOR, "namespace": s.namespace}


# ---- the spawner's settings ------------------------------------------------------------------


def test_spawner_user_namespace_and_instance_name_settings():
    from tests.unit.test_spawner_class import make_spawner

    spawner = make_spawner("lab", hub_namespace="jhub", enable_user_namespaces=True)
    assert spawner.namespace == "jhub-alice"
    assert spawner._name() == instance_name_for_user("alice", "lab")
    named = make_spawner("lab", hub_namespace="jhub", instance_name_template="hub2-{uuid}")
    assert named.namespace == "jhub"
    assert named._name() == f"hub2-{instance_name_for_user('alice', 'lab')}"


def test_spawner_sends_kubespawners_names():
    import asyncio

    from tests.unit.test_spawner_class import make_spawner

    spawner = make_spawner(namespace="users")
    values = asyncio.run(spawner.instance_variables(None))
    assert values["jupyterhub.kubespawner.user_server"] == "alice"
    assert values["jupyterhub.kubespawner.escaped_username"] == "alice"
