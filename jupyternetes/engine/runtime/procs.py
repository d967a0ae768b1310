"""Process facts read from the OS (Linux /proc), shared by the stack engine and the harness."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (exited, not yet reaped) counts as gone: a killed CLI
    whose parent died too may linger as one where nothing reaps orphans (a minimal init in a
    container), and it holds nothing."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from every thread's /proc/<pid>/task/<tid>/children; [] once
    it is gone. The process may exit at any point of the read: never an error."""
    tasks = Path(f"/proc/{pid}/task")
    try:
        # Not Path.glob: it raises when the folder goes between its check and its scandir.
        threads = os.listdir(tasks)
    except OSError:
        return []
    found: list[int] = []
    for thread in threads:
        try:
            found += [int(c) for c in (tasks / thread / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(root: int) -> list[int]:
    """Every process below `root` (its children, theirs, ...), parents first; [] when none.
    Read from /proc/<pid>/task/*/children, so processes that started a session of their own
    (the stack workers) are found too."""
    found: list[int] = []
    todo = [root]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found
