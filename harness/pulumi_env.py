"""Environment for the Pulumi engine: harness-built CLI, pre-installed plugins, no network.

Used by the end-to-end tests and usable by the operator: the functions here only compute values
(no global state is changed), so callers pass the result to `LocalWorkspace(env_vars=...)`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from pulumi.automation import PulumiCommand

from harness import paths

# Folder (under the tools folder) holding `bin/pulumi`: PulumiCommand(root=...) wants that layout.
# The build also links <tools>/pulumi to it so the CLI is on PATH like every other harness tool.
CLI_ROOT_NAME = "pulumi-cli"

# Switches that keep the engine off the network and away from anything outside PULUMI_HOME.
_OFFLINE_SWITCHES: dict[str, str] = {
    # No "a new version of pulumi is available" request at the start of every command.
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    # A missing plugin must fail with "plugin not found", never trigger a download.
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    # Package names are resolved locally, not through the Pulumi Registry service.
    "PULUMI_DISABLE_REGISTRY_RESOLVE": "true",
    # A pulumi-resource-* found on the user's PATH would silently win over the pinned plugin.
    "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
    # No links to the hosted AI assistant in error output (they point outside loopback).
    "PULUMI_SUPPRESS_NEO_LINK": "true",
}


def cli_root() -> Path:
    """Folder whose `bin/pulumi` is the harness-built CLI."""
    return paths.tools_dir() / CLI_ROOT_NAME


def backend_url(state_dir: Path | str) -> str:
    """The `file://` backend URL of a local state folder (created if missing)."""
    path = Path(state_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def pulumi_env(
    backend: str,
    passphrase: str,
    pulumi_home: Path | str | None = None,
    base_env: Mapping[str, str] | None = None,
    python_cmd: str | None = sys.executable,
) -> dict[str, str]:
    """Environment variables for running the harness-built Pulumi CLI against `backend`.

    `backend` is any Pulumi backend URL (use `backend_url()` for a local folder). The result
    starts from `base_env` (default: the current process environment) so that HOME, proxies
    and locale still reach the engine, and puts the harness tools first on PATH.
    `python_cmd` is the interpreter the Python language host runs Pulumi.yaml programs with
    (default: this process's, which has the pinned pulumi SDK); None leaves python3 on PATH.
    """
    env = dict(os.environ if base_env is None else base_env)
    home = Path(pulumi_home) if pulumi_home is not None else paths.pulumi_home()
    tools = str(paths.tools_dir())
    env["PATH"] = os.pathsep.join([tools, env["PATH"]]) if env.get("PATH") else tools
    env["PULUMI_HOME"] = str(home)
    env["PULUMI_BACKEND_URL"] = backend
    env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
    # A passphrase file set by the caller's shell would take precedence over the passphrase.
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    if python_cmd:
        # The harness language host ignores Pulumi.yaml's virtualenv option (see
        # tools/harness/pulumi/language-python/go.mod) but honours this variable.
        env["PULUMI_PYTHON_CMD"] = python_cmd
    env.update(_OFFLINE_SWITCHES)
    return env


def pulumi_command() -> PulumiCommand:
    """The Automation API handle on the harness-built CLI (checks that the CLI runs)."""
    root = cli_root()
    binary = root / "bin" / "pulumi"
    if not binary.is_file():
        raise FileNotFoundError(
            f"the Pulumi CLI is not built: {binary} is missing; "
            "build it with `bash tools/harness/build.sh` (or tools/harness/pulumi/build.sh)"
        )
    # The CLI carries its real version (set at link time), so the SDK's version check stays on.
    return PulumiCommand(root=str(root))


def kubernetes_plugin_dir(version: str, pulumi_home: Path | str | None = None) -> Path:
    """Where the engine looks for pulumi-resource-kubernetes `version` (e.g. "4.25.0")."""
    home = Path(pulumi_home) if pulumi_home is not None else paths.pulumi_home()
    return home / "plugins" / f"resource-kubernetes-v{version}"
