"""crd/naming.py: deterministic, valid names."""

from __future__ import annotations

import re
import uuid

import pytest

from jupyternetes.crd import naming
from jupyternetes.crd.naming import (
    instance_name_for_user,
    is_dns1123_label,
    is_label_value,
    is_qualified_name,
    label_value,
    object_name,
    object_name_for_kind,
    stack_name,
)

# Oracles from the validators the names must pass, written out here because the product only
# ever makes names (it has no use for checking these): the apiserver's DNS-1035 label (a leading
# letter, what a Service name must be) and Pulumi's stack name (pkg/workspace ValidateStackName).
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PULUMI_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def is_dns1035_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1035_LABEL.match(value))


def test_seed_user_instance_name():
    assert instance_name_for_user("jovyan") == "8dc366d8a0f05869bfdb6e7eb3d83f65"


def test_named_server_is_distinct_stable_and_cannot_collide_with_joined_strings():
    named = instance_name_for_user("jovyan", "gpu")
    assert named == instance_name_for_user("jovyan", "gpu")
    assert named != instance_name_for_user("jovyan")
    assert named != instance_name_for_user("jovyan", "cpu")
    # "a/b" default vs user "a" server "b" would collide with a naive "user/server" join.
    assert instance_name_for_user("a", "b") != instance_name_for_user("a/b")
    expected = uuid.uuid5(uuid.uuid5(uuid.UUID(int=0), "jovyan"), "gpu").hex
    assert named == expected


def test_object_name_plain_when_valid():
    assert object_name("8dc366d8a0f05869bfdb6e7eb3d83f65", "workspace") == (
        "8dc366d8a0f05869bfdb6e7eb3d83f65-workspace"
    )


@pytest.mark.parametrize(
    ("instance", "entry"),
    [
        ("a" * 60, "notebook"),
        ("x" * 253, "y" * 63),
        ("UPPER.case.dotted", "entry"),
        ("my.instance.example.com", "pvc"),
        ("-", "-"),
    ],
)
def test_object_name_shortened_is_valid_and_stable(instance, entry):
    name = object_name(instance, entry)
    assert is_dns1123_label(name), name
    assert len(name) <= 63
    assert name == object_name(instance, entry)


def test_object_name_distinct_for_long_names_sharing_a_prefix():
    a = object_name("p" * 70 + "a", "notebook")
    b = object_name("p" * 70 + "b", "notebook")
    assert a != b
    assert a.startswith("ppp")


def test_label_value_keeps_valid_and_shortens_long():
    assert label_value("default-template") == "default-template"
    long = "t" * 200 + ".example.com"
    value = label_value(long)
    assert is_label_value(value) and len(value) <= 63
    assert value != label_value("t" * 200 + ".example.org")


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("default", "8dc366d8a0f05869bfdb6e7eb3d83f65"), ("kadense", "my.dotted.name"), ("a", "b")],
)
def test_stack_name_is_namespace_dot_name(namespace, name):
    stack = stack_name(namespace, name)
    assert stack == f"{namespace}.{name}"
    assert _PULUMI_STACK_NAME.match(stack)


def test_stack_name_too_long_is_shortened_valid_and_marked():
    stack = stack_name("n" * 63, "x" * 200)
    assert len(stack) <= naming.STACK_NAME_MAX
    assert _PULUMI_STACK_NAME.match(stack)
    assert stack.startswith("n" * 63 + "..")  # no real <namespace>.<name> has a double dot
    assert stack == stack_name("n" * 63, "x" * 200)
    assert stack != stack_name("n" * 63, "x" * 199)


@pytest.mark.parametrize(("namespace", "name"), [("with.dot", "x"), ("ok", "Bad_Name"), ("", "x")])
def test_stack_name_rejects_invalid_inputs(namespace, name):
    with pytest.raises(ValueError):
        stack_name(namespace, name)


# ---- DNS-1035 names (Services) -------------------------------------------------------------


def test_service_name_of_hub_instance_gets_prefix():
    seed = instance_name_for_user("jovyan")
    assert seed[0].isdigit()
    assert object_name_for_kind(seed, "http", "Service") == f"j-{seed}-http"
    assert object_name_for_kind(seed, "http", "ConfigMap") == f"{seed}-http"
    assert object_name_for_kind(seed, "http", None) == f"{seed}-http"


def test_service_names_starting_with_a_letter_unchanged():
    assert object_name_for_kind("alice-lab", "http", "Service") == "alice-lab-http"


def test_long_service_name_truncated_keeps_letter_and_is_stable():
    name = object_name_for_kind("1" * 70, "http", "Service")
    assert is_dns1035_label(name) and len(name) == 63 and name.startswith("j-111")
    assert name == object_name_for_kind("1" * 70, "http", "Service")
    assert name != object_name_for_kind("1" * 71, "http", "Service")


def test_dns1035_kinds_are_explicit():
    assert frozenset({"Service"}) == naming.DNS1035_KINDS


@pytest.mark.parametrize(("value", "ok"), [
    ("app", True), ("example.com/app", True), ("a.b_c-d", True), ("x/Y.z", True),
    ("", False), ("/app", False), ("example.com/", False), ("Example.com/app", False),
    ("a b", False), ("a/b/c", False), ("-a", False), ("a" * 64, False),
    ("a" * 63, True), ("example.com/" + "a" * 64, False), ("has space/x", False),
])
def test_is_qualified_name(value, ok):
    assert is_qualified_name(value) is ok
