"""Workspace folders of killed stack workers are swept; live workers' and unknown ones stay."""

from __future__ import annotations

import os
import subprocess
import sys

from jupyternetes.engine.runtime import workspaces


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_folder_name_carries_the_pid_of_its_maker(tmp_path):
    folder = workspaces.make_workspace(str(tmp_path))
    assert folder.name.startswith(f"jupyternetes-stack-{os.getpid()}-")
    assert workspaces.owner_pid(folder) == os.getpid()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


def test_only_folders_of_gone_processes_are_removed(tmp_path):
    mine = workspaces.make_workspace(str(tmp_path))
    gone = tmp_path / f"jupyternetes-stack-{dead_pid()}-abc123"
    (gone / "sub").mkdir(parents=True)
    (gone / "sub" / "Pulumi.yaml").write_text("name: x\n")
    old_style = tmp_path / "jupyternetes-stack-k2j4h5g6"  # an older version's: owner unknown
    old_style.mkdir()
    other = tmp_path / "jupyternetes-cluster-1-x"
    other.mkdir()
    actions = workspaces.sweep_stale_workspaces(tmp_path)
    assert not gone.exists()
    assert mine.exists() and old_style.exists() and other.exists()
    assert len(actions) == 1 and str(gone) in actions[0]


def test_a_file_or_symlink_with_the_name_is_not_followed(tmp_path):
    target = tmp_path / "keep"
    target.mkdir()
    (tmp_path / "jupyternetes-stack-1-link").symlink_to(target)
    assert workspaces.stale_workspaces(tmp_path, alive=lambda pid: False) == []
    assert target.exists()
