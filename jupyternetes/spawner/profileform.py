"""The hub's spawn page for profiles (pure): its HTML when the admin gives no Jinja2 form
template, the profiles in KubeSpawner's shape for one that is given (`formtemplate`), and the
page's form data -> `user_options` (`options_from_form`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from jupyternetes.spawner.profiles import (
    FORM_PREFIX,
    PROFILE_OPTION,
    UNLISTED_SENTINELS,
    UNLISTED_SUFFIX,
    Profile,
    ProfileError,
    ProfileOption,
    default_profile,
)
from jupyternetes.spawner.selection import option_value, single_value


def kubespawner_shaped(profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """The profiles as KubeSpawner's initialized profile_list (JSON-safe), for a Jinja2
    `profile_form_template` (jupyterhub-fancy-profiles reads `profile_list|tojson`): every
    option has its default choice marked and an `unlisted_choice` dict, one profile is
    default. Variables and overrides stay out: the page needs none of them."""
    chosen = default_profile(profiles)
    shaped: list[dict[str, Any]] = []
    for profile in profiles:
        options: dict[str, Any] = {}
        for option in profile.options:
            default = option.default_choice()
            unlisted = option.unlisted
            options[option.key] = {
                "display_name": option.display_name,
                "choices": {c.key: {"display_name": c.display_name,
                                    "description": c.description, "default": c is default}
                            for c in option.choices},
                "unlisted_choice": {
                    "enabled": unlisted.enabled, "display_name": unlisted.display_name,
                    "display_name_in_choices": unlisted.display_name_in_choices,
                    "validation_regex": unlisted.validation_regex or "",
                    "validation_message": unlisted.validation_message}}
        shaped.append({"slug": profile.slug, "display_name": profile.display_name,
                       "description": profile.description, "default": profile is chosen,
                       "profile_options": options})
    return shaped


def _option_html(profile: Profile, option: ProfileOption,
                 saved: Mapping[str, object]) -> str:
    esc = lambda text: html.escape(str(text), quote=True)  # noqa: E731
    field_name = f"{FORM_PREFIX}{profile.slug}--{option.key}"
    try:
        saved_unlisted = option_value(profile, option, saved, UNLISTED_SUFFIX) or ""
        saved_choice = option_value(profile, option, saved, "")
    except ProfileError:  # last time's options no longer fit: show the defaults
        saved_unlisted, saved_choice = "", None
    default = option.default_choice()
    rows = []
    for choice in option.choices:
        selected = (not saved_unlisted and (saved_choice == choice.key or (
            saved_choice is None and choice is default)))
        rows.append(f"<option value='{esc(choice.key)}'{' selected' if selected else ''}>"
                    f"{esc(choice.display_name)}</option>")
    unlisted = option.unlisted
    other = ""
    if unlisted.enabled:
        picked = bool(saved_unlisted) or not option.choices
        rows.append(f"<option value='unlisted-choice'{' selected' if picked else ''}>"
                    f"{esc(unlisted.display_name_in_choices)}</option>")
        pattern = (f" pattern='{esc(unlisted.validation_regex)}'"
                   if unlisted.validation_regex else "")
        other = (f"<label for='{esc(field_name)}{UNLISTED_SUFFIX}'>"
                 f"{esc(unlisted.display_name or option.display_name)}</label>"
                 f"<input class='form-control' name='{esc(field_name)}{UNLISTED_SUFFIX}' "
                 f"id='{esc(field_name)}{UNLISTED_SUFFIX}' value='{esc(saved_unlisted)}'"
                 f"{pattern} title='{esc(unlisted.validation_message)}'/>")
    return (f"<div class='jupyternetes-option'><label for='{esc(field_name)}'>"
            f"{esc(option.display_name)}</label><select class='form-control' "
            f"name='{esc(field_name)}' id='{esc(field_name)}'>{''.join(rows)}</select>"
            f"{other}</div>")


def options_form_html(profiles: Sequence[Profile],
                      saved: Mapping[str, object] | None = None) -> str:
    """Radio buttons (and each profile's options) the hub shows on its spawn page; empty when
    there is nothing to choose. Works without JavaScript: a select's "Other" is used only when
    its text field is filled (`options_from_form`). `saved`: the user's last options."""
    saved = saved or {}
    if len(profiles) < 2 and not any(p.options for p in profiles):
        return ""
    wanted = single_value(saved.get(PROFILE_OPTION))
    chosen = next((p for p in profiles if p.slug == wanted), None) or default_profile(profiles)
    rows = []
    for profile in profiles:
        slug = html.escape(profile.slug, quote=True)
        checked = " checked" if profile is chosen else ""
        description = (f"<div class='description'>{html.escape(profile.description)}</div>"
                       if profile.description else "")
        options = "".join(_option_html(profile, option, saved if profile is chosen else {})
                          for option in profile.options)
        rows.append(
            f"<label for='profile-{slug}' class='form-control input-group'>"
            f"<input type='radio' name='{PROFILE_OPTION}' id='profile-{slug}' value='{slug}'"
            f"{checked}/> <strong>{html.escape(profile.display_name)}</strong>{description}"
            f"{options}</label>")
    return "<div class='jupyternetes-profiles'>" + "".join(rows) + "</div>"


def options_from_form(form_data: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """`user_options` from the spawn page's form data (each field arrives as a list), as
    KubeSpawner makes them: `profile`, and `<option>` / `<option>--unlisted-choice` from the
    chosen profile's `profile-option-<slug>--...` fields. Empty fields are dropped; "Other"
    with a filled text field is the text; `select` refuses "Other" with no text, and a listed
    choice with text. Other fields are ignored."""
    values = form_data.get(PROFILE_OPTION) or []
    if not values or not values[0]:
        return {}
    slug = values[0]
    options: dict[str, str] = {PROFILE_OPTION: slug}
    prefix = f"{FORM_PREFIX}{slug}--"
    for name, given in form_data.items():
        if name.startswith(prefix) and given and given[0] != "":
            options[name[len(prefix):]] = given[0]
    for name in [k for k in options if k.endswith(UNLISTED_SUFFIX)]:
        if options.get(name[:-len(UNLISTED_SUFFIX)]) in UNLISTED_SENTINELS:
            options.pop(name[:-len(UNLISTED_SUFFIX)])  # the select said "Other": the text
    return options
