"""Typed placeholders: `{name:int}`, `{name:bool}`, `{name:number}` as a whole value render as
JSON types; everywhere else a typed placeholder is an error naming the path."""

from __future__ import annotations

import pytest

from jupyternetes.crd.model import Instance, Template
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError, substitute
from tests.unit.test_render import doc, make


def spec_value(value: object, variables: dict[str, str]) -> object:
    template, instance = make({"pods": [{"name": "nb", "spec": {"v": value}}]}, variables)
    return render(template, instance).pods[0].manifest["spec"]["v"]


def render_error(spec: dict, variables: dict[str, str]) -> str:
    template, instance = make(spec, variables)
    with pytest.raises(RenderError) as err:
        render(template, instance)
    return str(err.value)


@pytest.mark.parametrize(("text", "raw", "expected"), [
    ("{x:int}", "1000", 1000),
    ("{x:int}", "-3", -3),
    ("{x:int}", "007", 7),
    ("{X:int}", "42", 42),  # the name is case-insensitive
    ("{x:bool}", "true", True),
    ("{x:bool}", "False", False),
    ("{x:number}", "8888", 8888),
    ("{x:number}", "-1.5", -1.5),
    ("{x:number}", "2e3", 2000.0),
])
def test_typed_whole_value_renders_as_json_type(text, raw, expected):
    value = spec_value(text, {"x": raw})
    assert value == expected and type(value) is type(expected)


def test_typed_placeholders_anywhere_in_the_tree():
    value = spec_value({"runAsUser": "{uid:int}", "ports": [{"containerPort": "{port:number}"}],
                        "flags": ["{on:bool}", "{uid}"]},
                       {"uid": "1000", "port": "8888", "on": "TRUE"})
    assert value == {"runAsUser": 1000, "ports": [{"containerPort": 8888}],
                     "flags": [True, "1000"]}


@pytest.mark.parametrize(("type_", "raw", "expected"), [
    ("int", "1.5", "an integer"), ("int", " 1", "an integer"), ("int", "", "an integer"),
    ("int", "1e3", "an integer"), ("bool", "yes", "true or false"), ("bool", "1", "true or false"),
    ("number", "1.", "a JSON number"), ("number", "inf", "a JSON number"),
    ("number", "NaN", "a JSON number"), ("number", "0x10", "a JSON number"),
])
def test_value_that_does_not_parse_names_path_and_problem(type_, raw, expected):
    message = render_error({"pods": [{"name": "nb", "spec": {"securityContext": {
        "runAsUser": f"{{uid:{type_}}}"}}}]}, {"uid": raw})
    assert f"spec.pods[nb].spec.securityContext.runAsUser: {{uid:{type_}}}: the value " in message
    assert f"is not {expected}" in message and "write {uid} for a string" in message


def test_typed_inside_a_longer_string_is_an_error_naming_the_path():
    message = render_error({"pods": [{"name": "nb", "spec": {"cmd": "--uid={uid:int}"}}]},
                           {"uid": "1"})
    assert "spec.pods[nb].spec.cmd: typed placeholder {uid:int} is only allowed as the whole " \
           "value" in message
    assert "write {uid} without a type" in message


def test_mapping_keys_cannot_be_typed():
    message = render_error({"pods": [{"name": "nb", "spec": {"{k:int}": "v"}}]}, {"k": "1"})
    assert 'spec.pods[nb].spec["{k:int}"] (key): typed placeholder' in message


@pytest.mark.parametrize("where", ["labels", "annotations"])
def test_labels_and_annotations_cannot_be_typed(where):
    message = render_error({"pvcs": [{"name": "p", where: {"example.com/x": "{n:int}"}}]},
                           {"n": "1"})
    assert f'spec.pvcs[p].{where}["example.com/x"]: typed placeholder {{n:int}}' in message


def test_unknown_typed_name_is_reported_as_unknown_with_its_path():
    template, instance = make({"pods": [{"name": "nb", "spec": {"u": "{nope:int}"}}]}, {})
    with pytest.raises(RenderError) as err:
        render(template, instance)
    assert err.value.missing == (("nope", "spec.pods[nb].spec.u"),)


@pytest.mark.parametrize(("text", "expected"), [
    ("{{x:int}}", "{x:int}"),  # escapes still make literal braces
    ("{x:string}", "{x:string}"),  # not one of the types: literal text, as any other brace
    ("{x:Int}", "{x:Int}"),
    ('{"a":1}', '{"a":1}'),
])
def test_escapes_and_other_colons_stay_literal(text, expected):
    assert spec_value(text, {"x": "1"}) == expected
    assert substitute(text, {"x": "1"}, "p", []) == expected


def test_typed_value_is_not_rescanned_or_retyped():
    # A variable holding a placeholder is inserted as is: the string stays a string.
    assert spec_value("{a}", {"a": "{b:int}", "b": "1"}) == "{b:int}"


def test_hub_example_renders_the_user_id_as_a_number():
    template = Template.from_dict(doc("hub-template.yaml"))
    instance = Instance.from_dict(doc("hub-instance.yaml"))
    pod = render(template, instance).pods[0].manifest
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
