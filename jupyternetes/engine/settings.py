"""Settings the operator gives the Pulumi CLI and the Kubernetes provider it runs per operation.

Pure values: the stack worker adds `cli_env(backend_url)` to the environment of every CLI it
starts (the provider plugin inherits the CLI's environment), and the program passes
`CLUSTER_IDENTIFIER` to its explicit provider. Each setting here was measured (see
benchmarks/README.md, "Engine settings") and checked against the SIGKILL-during-up tests.
Pulumi's defaults are left alone where a setting would change what a user's own backend keeps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

# The provider's `clusterIdentifier`: with it set and unchanged, a changed kubeconfig (a rotated
# token or certificate, a renamed context, a moved file) is an update of the provider, never a
# replacement of the provider and with it of every object of every stack (pulumi-kubernetes
# DiffConfig). Adding it to an existing stack is an update too. The operator manages exactly
# one cluster, the one it runs against, so one constant identifies it for every stack.
CLUSTER_IDENTIFIER = "jupyternetes-operator-cluster"

# For any DIY backend (file://, postgres://, s3://, ...): login does not scan the backend for
# stacks in the legacy (non-project) layout just to print a warning nobody reads here.
DIY_BACKEND_ENV: dict[str, str] = {
    "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
}

# Only for the operator's own file:// state folder: no copy of the checkpoint into
# `.pulumi/backups/<project>/<stack>/` before every update (one file per update per stack,
# never pruned: 5,000 users x every spawn). The previous checkpoint is still kept as
# `<stack>.json.bak` on every save, and that is what diystate.restore_checkpoint needs.
FILE_BACKEND_ENV: dict[str, str] = {
    "PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS": "true",
}

CLOUD_SCHEMES = ("https", "http")

# Set to "true" in the operator's environment: Pulumi's defaults for every CLI run (the settings
# above are not applied, new stacks come from `pulumi stack init`). For comparing figures and
# for ruling these shortcuts out.
DEFAULTS_SWITCH = "JUPYTERNETES_PULUMI_DEFAULTS"


def is_diy_backend(backend_url: str) -> bool:
    """Everything but the Pulumi Cloud service (https://, or no URL: the default) is DIY."""
    scheme = urlparse(backend_url).scheme
    return bool(backend_url) and scheme not in CLOUD_SCHEMES


def shortcuts_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when DEFAULTS_SWITCH asks for plain Pulumi: no settings from this module and
    new stacks through `pulumi stack init` (no stackseed)."""
    return (os.environ if environ is None else environ).get(DEFAULTS_SWITCH, "").lower() != "true"


def cli_env(backend_url: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Extra environment for each Pulumi CLI run against `backend_url` (and its plugins)."""
    env: dict[str, str] = {}
    if not shortcuts_enabled(environ):
        return env
    if is_diy_backend(backend_url):
        env.update(DIY_BACKEND_ENV)
    if urlparse(backend_url).scheme == "file":
        env.update(FILE_BACKEND_ENV)
    return env
