"""crd/model.py: parsing templates and instances, error messages with paths (status:
test_status)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from jupyternetes.crd.model import Instance, ModelError, Template

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


@pytest.fixture
def template_doc() -> dict:
    return load("seed-template.yaml")


@pytest.fixture
def instance_doc() -> dict:
    return load("seed-instance.yaml")


def test_seed_template_parses(template_doc):
    t = Template.from_dict(template_doc, "seed-template.yaml")
    assert (t.name, t.namespace, t.generation) == ("default-template", "kadense", 4)
    assert t.uid == "6ce0798d-ac32-4f8d-b40c-c47d4c43fd91"
    assert [e.name for e in t.pods] == ["notebook"]
    assert [e.name for e in t.pvcs] == ["workspace"]
    assert t.other_resources == ()
    assert t.pvcs[0].labels == {"jupyternetes.kadense.io/userId": "{jupyterhub.user.id}"}
    assert t.pvcs[0].spec["resources"]["requests"]["storage"] == "1Gi"


def test_seed_instance_parses(instance_doc):
    i = Instance.from_dict(instance_doc)
    assert i.name == "8dc366d8a0f05869bfdb6e7eb3d83f65"
    assert i.namespace == "default"
    assert (i.template.name, i.template.namespace) == ("default-template", "kadense")
    assert i.template_namespace == "kadense"
    assert i.variables["jupyterhub.user.id"] == "1"
    assert (i.generation, i.resource_version) == (1, "344043")
    assert i.deletion_timestamp is None and i.finalizers == ()


def test_template_namespace_defaults_to_instance_namespace(instance_doc):
    del instance_doc["spec"]["template"]["namespace"]
    assert Instance.from_dict(instance_doc).template_namespace == "default"


def test_missing_template_name_names_object_and_path(instance_doc):
    del instance_doc["spec"]["template"]["name"]
    with pytest.raises(ModelError) as err:
        Instance.from_dict(instance_doc)
    assert str(err.value) == (
        "instance default/8dc366d8a0f05869bfdb6e7eb3d83f65: spec.template.name: "
        "required string is missing"
    )


def test_non_string_variable_names_file_and_variable(instance_doc):
    instance_doc["spec"]["variables"]["jupyterhub.user.id"] = 1
    with pytest.raises(ModelError) as err:
        Instance.from_dict(instance_doc, "inst.yaml")
    message = str(err.value)
    assert message.startswith('instance inst.yaml: spec.variables["jupyterhub.user.id"]: ')
    assert "must be a string, got int" in message


def test_variables_differing_only_in_case_are_rejected(instance_doc):
    instance_doc["spec"]["variables"]["JupyterHub.User.Id"] = "2"
    with pytest.raises(ModelError, match="only in case"):
        Instance.from_dict(instance_doc)


@pytest.mark.parametrize("kind", ["JupyterNotebookInstance", "Pod", None])
def test_wrong_kind_for_template(template_doc, kind):
    template_doc["kind"] = kind
    with pytest.raises(ModelError, match="kind: expected 'JupyterNotebookTemplate'"):
        Template.from_dict(template_doc, "t.yaml")


def test_wrong_api_version(instance_doc):
    instance_doc["apiVersion"] = "kadense.io/v2"
    with pytest.raises(ModelError, match="apiVersion"):
        Instance.from_dict(instance_doc)


def test_not_a_mapping():
    with pytest.raises(ModelError, match="expected a YAML/JSON object, got list"):
        Template.from_dict([1, 2], "t.yaml")  # type: ignore[arg-type]


def test_entry_errors_name_the_entry(template_doc):
    doc = copy.deepcopy(template_doc)
    doc["spec"]["pods"][0]["labels"]["x"] = 5
    with pytest.raises(ModelError, match=r"spec\.pods\[notebook\]\.labels\.x: must be a string"):
        Template.from_dict(doc)
    doc = copy.deepcopy(template_doc)
    doc["spec"]["pvcs"].append({"name": "workspace"})
    with pytest.raises(ModelError, match="duplicate entry name 'workspace'"):
        Template.from_dict(doc)
    doc = copy.deepcopy(template_doc)
    doc["spec"]["pvcs"][0]["name"] = "Work_Space"
    with pytest.raises(ModelError, match=r"spec\.pvcs\[0\]\.name: 'Work_Space' must be a DNS-1123"):
        Template.from_dict(doc)
    doc = copy.deepcopy(template_doc)
    del doc["spec"]["pods"][0]["name"]
    with pytest.raises(ModelError, match=r"spec\.pods\[0\]\.name: required string is missing"):
        Template.from_dict(doc)


def test_other_resources_need_kind_and_pods_cannot_change_kind(template_doc):
    doc = copy.deepcopy(template_doc)
    doc["spec"]["otherResources"] = [{"name": "svc", "spec": {}}]
    with pytest.raises(ModelError, match="need apiVersion and kind"):
        Template.from_dict(doc)
    doc = copy.deepcopy(template_doc)
    doc["spec"]["pods"][0]["kind"] = "Deployment"
    with pytest.raises(ModelError, match="are v1 Pod"):
        Template.from_dict(doc)


def test_other_resources_parsed(template_doc):
    template_doc["spec"]["otherResources"] = [
        {"name": "svc", "apiVersion": "v1", "kind": "Service", "spec": {"ports": []}}
    ]
    entry = Template.from_dict(template_doc).other_resources[0]
    assert (entry.name, entry.api_version, entry.kind, entry.spec) == (
        "svc", "v1", "Service", {"ports": []}
    )


# ---- otherResources entries with further top-level fields ------------------------------------


def entry_template(template_doc: dict, entry: dict, group: str = "otherResources") -> dict:
    doc = copy.deepcopy(template_doc)
    doc["spec"][group] = [entry]
    return doc


def test_other_resource_body_fields_parsed(template_doc):
    doc = entry_template(template_doc, {
        "name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
        "data": {"a": "{x}"}, "immutable": True, "binaryData": None})
    (entry,) = Template.from_dict(doc, "t.yaml").other_resources
    assert entry.body == {"data": {"a": "{x}"}, "immutable": True, "binaryData": None}
    assert entry.has_spec is False and entry.spec == {}


def test_other_resource_with_spec_has_spec(template_doc):
    doc = entry_template(template_doc, {"name": "svc", "apiVersion": "v1", "kind": "Service",
                                        "spec": {}})
    (entry,) = Template.from_dict(doc, "t.yaml").other_resources
    assert entry.has_spec is True and entry.body == {}


@pytest.mark.parametrize("field", ["metadata", "status", "Metadata", "STATUS"])
def test_other_resource_metadata_and_status_refused(template_doc, field):
    doc = entry_template(template_doc, {"name": "cm", "apiVersion": "v1", "kind": "ConfigMap",
                                        field: {"name": "x"}})
    with pytest.raises(ModelError) as err:
        Template.from_dict(doc, "t.yaml")
    message = str(err.value)
    assert message.startswith(f"template t.yaml: spec.otherResources[cm].{field}: ")
    assert f"may not set {field!r}" in message


@pytest.mark.parametrize(("field", "own"), [("Kind", "kind"), ("apiversion", "apiVersion"),
                                            ("Spec", "spec"), ("Labels", "labels")])
def test_other_resource_near_duplicates_of_entry_fields_refused(template_doc, field, own):
    doc = entry_template(template_doc, {"name": "cm", "apiVersion": "v1", "kind": "ConfigMap",
                                        field: "x"})
    with pytest.raises(ModelError, match=rf"spec\.otherResources\[cm\]\.{field}: .*only in case; "
                                         rf"spell it exactly '{own}'"):
        Template.from_dict(doc, "t.yaml")


@pytest.mark.parametrize("group", ["pods", "pvcs"])
def test_pods_and_pvcs_take_no_body_fields(template_doc, group):
    # As the apiserver prunes them (the schema there is closed), other keys are dropped.
    doc = entry_template(template_doc, {"name": "x", "data": {"a": "b"}, "metadata": {}}, group)
    (entry,) = Template.from_dict(doc, "t.yaml").entries(group)
    assert entry.body == {} and entry.has_spec is True
