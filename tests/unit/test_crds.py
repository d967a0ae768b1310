"""Offline checks of crds/: structural-schema rules, and the schemas accept the seed examples (the
status the operator writes: test_status.py), and reject what the contract forbids.

`jsonschema` stands in for the apiserver's OpenAPI validation here (x-kubernetes-* keywords are
ignored by it); a test against a real kube-apiserver lives in tests/e2e.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from jupyternetes.crd import definitions

ROOT = Path(__file__).resolve().parents[2]
CRDS = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}
TEMPLATE_CRD = CRDS["jupyternotebooktemplates.kadense.io.yaml"]
INSTANCE_CRD = CRDS["jupyternotebookinstances.kadense.io.yaml"]

# Keywords the apiserver forbids in structural schemas (apiextensions v1 validation).
FORBIDDEN = {"$ref", "definitions", "id", "$schema", "additionalItems", "patternProperties",
             "dependencies", "uniqueItems"}


def schema_of(crd: dict) -> dict:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def validator(crd: dict) -> Any:
    schema = schema_of(crd)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(crd: dict, obj: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(crd).iter_errors(obj)]


def as_created(obj: dict) -> dict:
    # With the status subresource the apiserver drops status on create before validating.
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    return obj


def pruned(schema: dict, value: Any, path: str = "") -> list[str]:
    """Paths of the fields the apiserver would silently drop from `value` (structural pruning):
    those neither declared in `properties`/`additionalProperties` nor under a node with
    x-kubernetes-preserve-unknown-fields. The root's metadata is the apiserver's own business."""
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, item in value.items():
            if not path and key == "metadata":
                continue
            if key in props:
                found += pruned(props[key], item, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += pruned(schema["additionalProperties"], item, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            found += pruned(schema["items"], item, f"{path}[{i}]")
    return found


def example(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


@pytest.mark.parametrize("crd", [TEMPLATE_CRD, INSTANCE_CRD], ids=["template", "instance"])
def test_crd_envelope(crd):
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["group"] == "kadense.io" and spec["scope"] == "Namespaced"
    assert [v["name"] for v in spec["versions"]] == ["v1"]
    assert spec["versions"][0]["served"] and spec["versions"][0]["storage"]
    assert "jupyternetes" in spec["names"]["categories"]


@pytest.mark.parametrize(("crd", "kind", "plural", "name"), [
    (TEMPLATE_CRD, definitions.TEMPLATE_KIND, definitions.TEMPLATE_PLURAL,
     definitions.TEMPLATE_CRD),
    (INSTANCE_CRD, definitions.INSTANCE_KIND, definitions.INSTANCE_PLURAL,
     definitions.INSTANCE_CRD),
], ids=["template", "instance"])
def test_definitions_name_what_the_manifests_define(crd, kind, plural, name):
    # Every caller addresses the resources through crd.definitions: its one copy of the names
    # must be the CRDs' own, or every API call would 404.
    spec = crd["spec"]
    assert crd["metadata"]["name"] == name
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (
        definitions.GROUP, kind, plural)
    assert [v["name"] for v in spec["versions"]] == [definitions.VERSION]
    assert f"{spec['group']}/{spec['versions'][0]['name']}" == definitions.API_VERSION


def test_short_names_and_subresources():
    assert TEMPLATE_CRD["spec"]["names"]["shortNames"] == ["jnt"]
    assert INSTANCE_CRD["spec"]["names"]["shortNames"] == ["jni"]
    assert INSTANCE_CRD["spec"]["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("crd", [TEMPLATE_CRD, INSTANCE_CRD], ids=["template", "instance"])
def test_structural_schema(crd):
    schema = schema_of(crd)
    assert schema["type"] == "object"
    # Only type may be said about metadata at the root.
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in nodes(schema):
        forbidden = FORBIDDEN & node.keys()
        assert not forbidden, f"{path}: forbidden {forbidden}"
        if not (node.get("x-kubernetes-int-or-string")
                or node.get("x-kubernetes-preserve-unknown-fields")):
            assert node.get("type"), f"{path}: structural schemas need a type on every node"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), path


def test_entry_specs_preserve_unknown_fields():
    fields = dict(schema_of(TEMPLATE_CRD)["properties"]["spec"]["properties"])
    allowed = fields.pop("allowedNamespaces")
    assert allowed["type"] == "array" and allowed["x-kubernetes-list-type"] == "set"
    assert fields.pop("rollout")["type"] == "object"
    entries = fields
    assert set(entries) == {"pods", "pvcs", "otherResources"}
    for group, schema in entries.items():
        item = schema["items"]
        spec = dict(item["properties"]["spec"])
        assert "{name}" in spec.pop("description"), group  # the placeholder grammar, explained
        assert spec == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, group
        assert "name" in item["required"]


def property_nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every named property (what `kubectl explain` lists), below maps and lists too."""
    for key, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{key}", sub
        yield from property_nodes(sub, f"{path}.{key}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(schema.get(key), dict):
            yield from property_nodes(schema[key], f"{path}{suffix}")


@pytest.mark.parametrize("crd", [TEMPLATE_CRD, INSTANCE_CRD], ids=["template", "instance"])
def test_every_property_has_a_description(crd):
    """`kubectl explain` reads well: every field says what it is. Root metadata is the one
    exception: the apiserver allows nothing but its type there."""
    missing = [path for path, node in property_nodes(schema_of(crd))
               if path != ".metadata" and not (node.get("description") or "").strip()]
    assert missing == []


def test_template_fields_explain_the_placeholder_grammar():
    spec = schema_of(TEMPLATE_CRD)["properties"]["spec"]
    for text in ("{name}", "{{", "{name:int}", "jupyternetes.pvcs.<entry>", "case-insensitive"):
        assert text in spec["description"], text


def test_template_printer_columns_point_at_schema_fields():
    columns = TEMPLATE_CRD["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Instances", "Current", "Revision", "Rollout",
                                            "Generation", "Pods", "PVCs", "Others", "Age"]
    known = {path for path, _ in nodes(schema_of(TEMPLATE_CRD))}
    for column in columns:
        if not column["jsonPath"].startswith(".metadata"):
            assert column["jsonPath"] in known, column
    assert TEMPLATE_CRD["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_instance_printer_columns_point_at_schema_fields():
    columns = INSTANCE_CRD["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Template", "Pods", "PVCs", "Ready",
                                            "Revision", "Template-Current", "Age"]
    schema = schema_of(INSTANCE_CRD)
    known = {path for path, _ in nodes(schema)}
    for column in columns:
        json_path = column["jsonPath"].split("[")[0]
        if json_path.startswith(".metadata"):
            continue
        assert json_path in known, column


def test_seed_template_validates():
    assert errors(TEMPLATE_CRD, example("seed-template.yaml")) == []


def test_seed_instance_validates_as_created():
    assert errors(INSTANCE_CRD, as_created(example("seed-instance.yaml"))) == []


def test_own_examples_validate():
    assert errors(TEMPLATE_CRD, example("service-template.yaml")) == []
    assert errors(INSTANCE_CRD, example("service-instance.yaml")) == []


def test_instance_without_template_name_rejected():
    doc = as_created(example("seed-instance.yaml"))
    del doc["spec"]["template"]["name"]
    assert any("'name' is a required property" in e for e in errors(INSTANCE_CRD, doc))


@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": "b"}])
def test_instance_with_non_string_variable_rejected(value):
    doc = as_created(example("seed-instance.yaml"))
    doc["spec"]["variables"]["jupyterhub.user.id"] = value
    assert any(e.startswith("spec.variables.jupyterhub.user.id:")
               for e in errors(INSTANCE_CRD, doc))


def test_template_rejects_bad_entries():
    doc = example("seed-template.yaml")
    doc["spec"]["otherResources"] = [{"name": "svc", "spec": {}}]
    assert any("'apiVersion' is a required property" in e for e in errors(TEMPLATE_CRD, doc))
    doc = example("seed-template.yaml")
    doc["spec"]["pods"][0]["labels"]["n"] = 5
    assert errors(TEMPLATE_CRD, doc)
    doc = example("seed-template.yaml")
    doc["spec"]["pvcs"][0]["name"] = "Not_A_Label"
    assert errors(TEMPLATE_CRD, doc)


def test_seed_status_quirk_is_known():
    # The seed writes otherResourcesProvisioned as {} (not a state). It never reaches validation
    # on create (status is dropped), and the operator always writes a state string.
    seed_status = example("seed-instance.yaml")["status"]
    assert seed_status["otherResourcesProvisioned"] == {}
    doc = as_created(example("seed-instance.yaml"))
    doc["status"] = seed_status
    assert {e.split(":")[0] for e in errors(INSTANCE_CRD, doc)} == {
        "status.otherResourcesProvisioned"}


def test_examples_lose_nothing_to_pruning():
    for name, crd in (("seed-template.yaml", TEMPLATE_CRD), ("service-template.yaml", TEMPLATE_CRD),
                      ("service-instance.yaml", INSTANCE_CRD)):
        assert pruned(schema_of(crd), example(name)) == [], name
    assert pruned(schema_of(INSTANCE_CRD), as_created(example("seed-instance.yaml"))) == []


def spec_less_entries() -> list[dict]:
    return [
        {"name": "settings", "apiVersion": "v1", "kind": "ConfigMap",
         "labels": {"app": "{jupyterhub.user.name}"},
         "data": {"owner": "{jupyterhub.user.name}"}, "immutable": True},
        {"name": "token", "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "stringData": {"token": "{jupyterhub.api_token}"}},
        {"name": "read", "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}},
    ]


def test_other_resources_keep_further_top_level_fields():
    doc = example("seed-template.yaml")
    doc["spec"]["otherResources"] = spec_less_entries()
    assert errors(TEMPLATE_CRD, doc) == []
    assert pruned(schema_of(TEMPLATE_CRD), doc) == []
    # Pods and PVCs entries stay closed: an unknown field there is pruned, as before.
    doc["spec"]["pods"][0]["data"] = {"x": "y"}
    assert pruned(schema_of(TEMPLATE_CRD), doc) == [".spec.pods[0].data"]


def test_other_resources_still_type_their_own_fields():
    item = schema_of(TEMPLATE_CRD)["properties"]["spec"]["properties"]["otherResources"]["items"]
    assert item["x-kubernetes-preserve-unknown-fields"] is True
    assert set(item["required"]) == {"name", "apiVersion", "kind"}
    for entry in ({"name": "Bad_Name", "apiVersion": "v1", "kind": "ConfigMap"},
                  {"name": "cm", "apiVersion": 1, "kind": "ConfigMap"},
                  {"name": "cm", "apiVersion": "v1", "kind": "ConfigMap", "labels": {"a": 1}},
                  {"name": "cm", "kind": "ConfigMap", "data": {}}):
        doc = example("seed-template.yaml")
        doc["spec"]["otherResources"] = [entry]
        assert errors(TEMPLATE_CRD, doc), entry


def test_other_resources_refuse_metadata_and_status_by_rule():
    # jsonschema does not run CEL; the rules are checked against a real apiserver in e2e. Here:
    # they exist, name the field, and the fields they test are declared (CEL sees no others).
    item = schema_of(TEMPLATE_CRD)["properties"]["spec"]["properties"]["otherResources"]["items"]
    rules = {r["fieldPath"]: r for r in item["x-kubernetes-validations"]}
    assert set(rules) == {".metadata", ".status"}
    for field, rule in rules.items():
        name = field.lstrip(".")
        assert rule["rule"] == f"!has(self.{name})"
        assert rule["message"].startswith(f"{name} is not allowed")
        assert name in item["properties"]
