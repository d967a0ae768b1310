"""Profile list parsing, choice and the options form (pure)."""

from __future__ import annotations

import pytest

from jupyternetes.spawner.profiles import (
    ProfileError,
    Selection,
    TemplateRef,
    choose_profile,
    kubespawner_shaped,
    options_form_html,
    options_from_form,
    parse_profiles,
    select,
    visible_profiles,
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


# ---- profile_options, unlisted choices, groups (KubeSpawner 7.1's shape) ---------------------

GPU = {
    "display_name": "GPU", "slug": "gpu", "template_name": "gpu",
    "kubespawner_override": {"cpu_limit": 4},
    "profile_options": {
        "image": {
            "display_name": "Image",
            "choices": {
                "base": {"display_name": "Base", "variables": {"image": "jupyter/base:1"}},
                "torch": {"display_name": "Torch", "default": True,
                          "variables": {"image": "jupyter/torch:2"},
                          "kubespawner_override": {"image": "jupyter/torch:2"}},
                "big": {"display_name": "Big", "template": {"name": "gpu-big"}},
            },
            "unlisted_choice": {"enabled": True, "display_name": "Other image",
                                "validation_regex": "^jupyter/.+:.+$",
                                "validation_message": "an image jupyter/<name>:<tag>",
                                "variable": "image",
                                "kubespawner_override": {"image": "{value}"}},
        },
        "size": {"display_name": "Size", "choices": {
            "s": {"display_name": "S", "kubespawner_override": {"mem_limit": "1G"}},
            "l": {"display_name": "L", "kubespawner_override": {"mem_limit": "8G"}}}},
    },
}
RESTRICTED = {"display_name": "Secret", "slug": "secret", "template_name": "s",
              "allowed_groups": ["staff"]}
PROFILES = [{"display_name": "Plain", "slug": "plain", "template_name": "plain",
             "default": True}, GPU, RESTRICTED]


def layers_of(selection: Selection) -> dict:
    merged: dict = {}
    for _, layer in selection.variable_layers:
        merged.update(layer)
    return merged


def test_choice_defaults_and_kubespawner_rest_form() -> None:
    profiles = parse_profiles(PROFILES)
    chosen = select(profiles, {"profile": "gpu"})
    assert chosen.chosen == {"image": "torch", "size": "s"}  # default, else the first
    assert layers_of(chosen) == {"image": "jupyter/torch:2"}
    assert chosen.template == TemplateRef("gpu")
    assert [dict(o) for _, o in chosen.override_layers] == [
        {"cpu_limit": 4}, {"image": "jupyter/torch:2"}, {"mem_limit": "1G"}]
    chosen = select(profiles, {"profile": "gpu", "image": "base", "size": "l"})
    assert layers_of(chosen) == {"image": "jupyter/base:1"}
    assert chosen.override_layers[-1][1] == {"mem_limit": "8G"}


@pytest.mark.parametrize("key", ["image", "profile-option-image", "profile-option-gpu--image"])
def test_every_accepted_name_of_an_option(key: str) -> None:
    chosen = select(parse_profiles(PROFILES), {"profile": "gpu", key: "big"})
    assert chosen.template == TemplateRef("gpu-big")  # a choice may pick another template
    unlisted = select(parse_profiles(PROFILES),
                      {"profile": "gpu", f"{key}--unlisted-choice": "jupyter/mine:3"})
    assert layers_of(unlisted) == {"image": "jupyter/mine:3"}
    assert unlisted.override_layers[1][1] == {"image": "jupyter/mine:3"}
    assert unlisted.chosen["image"] == "unlisted:jupyter/mine:3"


@pytest.mark.parametrize(("options", "message"), [
    ({"image--unlisted-choice": "docker.io/evil:1"},
     r"profile option 'image' of profile 'gpu': 'docker.io/evil:1' does not match "
     r"'\^jupyter/\.\+:\.\+\$' \(an image jupyter/<name>:<tag>\)"),
    ({"image": "nope"}, r"profile option 'image' of profile 'gpu': unknown choice 'nope'; "
                        r"choose one of: 'base', 'torch', 'big' or an unlisted value"),
    ({"size--unlisted-choice": "xl"}, r"profile option 'size' .*not enabled"),
    ({"image": "base", "image--unlisted-choice": "jupyter/a:b"}, "both a choice"),
    ({"image": "unlisted-choice"}, "no value given"),
    ({"image": "base", "profile-option-image": "torch"}, "conflicting values"),
    ({"image": 3}, "must be a string"),
])
def test_bad_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        select(parse_profiles(PROFILES), {"profile": "gpu", **options})


def test_validation_matches_the_whole_value_as_the_forms_pattern_does() -> None:
    profiles = parse_profiles([{"display_name": "A", "template_name": "a", "profile_options": {
        "tag": {"unlisted_choice": {"enabled": True, "validation_regex": "[a-z]+",
                                    "variable": "tag"}}}}])
    assert layers_of(select(profiles, {"tag--unlisted-choice": "abc"}))["tag"] == "abc"
    with pytest.raises(ProfileError, match="does not match"):
        select(profiles, {"tag--unlisted-choice": "abc; rm -rf"})
    with pytest.raises(ProfileError, match="has no choices, so it needs a value"):
        select(profiles, {})


def test_value_placeholder_is_replaced_once_and_other_placeholders_stay() -> None:
    profiles = parse_profiles([{"display_name": "A", "template_name": "a", "profile_options": {
        "tag": {"unlisted_choice": {"enabled": True, "variables": {
            "image": "jupyter/x:{value}", "home": "/home/{jupyterhub.user.name}"}}}}}])
    given = layers_of(select(profiles, {"tag--unlisted-choice": "{value}{x}"}))
    assert given == {"image": "jupyter/x:{value}{x}", "home": "/home/{jupyterhub.user.name}"}


def test_groups_restrict_what_is_seen_and_what_may_be_started() -> None:
    profiles = parse_profiles(PROFILES)
    assert [p.slug for p in visible_profiles(profiles, [])] == ["plain", "gpu"]
    assert [p.slug for p in visible_profiles(profiles, ["staff"])] == ["plain", "gpu", "secret"]
    assert select(profiles, {"profile": "secret"}, ["staff"]).template == TemplateRef("s")
    with pytest.raises(ProfileError, match=r"profile 'secret' is not offered to bob \(only "
                                           r"to members of its allowed_groups\); choose one "
                                           r"of: 'plain', 'gpu'"):
        select(profiles, {"profile": "secret"}, ["interns"], "bob")
    only = parse_profiles([RESTRICTED])
    with pytest.raises(ProfileError, match="no profile of profile_list is offered to bob"):
        select(only, {}, [], "bob")
    # The default is the first the user may use when the marked default is not theirs.
    marked = parse_profiles([{**RESTRICTED, "default": True}, PROFILES[0] | {"default": False}])
    assert select(marked, {}, []).profile.slug == "plain"


@pytest.mark.parametrize(("raw", "message"), [
    ([{**GPU, "kubespawner_override": {"lifecycle_hooks": {}}}],
     r"kubespawner_override: 'lifecycle_hooks' has no meaning here"),
    ([{**GPU, "profile_options": {"a--b": {"choices": {"x": {}}}}}], "without '--'"),
    ([{**GPU, "profile_options": {"a": {}}}], "no choices and no enabled unlisted_choice"),
    ([{**GPU, "profile_options": {"a": {"unlisted_choice": {"enabled": True}}}}],
     "the value goes nowhere"),
    ([{**GPU, "profile_options": {"a": {"unlisted_choice": {
        "enabled": True, "variable": "a", "validation_regex": "("}}}}], "not a regular"),
    ([{**GPU, "profile_options": {"a": {"choices": {"x": {"default": True},
                                                    "y": {"default": True}}}}}],
     "more than one choice"),
    ([{**GPU, "profile_options": {"a": {"choices": {"unlisted-choice": {}}}}}],
     "name the choice otherwise"),
    ([{**GPU, "allowed_groups": "staff"}], "list of JupyterHub group names"),
    ([{**GPU, "variables": {"jupyterhub.spawner.image": "x"}}], "use kubespawner_override"),
    ([{**GPU, "profile_options": {"a": {"unlisted_choice": {
        "enabled": True, "variable": "JupyterHub.Spawner.image"}}}}], "use kubespawner_override"),
    ([{**GPU, "profile_options": {"a": {"choices": {"x": {"image": "y"}}}}}], "unknown key"),
])
def test_bad_profile_options_name_the_field(raw: list, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profiles(raw)


def test_dict_form_of_profile_list_in_key_order() -> None:
    profiles = parse_profiles({"b": {"display_name": "B", "template_name": "b"},
                               "a": {"display_name": "A", "template_name": "a"}})
    assert [p.slug for p in profiles] == ["a", "b"]


def test_form_shows_options_and_keeps_the_last_choice() -> None:
    form = options_form_html(parse_profiles(PROFILES),
                             {"profile": "gpu", "image--unlisted-choice": "jupyter/me:1"})
    assert "value='gpu' checked" in form
    assert "name='profile-option-gpu--image'" in form
    assert "<option value='unlisted-choice' selected>Other...</option>" in form
    assert "name='profile-option-gpu--image--unlisted-choice'" in form
    assert "value='jupyter/me:1'" in form and "pattern='^jupyter/.+:.+$'" in form
    fresh = options_form_html(parse_profiles(PROFILES))
    assert "<option value='torch' selected>Torch</option>" in fresh
    assert "value='plain' checked" in fresh


def test_options_from_form_as_kubespawner_builds_them() -> None:
    form = {"profile": ["gpu"], "profile-option-gpu--image": ["unlisted-choice"],
            "profile-option-gpu--image--unlisted-choice": ["jupyter/me:1"],
            "profile-option-gpu--size": ["l"], "profile-option-plain--x": ["y"],
            "_xsrf": ["t"]}
    options = options_from_form(form)
    assert options == {"profile": "gpu", "image--unlisted-choice": "jupyter/me:1", "size": "l"}
    assert select(parse_profiles(PROFILES), options).chosen == {
        "image": "unlisted:jupyter/me:1", "size": "l"}
    # fancy-profiles' select value for "Other"; an empty text field is no value.
    empty = options_from_form({"profile": ["gpu"], "profile-option-gpu--image": ["unlisted_choice"],
                               "profile-option-gpu--image--unlisted-choice": [""]})
    with pytest.raises(ProfileError, match="no value given"):
        select(parse_profiles(PROFILES), empty)


def test_kubespawner_shaped_profile_list_is_json_and_initialized() -> None:
    import json

    shaped = kubespawner_shaped(parse_profiles(PROFILES))
    json.dumps(shaped)
    assert [p["default"] for p in shaped] == [True, False, False]
    image = shaped[1]["profile_options"]["image"]
    assert image["choices"]["torch"]["default"] is True
    assert image["unlisted_choice"]["enabled"] is True
    assert image["unlisted_choice"]["validation_regex"] == "^jupyter/.+:.+$"
    assert shaped[1]["profile_options"]["size"]["choices"]["s"]["default"] is True
    assert shaped[1]["profile_options"]["size"]["unlisted_choice"]["enabled"] is False


def test_form_ignores_last_options_that_no_longer_fit() -> None:
    form = options_form_html(parse_profiles(PROFILES),
                             {"profile": "gpu", "image": "base", "profile-option-image": "torch"})
    assert "<option value='torch' selected>Torch</option>" in form
