"""pytest plugin: a throwaway Pulumi environment for end-to-end tests (registered by conftest.py).

Each test that asks for `pulumi_env` gets its own `file://` state folder and passphrase, the
harness-built CLI and the harness PULUMI_HOME (where `bash tools/harness/build.sh` installed the
Kubernetes provider plugin). Nothing is downloaded: plugin acquisition and update checks are off.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from pulumi.automation import PulumiCommand

from harness import pulumi_env as harness_pulumi


@dataclass(frozen=True)
class PulumiTestEnv:
    """What tests get from the `pulumi_env` fixture."""

    env: dict[str, str]  # for LocalWorkspaceOptions(env_vars=...) / subprocess env
    backend_url: str
    passphrase: str
    pulumi_home: Path
    work_dir: Path  # an empty folder for the workspace (Pulumi.yaml, stack settings)
    command: PulumiCommand


@pytest.fixture
def pulumi_env(tmp_path: Path) -> PulumiTestEnv:
    state_dir = tmp_path / "pulumi-state"
    work_dir = tmp_path / "pulumi-work"
    work_dir.mkdir()
    backend = harness_pulumi.backend_url(state_dir)
    passphrase = secrets.token_urlsafe(16)
    home = harness_pulumi.paths.pulumi_home()
    return PulumiTestEnv(
        env=harness_pulumi.pulumi_env(backend, passphrase, pulumi_home=home),
        backend_url=backend,
        passphrase=passphrase,
        pulumi_home=home,
        work_dir=work_dir,
        command=harness_pulumi.pulumi_command(),
    )
