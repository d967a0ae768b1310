"""Process trees read from /proc: a process may exit at any point of the walk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.operator_process import process_tree
from jupyternetes.engine.runtime import procs


def test_children_and_descendants_of_a_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys, time; subprocess.Popen([sys.executable, "
                              "'-c', 'import time; time.sleep(60)']); time.sleep(60)"])
    try:
        def tree() -> list[int]:
            return procs.descendants(child.pid)
        deadline = time.monotonic() + 60
        while len(tree()) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the grandchild starts a moment after the child
        [grandchild] = tree()
        assert procs.children(os.getpid()).count(child.pid) == 1
        assert procs.children(child.pid) == [grandchild]
        assert process_tree(child.pid) == [child.pid, grandchild]
    finally:
        for pid in procs.descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()


def test_a_process_that_exits_during_the_walk_has_no_children(monkeypatch) -> None:
    """The process exits after its /proc folder was found and before it is read: the walk
    sees no children and raises nothing (Path.glob raised FileNotFoundError there, in an
    operator's tree walk and the harness's, test_ha failed on it once)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    real_is_dir = Path.is_dir
    monkeypatch.setattr(Path, "is_dir", lambda self: True if str(self).startswith(
        f"/proc/{gone.pid}/") else real_is_dir(self))
    assert procs.children(gone.pid) == []
    assert procs.descendants(gone.pid) == []
    assert process_tree(gone.pid) == [gone.pid]


@pytest.mark.parametrize("pid", [0, -1])
def test_no_children_for_a_pid_that_names_no_process(pid: int) -> None:
    assert procs.children(pid) == []
