"""Property tests: variable values come out verbatim, never add structure, rendering is
deterministic, every generated name is a valid DNS-1123 label of at most 63 characters (a
DNS-1035 label for Services), and a label renders only when its value is a valid label value."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jupyternetes.crd.definitions import API_VERSION, INSTANCE_KIND, TEMPLATE_KIND
from jupyternetes.crd.model import Instance, Template
from jupyternetes.crd.naming import (
    instance_name_for_user,
    is_dns1123_label,
    is_label_value,
    object_name,
    object_name_for_kind,
)
from jupyternetes.render.objects import render
from jupyternetes.render.placeholders import RenderError, substitute
from tests.unit.test_naming import is_dns1035_label

# Values an attacker or a careless admin might put in a variable.
NASTY = st.one_of(
    st.text(),
    st.sampled_from(["{", "}", "{{", "}}", "{x}", "{{x}}", "{jupyternetes.instance.name}",
                     "a: b\nc: [1, 2]", "- item", "---\nkind: Secret", '{"json": {"x": 1}}',
                     "\u00e9\u4e2d\U0001f600", "", "null", "true", "1e3"]),
    st.lists(st.sampled_from(["{", "}", "x", ":", "\n", "-", " ", "{v}", "é"])).map("".join),
)
DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
SUBDOMAIN = st.lists(DNS_LABEL, min_size=1, max_size=5).map(".".join).filter(
    lambda s: len(s) <= 253)


def make(value: str, extra: str = "v") -> tuple[Template, Instance]:
    template = Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            # Annotation values may be any text (label values are checked: see below).
            "pvcs": [{"name": "data", "annotations": {"l": "{v}"}}],
            "pods": [{"name": "nb", "annotations": {"a": "pre-{v}-post"}, "spec": {
                "list": ["{v}", "{V}", "fixed"],
                "map": {"{v}": "{v}", "plain": "{{v}}"},
                "nested": [{"env": [{"name": "X", "value": "{v}{v}"}]}],
            }}],
        },
    })
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "inst", "namespace": "ns"},
        "spec": {"template": {"name": "t"}, "variables": {"v": value, "w": extra}},
    })
    return template, instance


def shape(value: object) -> object:
    """Structure without strings: the same shape means no keys or list items were added."""
    if isinstance(value, dict):
        return {"dict": len(value), "items": sorted((shape(v) for v in value.values()), key=repr)}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


@settings(max_examples=300, deadline=None)
@given(NASTY)
def test_values_come_out_verbatim_and_add_no_structure(value):
    # A key rendering to the literal key "plain" must fail instead of merging; that case is
    # tested in test_render.py::test_keys_rendering_to_the_same_value_fail.
    assume(value != "plain")
    template, instance = make(value)
    spec_before = copy.deepcopy(template.pods[0].spec)
    rendered = render(template, instance)
    pod = rendered.pods[0].manifest
    assert pod["spec"]["list"] == [value, value, "fixed"]
    assert pod["spec"]["nested"] == [{"env": [{"name": "X", "value": value + value}]}]
    assert pod["metadata"]["annotations"]["a"] == f"pre-{value}-post"
    assert rendered.pvcs[0].manifest["metadata"]["annotations"]["l"] == value
    assert pod["spec"]["map"] == {value: value, "plain": "{v}"}
    assert shape(pod["spec"]) == shape(spec_before)
    assert template.pods[0].spec == spec_before


@given(NASTY, NASTY)
def test_substitution_is_single_pass(a, b):
    # Whatever `a` contains (placeholders, escapes), it is inserted as is and not looked at again.
    assert substitute("{a}|{b}", {"a": a, "b": b}, "p", []) == f"{a}|{b}"


@settings(max_examples=100, deadline=None)
@given(NASTY, NASTY)
def test_rendering_is_deterministic(value, extra):
    first = render(*make(value, extra)).manifests()
    second = render(*make(value, extra)).manifests()
    assert first == second
    assert [list(m["metadata"]["labels"]) for m in first] == [
        list(m["metadata"]["labels"]) for m in second]


@settings(max_examples=300)
@given(SUBDOMAIN, DNS_LABEL)
def test_object_names_valid(instance_name, entry):
    name = object_name(instance_name, entry)
    assert is_dns1123_label(name) and len(name) <= 63
    assert name == object_name(instance_name, entry)


@settings(max_examples=300)
@given(st.text(), st.text())
def test_object_names_valid_even_for_garbage(instance_name, entry):
    assert is_dns1123_label(object_name(instance_name, entry))


@settings(max_examples=100, deadline=None)
@given(SUBDOMAIN, st.lists(DNS_LABEL, min_size=1, max_size=4, unique=True))
def test_rendered_names_and_labels_valid(instance_name, entries):
    template = Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"pods": [{"name": e} for e in entries], "pvcs": [{"name": e} for e in entries]},
    })
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": instance_name, "namespace": "ns"},
        "spec": {"template": {"name": "t"}},
    })
    rendered = render(template, instance)
    names = [o.name for o in rendered.objects()]
    assert all(is_dns1123_label(n) for n in names)
    # Pods and PVCs are different kinds, so the same entry name in both is fine; within a kind
    # names must be distinct.
    assert len(set(o.name for o in rendered.pods)) == len(entries)
    for obj in rendered.objects():
        assert all(is_label_value(v) for v in obj.manifest["metadata"]["labels"].values())


# Hub-made instance names: uuid hex, often starting with a digit.
HUB_NAME = st.builds(instance_name_for_user, st.text(min_size=1), st.text())


def service_template(entries: list[str]) -> Template:
    return Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "pods": [{"name": "nb", "spec": {"refs": [
                f"{{jupyternetes.otherResources.{e}}}" for e in entries]}}],
            "otherResources": [{"name": e, "apiVersion": "v1", "kind": "Service",
                                "spec": {"ports": [{"port": 80}]}} for e in entries],
        },
    })


@settings(max_examples=200, deadline=None)
@given(st.one_of(HUB_NAME, SUBDOMAIN), st.lists(DNS_LABEL, min_size=1, max_size=3, unique=True))
def test_every_service_name_is_a_dns1035_label(instance_name, entries):
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": instance_name, "namespace": "ns"},
        "spec": {"template": {"name": "t"}},
    })
    rendered = render(service_template(entries), instance)
    names = [o.name for o in rendered.other_resources]
    for name in names:
        assert is_dns1035_label(name) and len(name) <= 63, name
    assert len(set(names)) == len(entries)
    # The built-in variable names the very same object.
    assert rendered.pods[0].manifest["spec"]["refs"] == names
    # Stable, and unchanged from object_name whenever that already starts with a letter.
    assert names == [o.name for o in render(service_template(entries), instance).other_resources]
    for entry, name in zip(entries, names, strict=True):
        plain = object_name(instance_name, entry)
        assert name == plain if plain[0].isalpha() else name.startswith("j")


@settings(max_examples=300)
@given(st.text(), st.text(), st.sampled_from(["Service", "ConfigMap", None]))
def test_kind_names_valid_even_for_garbage(instance_name, entry, kind):
    name = object_name_for_kind(instance_name, entry, kind)
    assert is_dns1123_label(name)
    if kind == "Service":
        assert is_dns1035_label(name)
    else:
        assert name == object_name(instance_name, entry)


@settings(max_examples=300, deadline=None)
@given(NASTY)
def test_label_value_renders_only_when_valid(value):
    template = Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"pvcs": [{"name": "data", "labels": {"example.com/l": "{v}"}}]},
    })
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "inst", "namespace": "ns"},
        "spec": {"template": {"name": "t"}, "variables": {"v": value}},
    })
    if is_label_value(value):
        labels = render(template, instance).pvcs[0].manifest["metadata"]["labels"]
        assert labels["example.com/l"] == value
    else:
        with pytest.raises(RenderError) as err:
            render(template, instance)
        assert 'spec.pvcs[data].labels["example.com/l"]' in str(err.value)
        assert repr(value) in str(err.value)


# ---- typed placeholders ----------------------------------------------------------------------


def typed_render(value: str, type_: str) -> object:
    template = Template.from_dict({
        "apiVersion": API_VERSION, "kind": TEMPLATE_KIND,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"pods": [{"name": "nb", "spec": {"v": f"{{V:{type_}}}", "list": [
            f"{{v:{type_}}}", "{v}"]}}]},
    })
    instance = Instance.from_dict({
        "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
        "metadata": {"name": "inst", "namespace": "ns"},
        "spec": {"template": {"name": "t"}, "variables": {"v": value}},
    })
    spec = render(template, instance).pods[0].manifest["spec"]
    assert spec["list"] == [spec["v"], value]  # the untyped form stays the string
    return spec["v"]


@settings(max_examples=200, deadline=None)
@given(st.integers())
def test_ints_round_trip(number):
    value = typed_render(str(number), "int")
    assert value == number and type(value) is int
    assert typed_render(str(number), "number") == number


@settings(max_examples=50, deadline=None)
@given(st.booleans(), st.sampled_from([str.lower, str.upper, str.title]))
def test_bools_round_trip(flag, case):
    value = typed_render(case(str(flag)), "bool")
    assert value is flag


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip(number):
    value = typed_render(repr(number), "number")
    assert value == number and isinstance(value, float)
    assert json.loads(json.dumps(value)) == number


@settings(max_examples=300, deadline=None)
@given(NASTY, st.sampled_from(["int", "bool", "number"]))
def test_typed_values_inject_nothing(value, type_):
    """Whatever the variable holds, a typed placeholder renders a scalar of its type or fails
    with a RenderError naming the path: never a string, a list, a mapping or a placeholder."""
    try:
        rendered = typed_render(value, type_)
    except RenderError as err:
        assert "spec.pods[nb].spec.v: {V:" in str(err) or "spec.pods[nb].spec.list[0]" in str(err)
        return
    expected = {"int": (int,), "bool": (bool,), "number": (int, float)}[type_]
    assert type(rendered) in expected
    if type_ == "bool":
        assert value.lower() in ("true", "false")
    else:
        assert not isinstance(rendered, bool)
        # Compare exactly: float(value) would round an int beyond 2**53 that renders exactly.
        assert rendered == (int(value) if isinstance(rendered, int) else float(value))
