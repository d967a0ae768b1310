"""Temporary Pulumi workspace folders of the stack workers, and the sweep of dead workers' ones.

A worker makes `<tmp>/jupyternetes-stack-<its pid>-<random>` per operation and removes it when
done; a worker killed with SIGKILL (timeout, operator killed) cannot. At operator start the
folders whose owning process is gone are removed; a folder whose pid still runs is left alone,
because other operators (and their workers) may share this machine's temp dir. Shared by the
worker (which makes the folders) and the engine (which sweeps them), so it imports neither.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from jupyternetes.engine.runtime.procs import pid_alive

PREFIX = "jupyternetes-stack-"


def make_workspace(parent: str | None = None) -> Path:
    """A new private folder named after this process (mode 0700, like mkdtemp)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def owner_pid(folder: Path) -> int | None:
    """The pid in `jupyternetes-stack-<pid>-<random>`; None for any other name (folders of
    versions that did not record it are never swept: their owner cannot be known)."""
    rest = folder.name.removeprefix(PREFIX)
    if rest == folder.name:
        return None
    pid, dash, suffix = rest.partition("-")
    return int(pid) if dash and suffix and pid.isdigit() else None


def stale_workspaces(parent: str | Path | None = None,
                     alive: Callable[[int], bool] = pid_alive) -> list[Path]:
    root = Path(parent or tempfile.gettempdir())
    stale = []
    for folder in sorted(root.glob(f"{PREFIX}*")):
        pid = owner_pid(folder)
        if pid is not None and folder.is_dir() and not folder.is_symlink() and not alive(pid):
            stale.append(folder)
    return stale


def sweep_stale_workspaces(parent: str | Path | None = None,
                           alive: Callable[[int], bool] = pid_alive,
                           project: str | None = None,
                           pulumi_home: str | None = None) -> list[str]:
    """Remove the workspace folders of workers that are gone (with the CLI's settings file of
    each, when `project` is given: see cli_settings_file); one line per folder removed."""
    actions = []
    for folder in stale_workspaces(parent, alive):
        if project:
            cli_settings_file(folder, project, pulumi_home).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            actions.append(f"removed the workspace {folder} of a stack worker that is gone "
                           f"(pid {owner_pid(folder)})")
    return actions


def cli_settings_file(work_dir: str | Path, project: str, pulumi_home: str | None) -> Path:
    """The file where the Pulumi CLI keeps a workspace's current stack:
    `$PULUMI_HOME/workspaces/<project>-<sha1 of the Pulumi.yaml path>-workspace.json`
    (pkg/workspace/workspace.go settingsPath). It is keyed by the backend URL, password and all,
    and one is left per temporary workspace: the worker removes it with the workspace."""
    project_file = os.path.realpath(os.path.join(work_dir, "Pulumi.yaml"))
    digest = hashlib.sha1(project_file.encode(), usedforsecurity=False).hexdigest()
    home = Path(pulumi_home or os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return home / "workspaces" / f"{project}-{digest}-workspace.json"
