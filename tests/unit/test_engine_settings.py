"""engine.settings: which Pulumi settings the operator applies, per backend kind."""

from __future__ import annotations

import pytest

from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.runtime.operation import workspace_options


def test_file_backend_gets_every_diy_setting():
    env = engine_settings.cli_env("file:///var/lib/jupyternetes/state", {})
    assert env == {"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
                   "PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS": "true"}


@pytest.mark.parametrize("url", ["postgres://pulumi@127.0.0.1:5432/db", "s3://bucket/prefix",
                                 "gs://bucket", "azblob://container"])
def test_other_diy_backends_keep_their_backups(url):
    # A backend the admin brings keeps Pulumi's backup copies: only the warning scan goes.
    assert engine_settings.cli_env(url, {}) == {"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true"}


@pytest.mark.parametrize("url", ["https://api.pulumi.com", "http://127.0.0.1:8080", ""])
def test_service_backends_are_left_at_pulumis_defaults(url):
    assert engine_settings.cli_env(url, {}) == {}


def test_the_worker_passes_them_to_the_cli(tmp_path):
    settings = {"passphrase": "p", "backend_url": f"file://{tmp_path}", "project": "jupyternetes",
                "work_dir": str(tmp_path / "work")}
    opts = workspace_options(settings, "ns.name", [])
    assert opts.env_vars is not None
    for key, value in engine_settings.cli_env(settings["backend_url"]).items():
        assert opts.env_vars[key] == value


def test_the_defaults_switch_turns_them_all_off():
    assert engine_settings.cli_env("file:///s", {engine_settings.DEFAULTS_SWITCH: "true"}) == {}
    assert engine_settings.cli_env("file:///s", {engine_settings.DEFAULTS_SWITCH: "no"}) != {}
