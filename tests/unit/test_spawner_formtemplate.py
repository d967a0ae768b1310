"""jupyterhub-fancy-profiles' own form template, rendered by the spawner as KubeSpawner would:
the profile list it reads, and the form fields its script posts, are the ones we take."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jupyterhub_fancy_profiles as fancy

from jupyternetes.spawner import formtemplate, profiles
from tests.unit.test_spawner_profiles import PROFILES


def test_fancy_profiles_form_gets_kubespawners_profile_list() -> None:
    offered = profiles.visible_profiles(profiles.parse_profiles(PROFILES), [])
    page = formtemplate.render_form("", fancy.TEMPLATE_PATHS,
                                    profiles.kubespawner_shaped(offered), {"profile": "gpu"})
    match = re.search(r"window\.profileList = (.*?);\n", page)
    assert match, page[:500]
    shown = json.loads(match.group(1))
    assert [p["slug"] for p in shown] == ["plain", "gpu"]  # the staff profile is not offered
    image = shown[1]["profile_options"]["image"]
    assert list(image["choices"]) == ["base", "torch", "big"]
    assert image["choices"]["torch"]["default"] is True
    assert image["unlisted_choice"] == {
        "enabled": True, "display_name": "Other image", "display_name_in_choices": "Other...",
        "validation_regex": "^jupyter/.+:.+$",
        "validation_message": "an image jupyter/<name>:<tag>"}


def test_fancy_profiles_script_posts_the_fields_options_from_form_reads() -> None:
    script = (Path(fancy.TEMPLATE_PATHS[0]).parent / "static" / "dist" / "form.js").read_text()
    assert '"profile-option-".concat(profile, "--").concat(id)' in script
    assert '"".concat(FIELD_ID, "--unlisted-choice")' in script
    assert 'value: "unlisted_choice"' in script
    posted = {"profile": ["gpu"], "profile-option-gpu--image": ["unlisted_choice"],
              "profile-option-gpu--image--unlisted-choice": ["jupyter/me:1"]}
    options = profiles.options_from_form(posted)
    chosen = profiles.select(profiles.parse_profiles(PROFILES), options)
    assert chosen.chosen["image"] == "unlisted:jupyter/me:1"
