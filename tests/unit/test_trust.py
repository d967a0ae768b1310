"""The trust model (policy/trust.py): its rules as a spec, then the reconciler refusing with a
condition and no engine call, the no-op path never skipping a refusal, and the spawner's Secret
being readable by its own instance only."""

from __future__ import annotations

import copy

import pytest

from harness.examples import load_example, shared_template
from jupyternetes.controller.noop import DriftFlags
from jupyternetes.controller.reconcile import ReconcileConfig, Reconciler
from jupyternetes.crd.labels import VARIABLES_FROM
from jupyternetes.crd.model import Instance, ModelError, Template
from jupyternetes.policy import trust
from jupyternetes.policy.trust import KindRule, TrustPolicy
from jupyternetes.render import secretvars
from jupyternetes.render.objects import render
from jupyternetes.spawner import manifests
from tests.unit.test_reconcile_unit import KEY, NS, EngineRecorder, KubeRecorder

RBAC = "rbac.authorization.k8s.io"


def template(namespace: str | None = "hub", allowed: list[str] | None = None,
             others: list[dict] | None = None) -> Template:
    spec: dict = {"pods": [{"name": "nb", "spec": {"containers": [{"name": "c", "image": "i"}]}}],
                  "otherResources": others or []}
    if allowed is not None:
        spec["allowedNamespaces"] = allowed
    meta = {"name": "tpl", **({"namespace": namespace} if namespace else {})}
    return Template.from_dict({"apiVersion": "kadense.io/v1", "kind": "JupyterNotebookTemplate",
                               "metadata": meta, "spec": spec})


def instance(namespace: str = "users", name: str = "alice", uid: str = "uid-a",
             secrets: tuple[str, ...] = (), template_ns: str = "hub") -> Instance:
    return Instance.from_dict({
        "apiVersion": "kadense.io/v1", "kind": "JupyterNotebookInstance",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"template": {"name": "tpl", "namespace": template_ns}, "variables": {},
                 "variablesFrom": [{"secretRef": {"name": s}} for s in secrets]}})


# ---- 1. which namespaces may use a template ---------------------------------------------------


def test_a_template_without_allowed_namespaces_is_for_its_own_namespace_only():
    assert trust.template_allows(template("hub"), "hub")
    assert not trust.template_allows(template("hub"), "users")


def test_allowed_namespaces_lists_namespaces_or_star_for_all():
    assert trust.template_allows(template("hub", ["users", "staff"]), "staff")
    assert not trust.template_allows(template("hub", ["users"]), "hub")  # not even its own
    assert trust.template_allows(template("hub", ["*"]), "anywhere")
    assert not trust.template_allows(template("hub", []), "hub")


def test_a_template_file_without_a_namespace_is_judged_by_its_list_only():
    assert trust.template_allows(template(None), "users")
    assert not trust.template_allows(template(None, ["staff"]), "users")


def test_refusal_names_the_template_the_field_and_what_to_change():
    with pytest.raises(trust.TrustError) as err:
        trust.check_template_use(template("hub"), instance("users"))
    assert err.value.reason == "TemplateNotAllowed"
    message = str(err.value)
    assert "template hub/tpl (spec.template)" in message
    assert "namespace users" in message and "spec.allowedNamespaces" in message
    assert "only instances of its own namespace hub" in message
    with pytest.raises(trust.TrustError) as err:
        trust.check_template_use(template("hub", ["staff"]), instance("users"))
    assert "its spec.allowedNamespaces is [staff]" in str(err.value)


@pytest.mark.parametrize(("value", "path"), [
    ("users", "spec.allowedNamespaces: must be a list"),
    (["Users"], r"spec.allowedNamespaces\[0\]: 'Users' is not a namespace name"),
    (["a*"], r"spec.allowedNamespaces\[0\]"),
    ([3], r"spec.allowedNamespaces\[0\]: 3"),
])
def test_allowed_namespaces_parse_errors_name_the_field(value, path):
    doc = {"apiVersion": "kadense.io/v1", "kind": "JupyterNotebookTemplate",
           "metadata": {"name": "t", "namespace": "hub"}, "spec": {"allowedNamespaces": value}}
    with pytest.raises(ModelError, match=path):
        Template.from_dict(doc)


def test_the_seed_template_parses_unchanged_and_keeps_its_own_namespace():
    seed = Template.from_dict(load_example("seed-template.yaml"))
    assert seed.allowed_namespaces is None
    assert trust.allowed_namespaces(seed) == ("kadense",)
    assert Template.from_dict(shared_template(load_example("seed-template.yaml"))
                              ).allowed_namespaces == ("*",)


# ---- 2. which kinds a template may make --------------------------------------------------------


@pytest.mark.parametrize(("kind", "resource"), [
    ("ConfigMap", "configmaps"), ("Service", "services"), ("NetworkPolicy", "networkpolicies"),
    ("Ingress", "ingresses"), ("Endpoints", "endpoints"), ("RoleBinding", "rolebindings"),
])
def test_kinds_match_resources_as_kubernetes_guesses_them(kind, resource):
    assert trust.guess_resource(kind) == resource


@pytest.mark.parametrize(("text", "rule"), [
    ("configmaps", KindRule("", resource="configmaps")),
    ("deployments.apps", KindRule("apps", resource="deployments")),
    (f"rolebindings.{RBAC}", KindRule(RBAC, resource="rolebindings")),
    ("ConfigMap", KindRule("", kind="ConfigMap")),
    ("NetworkPolicy.networking.k8s.io", KindRule("networking.k8s.io", kind="NetworkPolicy")),
])
def test_allow_list_entries_are_written_as_kubectl_writes_them(text, rule):
    assert KindRule.parse(text) == rule
    assert str(rule) == text


@pytest.mark.parametrize("text", ["", "*", "*.apps", "apps/v1", "config maps"])
def test_wildcards_and_odd_entries_are_refused(text):
    with pytest.raises(ValueError, match="RESOURCE"):
        KindRule.parse(text)


def test_group_must_match_exactly():
    policy = TrustPolicy.from_flags(["deployments.apps"])
    assert policy.allows_kind("apps", "Deployment")
    assert not policy.allows_kind("", "Deployment")
    assert not policy.allows_kind("apps", "StatefulSet")


def rendered(others: list[dict]):
    return render(template("users", others=others), instance("users", template_ns="users"))


CONFIG_MAP = {"name": "settings", "apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}
ROLE_BINDING = {"name": "grant", "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}]}
TOKEN_SECRET = {"name": "token", "apiVersion": "v1", "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "annotations": {"kubernetes.io/service-account.name": "default"}}


def test_pods_and_pvcs_are_always_allowed_other_kinds_only_when_listed():
    objects = rendered([CONFIG_MAP]).objects()
    problems = trust.kind_problems(objects, TrustPolicy())
    assert len(problems) == 1
    assert problems[0].startswith("spec.otherResources[settings] (v1 ConfigMap): kind not in")
    assert "`--other-resource-kind configmaps`" in problems[0]
    assert "otherResourceKinds" in problems[0]
    assert trust.kind_problems(objects, TrustPolicy.from_flags(["configmaps"])) == []
    assert trust.kind_problems(objects, TrustPolicy.from_flags(["ConfigMap"])) == []


@pytest.mark.parametrize("entry", [ROLE_BINDING, TOKEN_SECRET])
def test_kinds_that_grant_rights_need_the_opt_in_even_when_listed(entry):
    objects = rendered([entry]).objects()
    listed = TrustPolicy.from_flags([f"rolebindings.{RBAC}", "secrets"])
    (problem,) = trust.kind_problems(objects, listed)
    assert f"spec.otherResources[{entry['name']}]" in problem and "--allow-rbac-kinds" in problem
    assert "allowRbacKinds" in problem
    opted_in = TrustPolicy.from_flags([f"rolebindings.{RBAC}", "secrets"], allow_rbac_kinds=True)
    assert trust.kind_problems(objects, opted_in) == []
    # The opt-in alone does not list a kind.
    assert trust.kind_problems(objects, TrustPolicy(allow_rbac_kinds=True)) != []


def test_an_opaque_secret_is_an_ordinary_kind():
    opaque = {**TOKEN_SECRET, "type": "Opaque"}
    assert trust.kind_problems(rendered([opaque]).objects(),
                               TrustPolicy.from_flags(["secrets"])) == []


def test_check_kinds_lists_every_refused_entry_in_one_message():
    with pytest.raises(trust.TrustError) as err:
        trust.check_kinds("users/tpl", rendered([CONFIG_MAP, ROLE_BINDING]).objects(),
                          TrustPolicy())
    assert err.value.reason == "KindNotAllowed"
    assert str(err.value).startswith("template users/tpl: 2 entries refused:")
    assert "[settings]" in str(err.value) and "[grant]" in str(err.value)


# ---- 3. which Secrets variablesFrom may read ---------------------------------------------------


def secret(name: str, labels: dict | None = None, annotations: dict | None = None,
           owners: list[str] = ()) -> dict:
    meta: dict = {"name": name, "namespace": "users", "labels": labels or {},
                  "annotations": annotations or {}}
    if owners:
        meta["ownerReferences"] = [{"kind": "JupyterNotebookInstance", "uid": u} for u in owners]
    return {"metadata": meta, "data": {}}


def test_the_instances_own_hub_secret_is_readable():
    inst = instance(uid="uid-a")
    assert trust.secret_allows(secret("alice-hub"), "alice-hub", inst)
    assert trust.secret_allows(secret("alice-hub", owners=["uid-a"]), "alice-hub", inst)


def test_a_hub_secret_owned_by_another_object_is_not_the_instances():
    assert not trust.secret_allows(secret("alice-hub", owners=["uid-old"]), "alice-hub",
                                   instance(uid="uid-a"))


def test_another_instances_hub_secret_and_unlabelled_secrets_are_refused():
    inst = instance()
    assert not trust.secret_allows(secret("bob-hub"), "bob-hub", inst)
    assert not trust.secret_allows(secret("db-password"), "db-password", inst)
    assert not trust.secret_allows(secret("db", labels={VARIABLES_FROM: "false"}), "db", inst)
    assert not trust.secret_allows(secret("db", labels={VARIABLES_FROM: "bob"}), "db", inst)


def test_labelled_or_annotated_secrets_are_readable_by_all_or_by_the_named_instance():
    inst = instance()
    assert trust.secret_allows(secret("db", labels={VARIABLES_FROM: "true"}), "db", inst)
    assert trust.secret_allows(secret("db", annotations={VARIABLES_FROM: "true"}), "db", inst)
    assert trust.secret_allows(secret("db", labels={VARIABLES_FROM: "alice"}), "db", inst)


def test_the_spawners_secret_is_labelled_for_its_instance_only():
    body = manifests.secret_body("alice", "users", {"JUPYTERHUB_API_TOKEN": "t"})
    assert body["metadata"]["labels"][VARIABLES_FROM] == "alice"
    assert trust.secret_allows(body, "alice-hub", instance(name="alice"))
    assert not trust.secret_allows(body, "alice-hub", instance(name="bob"))
    long_name = "x" * 80  # a named server: the label is shortened, and still matches
    body = manifests.secret_body(long_name, "users", {})
    assert trust.secret_allows(body, "other-name", instance(name=long_name))


def test_secret_refusal_names_the_secret_and_the_label_never_a_value():
    inst = instance(secrets=("alice-hub", "db-password"))
    values = secret("db-password")
    values["data"] = {"password": "czNjcjN0"}
    with pytest.raises(secretvars.SecretVariablesError) as err:
        secretvars.secret_variables(inst, [secret("alice-hub"), values])
    assert err.value.reason == "SecretNotAllowed"
    message = str(err.value)
    assert "Secret users/db-password (spec.variablesFrom[1].secretRef.name)" in message
    assert f'{VARIABLES_FROM}: "true"' in message and "alice-hub" in message
    assert "czNjcjN0" not in message and "s3cr3t" not in message


# ---- the reconciler: a condition, an Event, no engine call -------------------------------------


def seed_pair(template_doc: dict | None = None) -> tuple[KubeRecorder, EngineRecorder]:
    inst = load_example("seed-instance.yaml")
    inst["metadata"].pop("resourceVersion")
    kube = KubeRecorder(inst, template_doc or load_example("seed-template.yaml"))
    return kube, EngineRecorder()


def reconciler(kube, engine, policy: TrustPolicy | None = None) -> Reconciler:
    return Reconciler(kube, engine, ReconcileConfig(trust_policy=policy or TrustPolicy()),
                      pod_lookup=lambda ns, name: None, drift=DriftFlags(),
                      clock=lambda: "2026-01-01T00:00:05Z")


def test_the_seed_instance_is_refused_its_template_of_another_namespace_until_allowed():
    kube, engine = seed_pair()
    result = reconciler(kube, engine).reconcile(KEY)
    assert result.action == "TemplateNotAllowed" and result.requeue_after
    assert engine.calls == []
    assert not [c for c in kube.calls if c[0] in ("get_secret", "add_finalizer")]
    cond = kube.condition("Provisioned")
    assert cond["status"] == "False" and cond["reason"] == "TemplateNotAllowed"
    assert f"namespace {NS}" in cond["message"] and "kadense/default-template" in cond["message"]
    assert kube.status["podsProvisioned"] == "Failed"
    assert [e[:2] for e in kube.events] == [("Warning", "TemplateNotAllowed")]
    kube.templates["kadense/default-template"] = shared_template(
        load_example("seed-template.yaml"), (NS,))
    assert reconciler(kube, engine).reconcile(KEY).action == "provisioned"


def kinds_template() -> dict:
    doc = shared_template(load_example("seed-template.yaml"))
    doc["spec"]["otherResources"] = [copy.deepcopy(CONFIG_MAP), copy.deepcopy(ROLE_BINDING)]
    return doc


def test_a_kind_outside_the_allow_list_is_refused_before_the_engine():
    kube, engine = seed_pair(kinds_template())
    result = reconciler(kube, engine).reconcile(KEY)
    assert result.action == "KindNotAllowed" and engine.calls == []
    cond = kube.condition("Provisioned")
    assert cond["status"] == "False" and "spec.otherResources[settings]" in cond["message"]
    # Listed, without the opt-in: the RoleBinding is still refused.
    listed = TrustPolicy.from_flags(["configmaps", f"rolebindings.{RBAC}"])
    kube, engine = seed_pair(kinds_template())
    assert reconciler(kube, engine, listed).reconcile(KEY).action == "KindNotAllowed"
    assert "--allow-rbac-kinds" in kube.condition("Provisioned")["message"]
    assert engine.calls == []
    opted_in = TrustPolicy.from_flags(["configmaps", f"rolebindings.{RBAC}"], True)
    kube, engine = seed_pair(kinds_template())
    assert reconciler(kube, engine, opted_in).reconcile(KEY).action == "provisioned"


def test_a_running_server_whose_template_becomes_refused_keeps_running_and_says_so():
    kube, engine = seed_pair(shared_template(load_example("seed-template.yaml")))
    rec = reconciler(kube, engine)
    assert rec.reconcile(KEY).action == "provisioned"
    kube.templates["kadense/default-template"] = kinds_template()
    kube.templates["kadense/default-template"]["metadata"]["generation"] = 5
    assert rec.reconcile(KEY).action == "KindNotAllowed"
    assert len(engine.ups()) == 1
    assert kube.condition("Provisioned")["status"] == "True"
    current = kube.condition("TemplateCurrent")
    assert current["status"] == "False" and current["reason"] == "KindNotAllowed"
    assert "left as it is" in current["message"]


def test_the_noop_path_never_answers_for_a_refused_template():
    from jupyternetes.controller import noop

    kube, _ = seed_pair()
    obj = kube.instances[KEY]
    common = dict(secret_variables=frozenset(), settings_fingerprint={},
                  template_rollout="next-start", get_secret=lambda ns, name: None,
                  pod_lookup=lambda ns, name: None, now="2026-01-01T00:00:05Z")
    assert noop.unchanged(obj, load_example("seed-template.yaml"), **common) is False
    assert noop.unchanged(obj, kinds_template(), **common,
                          trust_policy=TrustPolicy()) is False


def test_an_unlabelled_secret_is_refused_with_a_condition_and_no_engine_call():
    inst = load_example("seed-instance.yaml")
    inst["metadata"].pop("resourceVersion")
    inst["spec"]["variablesFrom"] = [{"secretRef": {"name": "db-password"}}]
    kube = KubeRecorder(inst, shared_template(load_example("seed-template.yaml")))
    kube.get_secret = lambda ns, name: secret(name)  # type: ignore[attr-defined]
    engine = EngineRecorder()
    result = reconciler(kube, engine).reconcile(KEY)
    assert result.action == "SecretNotAllowed" and result.failed
    assert engine.calls == []
    cond = kube.condition("Provisioned")
    assert cond["status"] == "False" and cond["reason"] == "SecretNotAllowed"
    assert f"Secret {NS}/db-password" in cond["message"]
