"""render/objects.py: the seed's must-shows, the placeholder grammar, built-ins, labels and
errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND, TEMPLATE_KIND
from jupyternetes.crd.labels import MANAGED_BY
from jupyternetes.crd.model import Instance, Template
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError, substitute

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_NAME = "8dc366d8a0f05869bfdb6e7eb3d83f65"


def doc(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def seed() -> tuple[Template, Instance]:
    return (Template.from_dict(doc("seed-template.yaml")),
            Instance.from_dict(doc("seed-instance.yaml")))


def env_of(pod: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def make(spec: dict, variables: dict[str, str] | None = None, name: str = "inst",
         template_ns: str | None = None) -> tuple[Template, Instance]:
    template = Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"}, "spec": spec})
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"template": {"name": "t", "namespace": template_ns},
                 "variables": variables or {}}})
    return template, instance


def one_value(text: str, variables: dict[str, str] | None = None) -> str:
    template, instance = make({"pvcs": [{"name": "p", "annotations": {"a": text}}]}, variables)
    return render(template, instance).pvcs[0].manifest["metadata"]["annotations"]["a"]


# ---- the seed's must-shows -------------------------------------------------------------------


def test_seed_pvc():
    rendered = render(*seed())
    assert len(rendered.pvcs) == 1
    pvc = rendered.pvcs[0].manifest
    assert pvc["apiVersion"] == "v1" and pvc["kind"] == "PersistentVolumeClaim"
    assert pvc["metadata"]["name"] == f"{SEED_NAME}-workspace"
    assert pvc["metadata"]["namespace"] == "default"
    assert pvc["metadata"]["labels"]["jupyternetes.kadense.io/userId"] == "1"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_seed_pod():
    rendered = render(*seed())
    assert len(rendered.pods) == 1
    obj = rendered.pods[0]
    pod = obj.manifest
    assert (obj.kind, obj.api_version, obj.name, obj.namespace) == (
        "Pod", "v1", f"{SEED_NAME}-notebook", "default")
    volume = pod["spec"]["volumes"][0]
    assert volume["name"] == "workspace-pvc"
    assert volume["persistentVolumeClaim"]["claimName"] == rendered.pvcs[0].name
    env = env_of(pod)
    assert env["JUPYTERHUB_USER"] == "jovyan"
    assert env["JUPYTERHUB_API_URL"] == "http://hub.kadense.svc.cluster.local:8081/hub/api"
    assert env["JUPYTERHUB_OAUTH_SCOPES"] == (
        '["access:servers!server=jovyan/", "access:servers!user=jovyan"]')
    assert env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"] == env["JUPYTERHUB_OAUTH_SCOPES"]
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/jovyan/"
    assert env["JUPYTERHUB_HOST"] is None  # entries without a value stay without one
    assert env["JPY_API_TOKEN"] == "852dc4bd4e4e4360b7ae94cffa4f1c76"
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {"mountPath": "/home/jovyan/work", "name": "workspace-pvc"}
    assert pod["metadata"]["labels"]["jupyternetes.kadense.io/userId"] == "1"


def test_seed_contract_labels_and_order():
    rendered = render(*seed())
    assert [o.group for o in rendered.objects()] == ["pvcs", "pods"]
    assert rendered.manifests() == [o.manifest for o in rendered.objects()]
    labels = rendered.pods[0].manifest["metadata"]["labels"]
    assert labels == {
        "jupyternetes.kadense.io/userId": "1",
        "jupyternetes.kadense.io/instance": SEED_NAME,
        "jupyternetes.kadense.io/instanceNamespace": "default",
        "jupyternetes.kadense.io/template": "default-template",
        "jupyternetes.kadense.io/templateNamespace": "kadense",
        "jupyternetes.kadense.io/entry": "notebook",
        "jupyternetes.kadense.io/entryGroup": "pods",
        MANAGED_BY[0]: MANAGED_BY[1],
    }
    for obj in rendered.objects():
        assert "status" not in obj.manifest
        assert not any(k.startswith("pulumi.com/") for k in obj.manifest["metadata"]["annotations"])


def test_render_does_not_mutate_inputs():
    template, instance = seed()
    before = copy.deepcopy(template.pods[0].spec)
    render(template, instance)
    assert template.pods[0].spec == before


# ---- grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{x}", "X"),
        ("a{x}b{x}", "aXbX"),
        ("{X}", "X"),  # lookup is case-insensitive
        ("{{x}}", "{x}"),  # escapes
        ("{{{x}}}", "{X}"),
        ("{{", "{"),
        ("}}", "}"),
        ("{", "{"),
        ("}", "}"),
        ("{}", "{}"),
        ("{ x }", "{ x }"),
        ("{a b}", "{a b}"),
        ('{"k": "{x}"}', '{"k": "X"}'),  # JSON in a string just works
        ("{x}}", "X}"),
        ("{{x}", "{x}"),
        ("{x.y_z-1}", "V"),
    ],
)
def test_grammar(text, expected):
    assert substitute(text, {"x": "X", "x.y_z-1": "V"}, "p", []) == expected


def test_value_is_not_rescanned():
    assert one_value("{a}", {"a": "{b}", "b": "no"}) == "{b}"
    assert one_value("{a}", {"a": "{{"}) == "{{"


def test_mapping_keys_are_substituted_but_not_rescanned():
    template, instance = make(
        {"pvcs": [{"name": "p", "spec": {"{k}": {"{k}-inner": "{v}"}}}]},
        {"k": "key", "v": "{k}"})
    spec = render(template, instance).pvcs[0].manifest["spec"]
    assert spec == {"key": {"key-inner": "{k}"}}


def test_keys_rendering_to_the_same_value_fail():
    template, instance = make({"pvcs": [{"name": "p", "spec": {"{a}": 1, "same": 2}}]},
                              {"a": "same"})
    with pytest.raises(RenderError, match="another key"):
        render(template, instance)


def test_non_string_values_untouched():
    template, instance = make({"pvcs": [{"name": "p", "spec": {"n": 3, "b": True, "z": None,
                                                                "f": 1.5}}]})
    assert render(template, instance).pvcs[0].manifest["spec"] == {
        "n": 3, "b": True, "z": None, "f": 1.5}


# ---- built-ins -------------------------------------------------------------------------------


def test_builtins_and_cross_references():
    spec = {
        "pvcs": [{"name": "data"}],
        "pods": [{"name": "nb", "spec": {"refs": [
            "{jupyternetes.instance.name}", "{jupyternetes.instance.namespace}",
            "{jupyternetes.template.name}", "{jupyternetes.template.namespace}",
            "{jupyternetes.pvcs.data}", "{jupyternetes.pods.nb}",
            "{JUPYTERNETES.otherResources.svc}", "{jupyternetes.otherresources.svc}"]}}],
        "otherResources": [{"name": "svc", "apiVersion": "v1", "kind": "Service"}],
    }
    template, instance = make(spec)
    rendered = render(template, instance)
    assert rendered.pods[0].manifest["spec"]["refs"] == [
        "inst", "ns", "t", "ns", "inst-data", "inst-nb", "inst-svc", "inst-svc"]
    assert [o.name for o in rendered.objects()] == ["inst-data", "inst-nb", "inst-svc"]
    svc = rendered.other_resources[0]
    assert (svc.kind, svc.api_version, svc.group, svc.entry) == ("Service", "v1",
                                                                 "otherResources", "svc")
    assert svc.manifest["metadata"]["labels"]["jupyternetes.kadense.io/entryGroup"] == (
        "otherResources")


def test_builtins_win_over_instance_variables():
    template, instance = make({"pvcs": [{"name": "p", "annotations": {
        "a": "{jupyternetes.instance.name}"}}]}, {"jupyternetes.instance.name": "liar"})
    assert render(template, instance).pvcs[0].manifest["metadata"]["annotations"]["a"] == "inst"


def test_contract_labels_win_over_entry_labels():
    template, instance = make({"pvcs": [{"name": "p", "labels": {
        "jupyternetes.kadense.io/instance": "other", "mine": "{v}"}}]}, {"v": "yes"})
    labels = render(template, instance).pvcs[0].manifest["metadata"]["labels"]
    assert labels["jupyternetes.kadense.io/instance"] == "inst"
    assert labels["mine"] == "yes"


def test_long_instance_name_gives_valid_labels_and_names():
    long_name = "a" * 120 + ".example"
    template, instance = make({"pods": [{"name": "nb"}]}, name=long_name)
    obj = render(template, instance).pods[0]
    assert len(obj.name) <= 63
    assert len(obj.manifest["metadata"]["labels"]["jupyternetes.kadense.io/instance"]) <= 63


# ---- errors ----------------------------------------------------------------------------------


def test_every_unknown_placeholder_reported_with_path():
    template, instance = seed()
    doc_i = doc("seed-instance.yaml")
    del doc_i["spec"]["variables"]["jupyterhub.user.name"]
    del doc_i["spec"]["variables"]["jupyterhub.user.id"]
    instance = Instance.from_dict(doc_i)
    with pytest.raises(RenderError) as err:
        render(template, instance)
    missing = err.value.missing
    assert ("jupyterhub.user.id", 'spec.pvcs[workspace].labels["jupyternetes.kadense.io/userId"]'
            ) in missing
    assert ("jupyterhub.user.name", "spec.pods[notebook].spec.containers[0].env[1].value"
            ) in missing
    assert ("jupyterhub.user.name",
            "spec.pods[notebook].spec.containers[0].volumeMounts[0].mountPath") in missing
    assert {name for name, _ in missing} == {"jupyterhub.user.id", "jupyterhub.user.name"}
    # 2 labels + 9 env values with the user name + the mount path
    assert len(missing) == 12
    message = str(err.value)
    assert "unknown placeholder(s) jupyterhub.user.id, jupyterhub.user.name" in message
    assert "spec.pods[notebook].spec.containers[0].env[1].value" in message
    assert f"default/{SEED_NAME}" in message


def test_unknown_placeholder_in_key_has_key_path():
    template, instance = make({"pvcs": [{"name": "p", "spec": {"a": {"{nope}": 1}}}]})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    assert err.value.missing == (("nope", 'spec.pvcs[p].spec.a["{nope}"] (key)'),)


def test_template_name_mismatch():
    template, instance = make({}, template_ns="ns")
    other = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "i", "namespace": "ns"}, "spec": {"template": {"name": "u"}}})
    with pytest.raises(RenderError, match=r"references template ns/u.*template given is ns/t"):
        render(template, other)
    wrong_ns = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "i", "namespace": "ns"},
        "spec": {"template": {"name": "t", "namespace": "elsewhere"}}})
    with pytest.raises(RenderError, match="references template elsewhere/t"):
        render(template, wrong_ns)
    render(template, instance)  # same name and namespace renders


# ---- otherResources without spec: further top-level fields -----------------------------------


def test_configmap_with_data_and_placeholder():
    template, instance = make({"otherResources": [{
        "name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
        "labels": {"app": "{v}"},
        "data": {"user": "{v}", "{v}.json": '{"owner": "{v}"}', "literal": "{{v}}"},
        "immutable": True,
    }]}, {"v": "alice"})
    cm = render(template, instance).other_resources[0].manifest
    assert cm["data"] == {"user": "alice", "alice.json": '{"owner": "alice"}', "literal": "{v}"}
    assert cm["immutable"] is True
    assert "spec" not in cm  # a ConfigMap has no spec, so none is invented
    assert set(cm) == {"apiVersion", "kind", "metadata", "data", "immutable"}
    assert cm["metadata"]["name"] == "inst-settings"
    assert cm["metadata"]["labels"]["app"] == "alice"


def test_rolebinding_and_secret_fields():
    template, instance = make({"otherResources": [
        {"name": "reader", "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                    "resourceNames": ["{jupyternetes.otherResources.token}"]}]},
        {"name": "read", "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "subjects": [{"kind": "ServiceAccount", "name": "{jupyternetes.otherResources.sa}",
                       "namespace": "{jupyternetes.instance.namespace}"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "{jupyternetes.otherResources.reader}"}},
        {"name": "sa", "apiVersion": "v1", "kind": "ServiceAccount"},
        {"name": "token", "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "stringData": {"token": "{t}"}},
    ]}, {"t": "s3cret"})
    role, binding, sa, secret = (o.manifest for o in render(template, instance).other_resources)
    assert role["rules"][0]["resourceNames"] == ["inst-token"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "inst-sa",
                                    "namespace": "ns"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "inst-reader"}
    assert set(sa) == {"apiVersion", "kind", "metadata"}
    assert secret["type"] == "Opaque" and secret["stringData"] == {"token": "s3cret"}
    assert "spec" not in binding and "spec" not in secret


def test_unknown_placeholder_in_body_field_has_path():
    template, instance = make({"otherResources": [{
        "name": "cm", "apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "{nope}"}}]})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    assert err.value.missing == (("nope", "spec.otherResources[cm].data.k"),)


def test_spec_kept_for_other_resources_that_write_it():
    template, instance = make({"otherResources": [
        {"name": "svc", "apiVersion": "v1", "kind": "Service", "spec": {}},
        {"name": "cr", "apiVersion": "example.com/v1", "kind": "Thing",
         "spec": {"size": 1}, "extra": {"who": "{jupyternetes.instance.name}"}}]})
    svc, cr = (o.manifest for o in render(template, instance).other_resources)
    assert svc["spec"] == {}
    assert cr["spec"] == {"size": 1} and cr["extra"] == {"who": "inst"}


# ---- Service names: DNS-1035 ------------------------------------------------------------------


def test_service_of_seed_style_instance_gets_a_leading_letter():
    template = Template.from_dict(doc("service-template.yaml"))
    instance_doc = doc("service-instance.yaml")
    instance_doc["metadata"]["name"] = SEED_NAME  # what the hub names jovyan's server
    rendered = render(template, Instance.from_dict(instance_doc))
    by_entry = {o.entry: o for o in rendered.objects()}
    assert by_entry["http"].name == f"j-{SEED_NAME}-http"
    # Other kinds keep `<instance>-<entry>`; the ConfigMap example renders too.
    assert by_entry["notebook"].name == f"{SEED_NAME}-notebook"
    assert by_entry["settings"].name == f"{SEED_NAME}-settings"
    assert "spec" not in by_entry["settings"].manifest


def test_service_reference_matches_service_name():
    template, instance = make({
        "pods": [{"name": "nb", "spec": {"url": "http://{jupyternetes.otherResources.web}"}}],
        "otherResources": [{"name": "web", "apiVersion": "v1", "kind": "Service"}],
    }, name="0abc")
    rendered = render(template, instance)
    assert rendered.other_resources[0].name == "j-0abc-web"
    assert rendered.pods[0].manifest["spec"]["url"] == "http://j-0abc-web"


def test_letter_started_service_names_unchanged():
    template, instance = make({"otherResources": [
        {"name": "web", "apiVersion": "v1", "kind": "Service"}]}, name="alice-lab")
    assert render(template, instance).other_resources[0].name == "alice-lab-web"


# ---- labels and annotations are checked after substitution -------------------------------------


def test_label_value_from_variable_must_be_a_label_value():
    template, instance = make({"pods": [{"name": "nb", "labels": {
        "example.com/user": "{email}", "ok": "{v}"}}]}, {"email": "alice@example.com", "v": "a"})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    message = str(err.value)
    assert 'spec.pods[nb].labels["example.com/user"]' in message
    assert "'alice@example.com'" in message
    assert "not a valid label value" in message and "annotations" in message
    assert "ns/inst" in message
    assert "ok" not in message.split("substitution:")[1]


def test_too_long_label_value_rejected():
    template, instance = make({"pvcs": [{"name": "p", "labels": {"l": "{v}"}}]}, {"v": "a" * 64})
    with pytest.raises(RenderError, match=r"spec\.pvcs\[p\]\.labels\.l: value renders to"):
        render(template, instance)


@pytest.mark.parametrize("key", ["{v}", "example.com/{v}", "{v}/x"])
def test_keys_must_be_qualified_names(key):
    template, instance = make({"pvcs": [{"name": "p", "annotations": {key: "any text: {v}"},
                                         "labels": {key: "fine"}}]}, {"v": "has space"})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    message = str(err.value)
    assert message.count("key renders to") == 2
    assert f"spec.pvcs[p].annotations[\"{key}\"]" in message
    assert f"spec.pvcs[p].labels[\"{key}\"]" in message
    assert "qualified name" in message


def test_valid_keys_and_any_annotation_value_render():
    template, instance = make({"pvcs": [{"name": "p",
                                         "annotations": {"example.com/{v}": "a b: {{c}} é"},
                                         "labels": {"{v}": "{v}", "x.y/z_1": ""}}]}, {"v": "a.b"})
    meta = render(template, instance).pvcs[0].manifest["metadata"]
    assert meta["annotations"] == {"example.com/a.b": "a b: {c} é"}
    assert meta["labels"]["a.b"] == "a.b" and meta["labels"]["x.y/z_1"] == ""


def test_missing_placeholders_reported_before_label_checks():
    template, instance = make({"pvcs": [{"name": "p", "labels": {"l": "{nope}"}}]})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    assert err.value.missing == (("nope", "spec.pvcs[p].labels.l"),)


def test_pods_and_other_resources_are_owned_by_their_instance_and_pvcs_never():
    import dataclasses

    template, instance = seed()
    assert instance.uid  # read from the API (the seed is `kubectl get -o yaml` output)
    template = dataclasses.replace(template, other_resources=Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t"}, "spec": {"otherResources": [
            {"name": "svc", "apiVersion": "v1", "kind": "Service", "spec": {"ports": []}},
            {"name": "cm", "apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}},
            {"name": "rb", "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "r"}, "subjects": []}]}}).other_resources)
    rendered = render(template, instance)
    owner = [{"apiVersion": API_VERSION, "kind": INSTANCE_KIND,
              "name": instance.name, "uid": instance.uid, "controller": True,
              "blockOwnerDeletion": False}]
    assert len(rendered.pods) == 1 and len(rendered.other_resources) == 3
    for obj in rendered.pods + rendered.other_resources:
        assert obj.manifest["metadata"]["ownerReferences"] == owner, obj.kind
    assert rendered.pvcs and all("ownerReferences" not in o.manifest["metadata"]
                                 for o in rendered.pvcs)
    offline = render(template, dataclasses.replace(instance, uid=None))
    assert all("ownerReferences" not in o.manifest["metadata"]
               for o in offline.objects())


def test_owner_reference_is_not_part_of_the_desired_hash():
    import dataclasses

    from jupyternetes.policy.rollout import desired_hash

    template, instance = seed()
    with_owner = render(template, instance)
    without = render(template, dataclasses.replace(instance, uid=None))
    assert desired_hash(with_owner, (), {}) == desired_hash(without, (), {})


def test_every_object_carries_the_instances_account_and_only_that():
    """The account label comes from the instance (the spawner's), never from a template."""
    from jupyternetes.crd.labels import LABEL_ACCOUNT

    tpl_doc, inst_doc = doc("seed-template.yaml"), doc("seed-instance.yaml")
    tpl_doc["spec"]["pvcs"][0].setdefault("labels", {})[LABEL_ACCOUNT] = "forged"
    template = Template.from_dict(tpl_doc)
    inst_doc["metadata"].setdefault("labels", {})[LABEL_ACCOUNT] = "acc1"
    rendered = render(template, Instance.from_dict(inst_doc))
    assert {o.manifest["metadata"]["labels"][LABEL_ACCOUNT] for o in rendered.objects()} == {
        "acc1"}
    unbound = render(template, Instance.from_dict(doc("seed-instance.yaml")))
    assert all(LABEL_ACCOUNT not in o.manifest["metadata"]["labels"]
               for o in unbound.objects())
