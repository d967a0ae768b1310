"""Profiles: the choices a user gets on the hub's spawn page, each naming a template (pure).

Shaped like KubeSpawner's `profile_list` (display_name, slug, description, default), but a
profile chooses a JupyterNotebookTemplate (and extra variables) instead of overriding pod fields.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PROFILE_OPTION = "profile"
_KNOWN_KEYS = frozenset({"display_name", "slug", "description", "template", "template_name",
                         "template_namespace", "variables", "default"})


class ProfileError(ValueError):
    """A profile_list entry or a user's choice that does not fit; says what to change."""


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    template_name: str
    template_namespace: str | None = None
    description: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    default: bool = False


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "profile"


def parse_profiles(raw: Sequence[Mapping]) -> tuple[Profile, ...]:
    """Profiles from `profile_list` entries; errors name the entry and the field."""
    profiles: list[Profile] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw or []):
        where = f"profile_list[{index}]"
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{where}: must be a dict, got {type(entry).__name__}")
        unknown = sorted(set(entry) - _KNOWN_KEYS)
        if unknown:
            raise ProfileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(sorted(_KNOWN_KEYS))}")
        display = entry.get("display_name")
        if not isinstance(display, str) or not display:
            raise ProfileError(f"{where}.display_name: required non-empty string")
        template = entry.get("template") or {}
        if not isinstance(template, Mapping):
            raise ProfileError(f"{where}.template: must be a dict with name and namespace")
        name = entry.get("template_name") or template.get("name")
        if not isinstance(name, str) or not name:
            raise ProfileError(f"{where}: no template: set template_name (or template.name) "
                               "to a JupyterNotebookTemplate's name")
        namespace = entry.get("template_namespace") or template.get("namespace") or None
        if namespace is not None and not isinstance(namespace, str):
            raise ProfileError(f"{where}.template_namespace: must be a string")
        slug = entry.get("slug") or slugify(display)
        if not isinstance(slug, str):
            raise ProfileError(f"{where}.slug: must be a string")
        if slug in seen:
            raise ProfileError(f"{where}.slug: {slug!r} is used by an earlier profile; slugs "
                               "must be unique")
        seen.add(slug)
        variables = entry.get("variables") or {}
        if not isinstance(variables, Mapping):
            raise ProfileError(f"{where}.variables: must be a dict of name -> string")
        profiles.append(Profile(
            slug=slug, display_name=display, template_name=name, template_namespace=namespace,
            description=str(entry.get("description") or ""),
            variables={str(k): v for k, v in variables.items()},
            default=bool(entry.get("default", False)),
        ))
    if sum(p.default for p in profiles) > 1:
        raise ProfileError("profile_list: more than one profile has default: True; mark one")
    return tuple(profiles)


def default_profile(profiles: Sequence[Profile]) -> Profile | None:
    """The profile marked default, else the first; None when there are no profiles."""
    for profile in profiles:
        if profile.default:
            return profile
    return profiles[0] if profiles else None


def choose_profile(profiles: Sequence[Profile],
                   user_options: Mapping[str, object] | None) -> Profile | None:
    """The profile the user asked for (`{"profile": slug}`), else the default one.

    None when there are no profiles (the spawner's own template is used); an unknown slug is an
    error naming the choices, never a silent fallback to another environment.
    """
    wanted = (user_options or {}).get(PROFILE_OPTION)
    if isinstance(wanted, list) and len(wanted) == 1:  # raw form data
        wanted = wanted[0]
    if wanted in (None, ""):
        return default_profile(profiles)
    for profile in profiles:
        if profile.slug == wanted:
            return profile
    choices = ", ".join(repr(p.slug) for p in profiles) or "none (profile_list is empty)"
    raise ProfileError(f"unknown profile {wanted!r}; choose one of: {choices}")


def options_form_html(profiles: Sequence[Profile]) -> str:
    """Radio buttons the hub shows on its spawn page; empty when there is nothing to choose."""
    if len(profiles) < 2:
        return ""
    chosen = default_profile(profiles)
    rows = []
    for profile in profiles:
        slug = html.escape(profile.slug, quote=True)
        checked = " checked" if profile is chosen else ""
        description = (f"<div class='description'>{html.escape(profile.description)}</div>"
                       if profile.description else "")
        rows.append(
            f"<label for='profile-{slug}' class='form-control input-group'>"
            f"<input type='radio' name='{PROFILE_OPTION}' id='profile-{slug}' value='{slug}'"
            f"{checked}/> <strong>{html.escape(profile.display_name)}</strong>{description}"
            "</label>")
    return "<div class='jupyternetes-profiles'>" + "".join(rows) + "</div>"


def options_from_form(form_data: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """`user_options` from the spawn page's form data (each field arrives as a list)."""
    values = form_data.get(PROFILE_OPTION) or []
    return {PROFILE_OPTION: values[0]} if values else {}
