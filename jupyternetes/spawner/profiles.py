"""Profiles: the choices a user gets on the hub's spawn page, each naming a template: the model
and `parse_profiles` (pure).

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

A user's choice of them: `selection`; the spawn page: `profileform`. The names of
`user_options` and form fields are here, as both use them.
"""

from __future__ import annotations

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


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked default, else the first; None when there are no profiles."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


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
