"""Profile list parsing, choice and the options form (pure)."""

from __future__ import annotations

import pytest

from jupyternetes.spawner.profiles import (
    ProfileError,
    choose_profile,
    options_form_html,
    options_from_form,
    parse_profiles,
)

RAW = [
    {"display_name": "Small CPU", "template_name": "small", "description": "1 core"},
    {"display_name": "GPU <fast>", "slug": "gpu", "template": {"name": "gpu", "namespace": "t"},
     "variables": {"image": "cuda"}, "default": True},
]


def test_parse_fills_slugs_and_templates() -> None:
    small, gpu = parse_profiles(RAW)
    assert (small.slug, small.template_name, small.template_namespace) == ("small-cpu", "small",
                                                                         None)
    assert (gpu.slug, gpu.template_name, gpu.template_namespace) == ("gpu", "gpu", "t")
    assert gpu.variables == {"image": "cuda"}


def test_choice_by_slug_default_and_raw_form_value() -> None:
    profiles = parse_profiles(RAW)
    assert choose_profile(profiles, {}).slug == "gpu"
    assert choose_profile(profiles, {"profile": "small-cpu"}).slug == "small-cpu"
    assert choose_profile(profiles, {"profile": ["small-cpu"]}).slug == "small-cpu"
    assert choose_profile(parse_profiles(RAW[:1]), None).slug == "small-cpu"
    assert choose_profile((), {}) is None


def test_unknown_profile_names_the_choices() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'huge'; choose one of: "
                                           r"'small-cpu', 'gpu'"):
        choose_profile(parse_profiles(RAW), {"profile": "huge"})
    with pytest.raises(ProfileError, match="profile_list is empty"):
        choose_profile((), {"profile": "huge"})


@pytest.mark.parametrize(("raw", "message"), [
    ([{"template_name": "x"}], r"profile_list\[0\].display_name: required"),
    ([{"display_name": "A"}], r"profile_list\[0\]: no template"),
    ([{"display_name": "A", "template_name": "x", "image": "y"}], "unknown key"),
    ([{"display_name": "A", "template_name": "x"}, {"display_name": "A", "template_name": "y"}],
     r"profile_list\[1\].slug: 'a' is used"),
    ([{"display_name": "A", "template_name": "x", "default": True},
      {"display_name": "B", "template_name": "y", "default": True}], "more than one"),
])
def test_bad_profile_lists_name_the_field(raw: list, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profiles(raw)


def test_form_escapes_and_checks_the_default() -> None:
    form = options_form_html(parse_profiles(RAW))
    assert "GPU &lt;fast&gt;" in form
    assert "value='gpu' checked" in form
    assert "value='small-cpu'/>" in form
    assert options_form_html(parse_profiles(RAW[:1])) == ""


def test_options_from_form() -> None:
    assert options_from_form({"profile": ["gpu"]}) == {"profile": "gpu"}
    assert options_from_form({}) == {}
