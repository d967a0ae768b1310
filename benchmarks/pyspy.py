"""py-spy (a dev tool, `pip install py-spy`, not a dependency) sampling one running process.

`Profile(pyspy, pid, path)` starts `py-spy record --pid` (raw collapsed stacks, non-blocking:
the process is not paused); `stop()` ends it with SIGINT, which makes py-spy write its file, and
returns a summary: samples, the top functions by own samples (the frame that was running) and
by inclusive samples (anywhere on the stack), and samples per thread kind (worker-3 -> worker).
Idle threads (waiting on a lock, a socket, a sleep) are not sampled: the figures say where the
operator's CPU time goes.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD_KIND = re.compile(r"[-_ ]?\d+$")


def frame_name(frame: str) -> str:
    """`reconcile (jupyternetes/operator/reconcile.py:190)` -> `reconcile (.../reconcile.py)`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    parts = match.group("file").replace("\\", "/").split("/")
    where = "/".join(parts[-2:]) if len(parts) > 1 else parts[0]
    return f"{match.group('func')} ({where})"


def parse_raw(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw format: `frame;frame;... count` per line, outermost frame first."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        if frames and frames[0].startswith("thread ("):  # `thread (tid): name` (--threads)
            thread = frames[0].partition("): ")[2] or frames[0]
            threads[_THREAD_KIND.sub("", thread)] += count
            frames = frames[1:]
        names = [frame_name(f) for f in frames]
        if not names:
            continue
        own[names[-1]] += count
        # Thread start-up frames are on every stack of a thread: no information.
        for name in {n for n in names if "(threading.py)" not in n}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)]

    return {"samples": total, "top_own_pct": share(own), "top_inclusive_pct": share(inclusive),
            "threads_pct": share(threads)}


class Profile:
    def __init__(self, pyspy: str, pid: int, path: Path, rate: int = 100) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [pyspy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
             "--threads", "--nonblocking", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self, top: int = 15) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.path.is_file():
            return {"error": f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}"}
        return {"file": str(self.path), **summarize(parse_raw(self.path.read_text()), top)}
