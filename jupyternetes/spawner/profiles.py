"""Profiles: the choices a user gets on the hub's spawn page, each naming a template (pure).

Shaped like KubeSpawner 7.1's `profile_list` (display_name, slug, description, default,
`profile_options` with `choices` and `unlisted_choice`, `kubespawner_override`), but a profile
picks a JupyterNotebookTemplate and template variables instead of overriding pod fields:

- a profile: `template_name` / `template: {name, namespace}` / `template_namespace`,
  `variables`, `allowed_groups` (only members of one of these JupyterHub groups see it and may
  start it), `kubespawner_override` (only the traits of `traitvars`, which become
  `{jupyterhub.spawner.<name>}` variables);
- a choice of an option: `display_name`, `description`, `default`, `variables`, a template
  (the last option whose choice names one wins) and `kubespawner_override`;
- an option's `unlisted_choice`: `enabled`, `display_name`, `display_name_in_choices`,
  `validation_regex` (the whole value must match, as the form's `pattern` checks it),
  `validation_message`, `variable` (the variable it sets to the value), and `variables` /
  `kubespawner_override` whose strings have `{value}` replaced by the value.

`user_options` are KubeSpawner's: `{"profile": slug, "<option>": choice-key,
"<option>--unlisted-choice": value}`, and the spawn form's field names
(`profile-option-<slug>--<option>[--unlisted-choice]`) or `profile-option-<option>[...]` work too.
`select` turns them into a `Selection` or a `ProfileError` naming the option and what to change.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyternetes.render import hubvars
from jupyternetes.spawner import traitvars

PROFILE_OPTION = "profile"
FORM_PREFIX = "profile-option-"
UNLISTED_SUFFIX = "--unlisted-choice"
# What a form's select sends when the user picked "Other": KubeSpawner's form, fancy-profiles.
UNLISTED_SENTINELS = frozenset({"unlisted-choice", "unlisted_choice"})
VALUE_PLACEHOLDER = "{value}"

_PROFILE_KEYS = frozenset({"display_name", "slug", "description", "template", "template_name",
                           "template_namespace", "variables", "default", "profile_options",
                           "allowed_groups", "kubespawner_override"})
_OPTION_KEYS = frozenset({"display_name", "choices", "unlisted_choice"})
_CHOICE_KEYS = frozenset({"display_name", "description", "default", "variables", "template",
                          "template_name", "template_namespace", "kubespawner_override"})
_UNLISTED_KEYS = frozenset({"enabled", "display_name", "display_name_in_choices",
                            "description_in_choices", "validation_regex", "validation_message",
                            "variable", "variables", "kubespawner_override"})


class ProfileError(ValueError):
    """A profile_list entry or a user's choice that does not fit; says what to change."""


@dataclass(frozen=True)
class TemplateRef:
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class Choice:
    key: str
    display_name: str
    description: str = ""
    default: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    template: TemplateRef | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnlistedChoice:
    enabled: bool = False
    display_name: str = ""
    display_name_in_choices: str = "Other..."
    validation_regex: str | None = None
    validation_message: str = ""
    variable: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileOption:
    key: str
    display_name: str
    choices: tuple[Choice, ...] = ()
    unlisted: UnlistedChoice = field(default_factory=UnlistedChoice)

    def default_choice(self) -> Choice | None:
        return next((c for c in self.choices if c.default), self.choices[0] if self.choices
                    else None)


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    template_name: str
    template_namespace: str | None = None
    description: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    default: bool = False
    options: tuple[ProfileOption, ...] = ()
    allowed_groups: frozenset[str] | None = None  # None: everyone
    overrides: dict[str, Any] = field(default_factory=dict)


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


# ---- parsing --------------------------------------------------------------------------------


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "profile"


def _mapping(value: object, where: str, what: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProfileError(f"{where}: must be a dict of {what}, got {type(value).__name__}")
    return value


def _check_keys(entry: Mapping, known: frozenset[str], where: str) -> None:
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                           f"known: {', '.join(sorted(known))}")


def _text(entry: Mapping, key: str, where: str, required: bool = False) -> str:
    value = entry.get(key)
    if value is None or value == "":
        if required:
            raise ProfileError(f"{where}.{key}: required non-empty string")
        return ""
    if not isinstance(value, str):
        raise ProfileError(f"{where}.{key}: must be a string, got {type(value).__name__}")
    return value


def _variable_name(name: str, where: str) -> str:
    if name.lower().startswith(hubvars.SPAWNER_PREFIX):
        raise ProfileError(f"{where}: {name!r} is set from the spawner's traits "
                           f"({hubvars.SPAWNER_PREFIX}*); use kubespawner_override instead")
    return name


def _variables(entry: Mapping, where: str) -> dict[str, Any]:
    return {_variable_name(str(k), f"{where}.variables"): v for k, v in _mapping(
        entry.get("variables"), f"{where}.variables", "name -> string").items()}


def _template(entry: Mapping, where: str) -> TemplateRef | None:
    template = _mapping(entry.get("template"), f"{where}.template", "name and namespace")
    name = entry.get("template_name") or template.get("name")
    namespace = entry.get("template_namespace") or template.get("namespace") or None
    if name is None:
        if namespace is not None:
            raise ProfileError(f"{where}: template_namespace without template_name")
        return None
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{where}.template_name: must be a template's name (a string)")
    if namespace is not None and not isinstance(namespace, str):
        raise ProfileError(f"{where}.template_namespace: must be a string")
    return TemplateRef(name, namespace)


def _overrides(entry: Mapping, where: str) -> dict[str, Any]:
    raw = _mapping(entry.get("kubespawner_override"), f"{where}.kubespawner_override",
                   "trait -> value")
    unknown = sorted(set(raw) - set(traitvars.TRAITS))
    if unknown:
        raise ProfileError(
            f"{where}.kubespawner_override: {', '.join(map(repr, unknown))} has no meaning "
            f"here (the template decides the pod); known: {', '.join(traitvars.TRAITS)}. Put "
            "the setting in the template, or in `variables` for the template to use")
    return dict(raw)


def _choice(key: object, entry: object, where: str) -> Choice:
    if not isinstance(key, str) or not key:
        raise ProfileError(f"{where}: choice keys must be non-empty strings, got {key!r}")
    if key in UNLISTED_SENTINELS:
        raise ProfileError(f"{where}: {key!r} is what the form sends for the unlisted choice; "
                           "name the choice otherwise")
    if not isinstance(entry, Mapping):
        raise ProfileError(f"{where}: must be a dict, got {type(entry).__name__}")
    _check_keys(entry, _CHOICE_KEYS, where)
    return Choice(key=key, display_name=_text(entry, "display_name", where) or key,
                  description=_text(entry, "description", where),
                  default=bool(entry.get("default", False)), variables=_variables(entry, where),
                  template=_template(entry, where), overrides=_overrides(entry, where))


def _unlisted(entry: object, where: str) -> UnlistedChoice:
    if entry is None:
        return UnlistedChoice()
    if not isinstance(entry, Mapping):
        raise ProfileError(f"{where}: must be a dict, got {type(entry).__name__}")
    _check_keys(entry, _UNLISTED_KEYS, where)
    regex = entry.get("validation_regex") or None
    if regex is not None:
        if not isinstance(regex, str):
            raise ProfileError(f"{where}.validation_regex: must be a string")
        try:
            re.compile(regex)
        except re.error as exc:
            raise ProfileError(f"{where}.validation_regex: {regex!r} is not a regular "
                               f"expression: {exc}") from exc
    variable = entry.get("variable") or None
    if variable is not None and not isinstance(variable, str):
        raise ProfileError(f"{where}.variable: must be a variable name (a string)")
    if variable is not None:
        _variable_name(variable, f"{where}.variable")
    unlisted = UnlistedChoice(
        enabled=bool(entry.get("enabled", False)), display_name=_text(entry, "display_name", where),
        display_name_in_choices=_text(entry, "display_name_in_choices", where) or "Other...",
        validation_regex=regex, validation_message=_text(entry, "validation_message", where),
        variable=variable, variables=_variables(entry, where),
        overrides=_overrides(entry, where))
    if unlisted.enabled and not (unlisted.variable or unlisted.variables or unlisted.overrides):
        raise ProfileError(f"{where}: enabled, but the value goes nowhere: set `variable` (the "
                           "variable it sets), or `variables`/`kubespawner_override` with "
                           "'{value}'")
    return unlisted


def _options(entry: Mapping, where: str) -> tuple[ProfileOption, ...]:
    options: list[ProfileOption] = []
    raw = _mapping(entry.get("profile_options"), f"{where}.profile_options", "options")
    for key, option in raw.items():
        here = f"{where}.profile_options.{key}"
        if not isinstance(key, str) or not key or "--" in key:
            raise ProfileError(f"{here}: option keys must be non-empty strings without '--' "
                               "(the form separates its fields with it)")
        if not isinstance(option, Mapping):
            raise ProfileError(f"{here}: must be a dict, got {type(option).__name__}")
        _check_keys(option, _OPTION_KEYS, here)
        choices_raw = _mapping(option.get("choices"), f"{here}.choices", "key -> choice")
        choices = tuple(_choice(k, v, f"{here}.choices.{k}") for k, v in choices_raw.items())
        if sum(c.default for c in choices) > 1:
            raise ProfileError(f"{here}.choices: more than one choice has default: True")
        unlisted = _unlisted(option.get("unlisted_choice"), f"{here}.unlisted_choice")
        if not choices and not unlisted.enabled:
            raise ProfileError(f"{here}: no choices and no enabled unlisted_choice; give it "
                               "at least one")
        options.append(ProfileOption(key=key, display_name=_text(option, "display_name", here)
                                     or key, choices=choices, unlisted=unlisted))
    return tuple(options)


def _groups(entry: Mapping, where: str) -> frozenset[str] | None:
    raw = entry.get("allowed_groups")
    if raw is None:
        return None
    if isinstance(raw, str) or not isinstance(raw, Collection) or not all(
            isinstance(g, str) and g for g in raw):
        raise ProfileError(f"{where}.allowed_groups: must be a list of JupyterHub group names")
    return frozenset(raw)


def parse_profiles(raw: Sequence[Mapping] | Mapping[str, Mapping]) -> tuple[Profile, ...]:
    """Profiles from `profile_list` entries (a list, or KubeSpawner's dict form: its values in
    key order); errors name the entry and the field."""
    if isinstance(raw, Mapping):
        raw = [raw[key] for key in sorted(raw)]
    profiles: list[Profile] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw or []):
        where = f"profile_list[{index}]"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{where}: must be a dict, got {type(entry).__name__}")
        _check_keys(entry, _PROFILE_KEYS, where)
        display = _text(entry, "display_name", where, required=True)
        template = _template(entry, where)
        if template is None:
            raise ProfileError(f"{where}: no template: set template_name (or template.name) "
                               "to a JupyterNotebookTemplate's name")
        slug = entry.get("slug") or slugify(display)
        if not isinstance(slug, str):
            raise ProfileError(f"{where}.slug: must be a string")
        if slug in seen:
            raise ProfileError(f"{where}.slug: {slug!r} is used by an earlier profile; slugs "
                               "must be unique")
        seen.add(slug)
        profiles.append(Profile(
            slug=slug, display_name=display, template_name=template.name,
            template_namespace=template.namespace,
            description=_text(entry, "description", where), variables=_variables(entry, where),
            default=bool(entry.get("default", False)), options=_options(entry, where),
            allowed_groups=_groups(entry, where), overrides=_overrides(entry, where)))
    if sum(p.default for p in profiles) > 1:
        raise ProfileError("profile_list: more than one profile has default: True; mark one")
    return tuple(profiles)


# ---- who sees what --------------------------------------------------------------------------


def offered_to(profile: Profile, groups: Collection[str]) -> bool:
    return profile.allowed_groups is None or bool(profile.allowed_groups & set(groups))


def visible_profiles(profiles: Sequence[Profile],
                     groups: Collection[str]) -> tuple[Profile, ...]:
    """The profiles a member of `groups` sees and may start."""
    return tuple(p for p in profiles if offered_to(p, groups))


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked default, else the first; None when there are no profiles."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def _single(value: object) -> object:
    if isinstance(value, list) and len(value) == 1:  # raw form data
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
    wanted = _single((user_options or {}).get(PROFILE_OPTION))
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


def _option_value(profile: Profile, option: ProfileOption,
                  user_options: Mapping[str, object], suffix: str) -> str | None:
    """The value given for `option` (+ suffix) under any of its accepted names; conflicting
    values under two names are an error, never a silent pick."""
    names = (f"{option.key}{suffix}", f"{FORM_PREFIX}{option.key}{suffix}",
             f"{FORM_PREFIX}{profile.slug}--{option.key}{suffix}")
    found: dict[str, str] = {}
    for name in names:
        value = _single(user_options.get(name))
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
        unlisted = _option_value(profile, option, options_in, UNLISTED_SUFFIX)
        picked = _option_value(profile, option, options_in, "")
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


# ---- the spawn page -------------------------------------------------------------------------


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
        saved_unlisted = _option_value(profile, option, saved, UNLISTED_SUFFIX) or ""
        saved_choice = _option_value(profile, option, saved, "")
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
    wanted = _single(saved.get(PROFILE_OPTION))
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
