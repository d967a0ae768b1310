"""spec.variablesFrom: parsing, reading Secrets into variables, conflicts, rendering, hashing, and
the reconcile decisions (missing Secret, changed value) with recorders for the edges."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml

from harness.examples import shared_template
from jupyternetes.controller.reconcile import ReconcileConfig, Reconciler, desired_hash
from jupyternetes.crd.labels import LABEL_INSTANCE, LABEL_INSTANCE_NAMESPACE, VARIABLES_FROM
from jupyternetes.crd.model import Instance, ModelError, SecretRef, Template
from jupyternetes.render import secretvars
from jupyternetes.render.objects import render
from tests.unit.test_crds import INSTANCE_CRD, TEMPLATE_CRD, errors, pruned, schema_of
from tests.unit.test_reconcile_unit import KEY, NAME, NS, EngineRecorder, KubeRecorder

# A pod the stack made carries its instance's labels (the preflight ownership check reads them).
OWN_LABELS = {LABEL_INSTANCE: NAME, LABEL_INSTANCE_NAMESPACE: NS}

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "0c1b2d3e4f5a69788796a5b4c3d2e1f0"
SECRET = f"{NAME}-hub"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_obj(name: str = SECRET, ns: str = NS, **data: str) -> dict:
    """A Secret variablesFrom may read: the instance's `<instance>-hub`, or labelled for it."""
    labels = {} if name == SECRET else {VARIABLES_FROM: "true"}
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": {k: b64(v) for k, v in data.items()}}


def instance_doc(refs: list, variables: dict | None = None) -> dict:
    doc = example("seed-instance.yaml")
    doc["metadata"].pop("resourceVersion")
    if variables is not None:
        doc["spec"]["variables"] = variables
    else:
        del doc["spec"]["variables"]["jupyterhub.api_token"]
    doc["spec"]["variablesFrom"] = refs
    return doc


def ref(name: str) -> dict:
    return {"secretRef": {"name": name}}


# ---- model ----------------------------------------------------------------------------------


def test_variables_from_parses_in_order():
    inst = Instance.from_dict(instance_doc([ref("a-hub"), ref("b.extra")]))
    assert inst.secret_refs == (SecretRef("a-hub"), SecretRef("b.extra"))
    assert Instance.from_dict(example("seed-instance.yaml")).secret_refs == ()


@pytest.mark.parametrize(("refs", "path", "text"), [
    ("x", "spec.variablesFrom", "must be a list"),
    (["x"], "spec.variablesFrom[0]", "must be an object"),
    ([{}], "spec.variablesFrom[0].secretRef", "required object is missing"),
    ([{"secretRef": {}}], "spec.variablesFrom[0].secretRef.name", "required string"),
    ([{"secretRef": {"name": 3}}], "spec.variablesFrom[0].secretRef.name", "must be a string"),
    ([ref("ok"), ref("Not_Valid")], "spec.variablesFrom[1].secretRef.name",
     "not a valid Secret name"),
    ([ref("a"), ref("a")], "spec.variablesFrom[1].secretRef.name",
     "already referenced at spec.variablesFrom[0]"),
    ([{"configMapRef": {"name": "x"}}], "spec.variablesFrom[0].configMapRef", "unknown field"),
])
def test_variables_from_errors_name_the_field(refs, path, text):
    with pytest.raises(ModelError) as err:
        Instance.from_dict(instance_doc(refs), source="default/x")
    assert f"instance default/x: {path}: " in str(err.value)
    assert text in str(err.value)


# ---- CRD ------------------------------------------------------------------------------------


def test_crd_accepts_and_keeps_variables_from():
    doc = example("hub-instance.yaml")
    assert errors(INSTANCE_CRD, doc) == []
    assert pruned(schema_of(INSTANCE_CRD), doc) == []
    template = example("hub-template.yaml")
    assert errors(TEMPLATE_CRD, template) == []
    assert pruned(schema_of(TEMPLATE_CRD), template) == []
    bad = copy.deepcopy(doc)
    bad["spec"]["variablesFrom"] = [{"secretRef": {}}]
    assert any("'name' is a required property" in e for e in errors(INSTANCE_CRD, bad))


# ---- Secrets -> variables -------------------------------------------------------------------


def test_every_secret_key_is_a_variable_decoded():
    inst = Instance.from_dict(instance_doc([ref("one"), ref("two")]))
    secrets = [secret_obj("one", **{"jupyterhub.api_token": TOKEN, "JUPYTERHUB_API_TOKEN": TOKEN}),
               secret_obj("two", **{"extra": "é ünïcode\n"})]
    assert secretvars.secret_variables(inst, secrets) == {
        "jupyterhub.api_token": TOKEN, "JUPYTERHUB_API_TOKEN": TOKEN, "extra": "é ünïcode\n"}


def test_missing_secrets_are_all_named_with_their_field_and_what_to_do():
    inst = Instance.from_dict(instance_doc([ref("here"), ref("gone"), ref("gone2")]))
    with pytest.raises(secretvars.SecretVariablesError) as err:
        secretvars.secret_variables(inst, [secret_obj("here"), None, None])
    assert err.value.reason == "SecretMissing"
    text = str(err.value)
    assert f"Secret {NS}/gone (spec.variablesFrom[1].secretRef.name)" in text
    assert f"Secret {NS}/gone2 (spec.variablesFrom[2].secretRef.name)" in text
    assert "Create it in namespace" in text and "here" not in text.split("not found")[0]


def test_variable_defined_in_spec_and_in_a_secret_names_both_places():
    inst = Instance.from_dict(instance_doc([ref("s")], variables={"Jupyterhub.Api_Token": "x"}))
    with pytest.raises(secretvars.SecretVariablesError) as err:
        secretvars.secret_variables(inst, [secret_obj("s", **{"jupyterhub.api_token": TOKEN})])
    assert err.value.reason == "DuplicateVariable"
    text = str(err.value)
    assert "spec.variables.Jupyterhub" in text or 'spec.variables["Jupyterhub.Api_Token"]' in text
    assert f"key 'jupyterhub.api_token' of Secret {NS}/s (spec.variablesFrom[0]" in text
    assert TOKEN not in text


def test_variable_defined_in_two_secrets_names_both():
    inst = Instance.from_dict(instance_doc([ref("a"), ref("b")]))
    with pytest.raises(secretvars.SecretVariablesError) as err:
        secretvars.secret_variables(inst, [secret_obj("a", tok="1"), secret_obj("b", TOK="2")])
    text = str(err.value)
    assert "spec.variablesFrom[0]" in text and "spec.variablesFrom[1]" in text
    assert "'tok'" in text and "'TOK'" in text


def test_non_utf8_value_is_an_error_without_the_value():
    inst = Instance.from_dict(instance_doc([ref("bin")]))
    secret = {"metadata": {"name": "bin", "labels": {VARIABLES_FROM: "true"}},
              "data": {"blob": base64.b64encode(b"\xff\xfe secret").decode()}}
    with pytest.raises(secretvars.SecretVariablesError) as err:
        secretvars.secret_variables(inst, [secret])
    assert err.value.reason == "SecretInvalid"
    assert "'blob'" in str(err.value) and "spec.variablesFrom[0]" in str(err.value)


def test_secret_without_data_gives_no_variables():
    inst = Instance.from_dict(instance_doc([ref("empty")]))
    empty = {"metadata": {"name": "empty", "labels": {VARIABLES_FROM: "true"}}}
    assert secretvars.secret_variables(inst, [empty]) == {}


# ---- render and hash ------------------------------------------------------------------------


def rendered_with(token: str):
    inst = Instance.from_dict(instance_doc([ref(SECRET)]))
    extra = secretvars.secret_variables(inst, [secret_obj(**{"JupyterHub.API_Token": token})])
    template = Template.from_dict(example("seed-template.yaml"))
    return render(template, secretvars.with_variables(inst, extra))


def test_secret_variables_render_case_insensitively():
    pod = rendered_with(TOKEN).pods[0].manifest
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == env["JPY_API_TOKEN"] == TOKEN


def test_changed_secret_value_changes_the_desired_hash():
    names = {"jupyterhub.api_token"}
    assert (desired_hash(rendered_with(TOKEN), names, {})
            != desired_hash(rendered_with(TOKEN[::-1]), names, {}))
    assert desired_hash(rendered_with(TOKEN), names, {}) == desired_hash(
        rendered_with(TOKEN), names, {})


def test_hub_example_takes_the_token_from_the_secret_not_in_plain_text():
    inst = Instance.from_dict(example("hub-instance.yaml"))
    secret = example("hub-secret.yaml")
    secret["data"] = {k: b64(v) for k, v in secret.pop("stringData").items()}
    assert inst.secret_refs == (SecretRef(f"{inst.name}-hub"),)
    extra = secretvars.secret_variables(inst, [secret])
    rendered = render(Template.from_dict(example("hub-template.yaml")),
                      secretvars.with_variables(inst, extra))
    token = extra["jupyterhub.api_token"]
    assert token not in yaml.safe_dump(rendered.manifests())
    env = rendered.pods[0].manifest["spec"]["containers"][0]["env"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e]
    assert refs and all(r == {"name": f"{inst.name}-hub", "key": "JUPYTERHUB_API_TOKEN"}
                        for r in refs)


# ---- reconcile ------------------------------------------------------------------------------


class SecretKube(KubeRecorder):
    def __init__(self, instance: dict, template: dict) -> None:
        super().__init__(instance, template)
        self.secrets: dict[str, dict] = {}

    def get_secret(self, namespace, name):
        self.calls.append(("get_secret", namespace, name))
        return copy.deepcopy(self.secrets.get(f"{namespace}/{name}"))


@pytest.fixture
def env():
    kube = SecretKube(instance_doc([ref(SECRET)]), shared_template(example("seed-template.yaml")))
    engine = EngineRecorder()
    reconciler = Reconciler(kube, engine, ReconcileConfig(), pod_lookup=lambda ns, n: None,
                            clock=lambda: "2026-01-01T00:00:05Z")
    return kube, engine, reconciler


def test_missing_secret_says_so_and_retries_then_heals(env):
    kube, engine, reconciler = env
    result = reconciler.reconcile(KEY)
    assert (result.action, result.failed, result.degraded) == ("SecretMissing", True, False)
    assert engine.ups() == []
    cond = kube.condition("Provisioned")
    assert (cond["status"], cond["reason"]) == ("False", "SecretMissing")
    assert f"Secret {NS}/{SECRET} (spec.variablesFrom[0].secretRef.name) not found" in (
        cond["message"])
    assert kube.status["podsProvisioned"] == "Pending"
    assert [e[:2] for e in kube.events] == [("Warning", "SecretMissing")]
    # Said once: a retry that finds the same problem does not add an Event.
    reconciler.reconcile(KEY)
    assert len(kube.events) == 1

    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    assert reconciler.reconcile(KEY).action == "provisioned"
    (_, _, _, _, secrets, _), = engine.ups()
    assert secrets == frozenset({TOKEN})
    assert kube.condition("Provisioned")["status"] == "True"
    assert TOKEN not in yaml.safe_dump(kube.status)


def test_every_secret_value_is_a_pulumi_secret_whatever_its_name(env):
    kube, engine, reconciler = env
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN,
                                                   "jupyterhub.user.name": "jovyan-from-secret"})
    inst = kube.instances[KEY]
    del inst["spec"]["variables"]["jupyterhub.user.name"]
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert engine.ups()[0][4] == frozenset({TOKEN, "jovyan-from-secret"})


def test_changed_secret_value_runs_up_again(env):
    kube, engine, reconciler = env
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    reconciler.reconcile(KEY)
    first = kube.status["stack"]["desiredHash"]
    # No pod in this recorder: make the first up's pod "exist" so the next pass is not drift.
    kube.pods[f"{NS}/{NAME}-notebook"] = {"metadata": {
        "name": f"{NAME}-notebook", "labels": OWN_LABELS}}
    assert reconciler.reconcile(KEY).action == "unchanged"
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": "new-token-value"})
    assert reconciler.reconcile(KEY).action == "provisioned"
    assert kube.status["stack"]["desiredHash"] != first
    assert engine.ups()[-1][4] == frozenset({"new-token-value"})


def test_duplicate_variable_is_reported_not_applied(env):
    kube, engine, reconciler = env
    kube.instances[KEY]["spec"]["variables"]["jupyterhub.api_token"] = "plain"
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    result = reconciler.reconcile(KEY)
    assert result.action == "DuplicateVariable" and engine.ups() == []
    message = kube.condition("Provisioned")["message"]
    assert "spec.variables" in message and "spec.variablesFrom[0]" in message
    assert TOKEN not in message


def test_render_error_message_masks_secret_values(env):
    kube, _, reconciler = env
    # A secret in a label that is not a valid label value: the render error quotes the value.
    template = kube.templates["kadense/default-template"]
    template["spec"]["pods"][0]["labels"]["x"] = "{jupyterhub.api_token}"
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": "not a label!"})
    result = reconciler.reconcile(KEY)
    assert result.action == "render-failed"
    assert "not a label!" not in result.message and "[secret]" in result.message
    assert "not a label!" not in yaml.safe_dump(kube.status)
    assert not [e for e in kube.events if "not a label!" in e[2]]


# ---- secrets in labels ----------------------------------------------------------------------


def test_secret_in_a_label_is_flagged_with_its_template_path(env):
    kube, engine, reconciler = env
    template = kube.templates["kadense/default-template"]
    template["spec"]["pods"][0]["labels"]["example.com/t"] = "{jupyterhub.api_token}"
    template["spec"]["pods"][0]["annotations"] = {"example.com/a": "token {jupyterhub.api_token}"}
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    assert reconciler.reconcile(KEY).action == "provisioned"
    # Applied as the template says (a secret value of the up, wrapped by the program).
    pod = engine.ups()[0][3].pods[0].manifest
    assert pod["metadata"]["labels"]["example.com/t"] == TOKEN
    exposed = kube.condition("SecretExposed")
    assert (exposed["status"], exposed["reason"]) == ("True", "SecretInLabel")
    assert 'spec.pods[notebook].labels["example.com/t"]' in exposed["message"]
    assert "annotations" not in exposed["message"].split("labels")[0]
    assert TOKEN not in exposed["message"]
    assert [e[1] for e in kube.events].count("SecretExposed") == 1


def test_no_secret_in_labels_is_secret_exposed_false(env):
    kube, _, reconciler = env
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    reconciler.reconcile(KEY)
    assert kube.condition("SecretExposed")["status"] == "False"
    assert "SecretExposed" not in [e[1] for e in kube.events]


def test_secret_gone_under_a_running_server_leaves_it_running(env):
    kube, engine, reconciler = env
    kube.secrets[f"{NS}/{SECRET}"] = secret_obj(**{"jupyterhub.api_token": TOKEN})
    reconciler.reconcile(KEY)
    kube.pods[f"{NS}/{NAME}-notebook"] = {"metadata": {
        "name": f"{NAME}-notebook", "labels": OWN_LABELS}}
    del kube.secrets[f"{NS}/{SECRET}"]
    result = reconciler.reconcile(KEY)
    assert (result.action, result.failed) == ("SecretMissing", True)
    assert len(engine.ups()) == 1
    assert kube.condition("Provisioned")["status"] == "True"
    current = kube.condition("TemplateCurrent")
    assert (current["status"], current["reason"]) == ("False", "SecretMissing")
    assert "left as it is" in current["message"]
