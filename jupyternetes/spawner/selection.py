"""A user's choice of profile and options -> a `Selection`: the template, variables and
kubespawner_override layers of one spawn, or a `ProfileError` naming the option and what to
change (pure).

`user_options` are KubeSpawner's: `{"profile": slug, "<option>": choice-key,
"<option>--unlisted-choice": value}`, and the spawn form's field names
(`profile-option-<slug>--<option>[--unlisted-choice]`) or `profile-option-<option>[...]` work too.
Who may choose what: a profile's `allowed_groups` (`visible_profiles`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.spawner.profiles import (
    FORM_PREFIX,
    PROFILE_OPTION,
    UNLISTED_SENTINELS,
    UNLISTED_SUFFIX,
    VALUE_PLACEHOLDER,
    Profile,
    ProfileError,
    ProfileOption,
    TemplateRef,
    default_profile,
)


@dataclass(frozen=True)
class Selection:
    """What one spawn gets from its profile and options (None profile: no profile_list)."""

    profile: Profile | None
    template: TemplateRef | None  # None: the spawner's own template_name
    # Variable layers in the order they apply: (where they come from, variables).
    variable_layers: tuple[tuple[str, dict[str, Any]], ...] = ()
    # kubespawner_override layers in the order they apply: (where, overrides).
    override_layers: tuple[tuple[str, dict[str, Any]], ...] = ()
    # option key -> the choice's key, or `unlisted:<value>`: for logs.
    chosen: dict[str, str] = field(default_factory=dict)


# ---- who sees what --------------------------------------------------------------------------


def offered_to(profile: Profile, groups: Collection[str]) -> bool:
    return profile.allowed_groups is None or bool(profile.allowed_groups & set(groups))


def visible_profiles(profiles: Sequence[Profile],
                     groups: Collection[str]) -> tuple[Profile, ...]:
    """The profiles a member of `groups` sees and may start."""
    return tuple(p for p in profiles if offered_to(p, groups))


def single_value(value: object) -> object:
    """A user_options value; raw form data has each as a one-item list."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def choose_profile(profiles: Sequence[Profile], user_options: Mapping[str, object] | None,
                   groups: Collection[str] | None = None,
                   user: str = "this user") -> Profile | None:
    """The profile the user asked for (`{"profile": slug}`), else the default one they may use.

    None when there are no profiles (the spawner's own template is used); an unknown slug is an
    error naming the choices, never a silent fallback to another environment, and so is a
    profile restricted to groups the user is not in (`groups` None: no restriction checked).
    """
    offered = tuple(profiles) if groups is None else visible_profiles(profiles, groups)
    wanted = single_value((user_options or {}).get(PROFILE_OPTION))
    if wanted in (None, ""):
        if profiles and not offered:
            raise ProfileError(f"no profile of profile_list is offered to {user} (each has "
                               "allowed_groups they are not in); ask an admin")
        return default_profile(offered)
    for profile in offered:
        if profile.slug == wanted:
            return profile
    if any(p.slug == wanted for p in profiles):
        raise ProfileError(f"profile {wanted!r} is not offered to {user} (only to members of "
                           "its allowed_groups); choose one of: "
                           f"{', '.join(repr(p.slug) for p in offered) or 'none'}")
    choices = ", ".join(repr(p.slug) for p in offered) or "none (profile_list is empty)"
    raise ProfileError(f"unknown profile {wanted!r}; choose one of: {choices}")


# ---- the user's options ---------------------------------------------------------------------


def option_value(profile: Profile, option: ProfileOption,
                 user_options: Mapping[str, object], suffix: str) -> str | None:
    """The value given for `option` (+ suffix) under any of its accepted names; conflicting
    values under two names are an error, never a silent pick."""
    names = (f"{option.key}{suffix}", f"{FORM_PREFIX}{option.key}{suffix}",
             f"{FORM_PREFIX}{profile.slug}--{option.key}{suffix}")
    found: dict[str, str] = {}
    for name in names:
        value = single_value(user_options.get(name))
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ProfileError(f"profile option {option.key!r}: {name} must be a string, got "
                               f"{type(value).__name__}")
        found[name] = value
    if len(set(found.values())) > 1:
        raise ProfileError(f"profile option {option.key!r}: conflicting values "
                           f"{json.dumps(found)}; send one")
    return next(iter(found.values()), None)


def _with_value(value: object, text: str) -> object:
    """`{value}` replaced by the user's text in every string (keys too), nothing else touched:
    the result is not scanned again, and other `{placeholders}` stay for the template."""
    if isinstance(value, str):
        return value.replace(VALUE_PLACEHOLDER, text)
    if isinstance(value, Mapping):
        return {_with_value(k, text): _with_value(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_value(v, text) for v in value]
    return value


def check_unlisted(profile: Profile, option: ProfileOption, value: str) -> None:
    where = f"profile option {option.key!r} of profile {profile.slug!r}"
    if not option.unlisted.enabled:
        raise ProfileError(f"{where}: takes no unlisted value (unlisted_choice is not "
                           f"enabled); choose one of: "
                           f"{', '.join(repr(c.key) for c in option.choices)}")
    regex = option.unlisted.validation_regex
    if regex and not re.fullmatch(regex, value):
        hint = f" ({option.unlisted.validation_message})" if option.unlisted.validation_message \
            else ""
        raise ProfileError(f"{where}: {value!r} does not match {regex!r}{hint}")


def select(profiles: Sequence[Profile], user_options: Mapping[str, object] | None,
           groups: Collection[str] | None = None, user: str = "this user") -> Selection:
    """The template, variables and overrides a spawn gets; a ProfileError naming the option
    (or profile) otherwise. Layers apply in KubeSpawner's order: the profile, then each
    option's choice in the profile's order."""
    options_in = dict(user_options or {})
    profile = choose_profile(profiles, options_in, groups, user)
    if profile is None:
        return Selection(None, None)
    template = TemplateRef(profile.template_name, profile.template_namespace)
    variables: list[tuple[str, dict[str, Any]]] = [
        (f"profile {profile.slug!r} variables", profile.variables)]
    overrides: list[tuple[str, dict[str, Any]]] = [
        (f"profile {profile.slug!r} kubespawner_override", profile.overrides)]
    chosen: dict[str, str] = {}
    for option in profile.options:
        where = f"profile option {option.key!r}"
        unlisted = option_value(profile, option, options_in, UNLISTED_SUFFIX)
        picked = option_value(profile, option, options_in, "")
        if unlisted is not None and picked is not None and picked not in UNLISTED_SENTINELS:
            raise ProfileError(f"{where}: both a choice ({picked!r}) and an unlisted value "
                               f"({unlisted!r}); send one")
        if unlisted is None and picked in UNLISTED_SENTINELS:
            raise ProfileError(f"{where}: the unlisted choice was picked but no value given "
                               f"({option.key}{UNLISTED_SUFFIX})")
        if unlisted is not None:
            check_unlisted(profile, option, unlisted)
            given = dict(_with_value(option.unlisted.variables, unlisted))
            if option.unlisted.variable:
                given[option.unlisted.variable] = unlisted
            variables.append((f"{where} (unlisted value)", given))
            overrides.append((f"{where} (unlisted value) kubespawner_override",
                              dict(_with_value(option.unlisted.overrides, unlisted))))
            chosen[option.key] = f"unlisted:{unlisted}"
            continue
        if picked is None:
            choice = option.default_choice()
            if choice is None:
                raise ProfileError(f"{where} of profile {profile.slug!r}: has no choices, so "
                                   f"it needs a value ({option.key}{UNLISTED_SUFFIX})")
        else:
            choice = next((c for c in option.choices if c.key == picked), None)
            if choice is None:
                listed = ", ".join(repr(c.key) for c in option.choices) or "none"
                other = " or an unlisted value" if option.unlisted.enabled else ""
                raise ProfileError(f"{where} of profile {profile.slug!r}: unknown choice "
                                   f"{picked!r}; choose one of: {listed}{other}")
        variables.append((f"{where} choice {choice.key!r}", choice.variables))
        overrides.append((f"{where} choice {choice.key!r} kubespawner_override",
                          choice.overrides))
        if choice.template is not None:
            template = TemplateRef(choice.template.name,
                                   choice.template.namespace or template.namespace)
        chosen[option.key] = choice.key
    return Selection(profile, template, tuple(variables),
                     tuple((w, o) for w, o in overrides if o), chosen)
