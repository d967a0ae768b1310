"""Where the harness keeps its Go-built tools and state, outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the harness cache: $JUPYTERNETES_CACHE or ~/.cache/jupyternetes."""
    env = os.environ.get("JUPYTERNETES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "jupyternetes"


def tools_dir() -> Path:
    """Folder of built binaries: $JUPYTERNETES_TOOLS or <cache>/tools."""
    env = os.environ.get("JUPYTERNETES_TOOLS")
    return Path(env) if env else cache_dir() / "tools"


def tool(name: str) -> Path:
    """Path of one built binary; raises with the build command when it is missing."""
    path = tools_dir() / name
    if not path.is_file():
        raise FileNotFoundError(
            f"harness tool {name!r} not found at {path}; "
            "build it with `bash tools/harness/build.sh`"
        )
    return path


def pulumi_home() -> Path:
    """PULUMI_HOME with the Kubernetes provider plugin pre-installed by the harness build."""
    return cache_dir() / "pulumi-home"
