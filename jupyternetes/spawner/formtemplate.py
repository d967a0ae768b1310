"""The spawn page from an admin's Jinja2 template, as KubeSpawner renders `form.html`.

`profile_form_template` (the template's text) or a `form.html` in
`additional_profile_form_template_paths` is rendered with `profile_list` (the user's profiles in
KubeSpawner's initialized shape, `profiles.kubespawner_shaped`) and `user_options` (the last
ones), so a KubeSpawner form template, or jupyterhub-fancy-profiles' (`profile_list|tojson`),
works unchanged. Jinja2 comes with JupyterHub.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FORM_FILE = "form.html"


def render_form(template_text: str, template_paths: Sequence[str],
                profile_list: list[dict[str, Any]], user_options: Mapping[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader

    env = Environment(loader=FileSystemLoader(list(template_paths)), autoescape=True)
    # Profiles are shown in the admin's order; jinja's tojson would sort their keys.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    template = (env.from_string(template_text) if template_text
                else env.get_template(FORM_FILE))
    return template.render(profile_list=profile_list, user_options=dict(user_options))
