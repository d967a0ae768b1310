"""When a Pulumi stack lock of the file:// backend may be removed: only when its writer is gone.

Pulumi's DIY backend takes a lock per running operation, a file
`.pulumi/locks/<organization>/<project>/<stack>/<lock-id>.json` holding the CLI's
`{pid, username, hostname, timestamp}` (pkg/backend/diy/lock.go). A lock whose CLI was killed
stays behind and blocks the stack until someone removes it; removing a lock whose CLI still runs
lets a second writer into the stack's files. So a lock is removed only when its holder is
*provably* gone. The rule (`judge`), in order:

1. Same host as this operator (the lock's `hostname` is ours): the holder is gone when its pid
   is not running (`procs.pid_alive`; a zombie counts as gone). The OS says so; nothing else
   is needed, leader or not.
2. Another host (or an unreadable lock, whose holder is unknown): this process cannot see that
   host's processes. The holder is gone only when it lost the operator Lease:
   - only the current leader may decide it (`leader_since` is when it acquired the Lease;
     without leader election, or on a standby, such a lock is never removed);
   - and only for a lock written before that acquisition (both the lock's own timestamp and the
     file's mtime must be older). Why that proves it: engine operations are started only by
     the leader; the Lease can be taken over only after its previous holder failed to renew
     it for a whole lease duration; and a leader that cannot renew within the renew deadline
     (shorter than the lease duration) kills its engine processes and exits (see
     coordination/lease.py). So every operator that could have written such a lock had stopped
     before this one became leader. A lock written after the acquisition cannot come from an
     older leader: it belongs to someone alive (an admin's `pulumi` CLI, say) and is kept.

   The rule assumes every operator on the backend takes part in the same Lease, and bounded
   clock drift between hosts (the usual lease assumption). A lock an admin's own CLI left
   before the leader started is removed as well; the admin can re-run their command.

   With `--no-leader-elect` the admin says this operator is the only one on its state (one
   replica, replaced only after it stopped: the Recreate strategy), so it is the writer from
   its start, and `leader_since` is that time: a pod rescheduled to another node (another
   hostname) removes its predecessor's locks instead of leaving those stacks locked forever.

Locks are judged fresh each time they are looked at; the caller logs every removal with the
reason, so "no live lock was removed" can be checked from the log.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jupyternetes.engine.runtime.procs import pid_alive as _pid_alive

_FRACTION = re.compile(r"\.(\d+)")

# Pulumi's DIY backend keeps a lock file per running operation here (pkg/backend/diy/lock.go):
# .pulumi/locks/<organization>/<project>/<stack>/<lock-id>.json holding {pid, hostname, ...}.
DIY_ORGANIZATION = "organization"

# The DIY backend's error when another lock is held on the stack (pkg/backend/diy/lock.go).
LOCKED_ERROR = re.compile(r"the stack is currently locked by \d+ lock")


def is_locked_error(message: str) -> bool:
    return bool(LOCKED_ERROR.search(message or ""))


@dataclass(frozen=True)
class LockFile:
    path: Path
    pid: int | None
    hostname: str | None
    # Unix time the lock was written: the later of its own timestamp and the file's mtime
    # (the later one is the conservative one for "written before the Lease was acquired").
    written_at: float | None

    @property
    def stack(self) -> str:
        return self.path.parent.name


@dataclass(frozen=True)
class Verdict:
    stale: bool
    reason: str


def parse_timestamp(text: object) -> float | None:
    """Unix time of Go's RFC 3339 (nanoseconds allowed) timestamp; None when unparseable."""
    if not isinstance(text, str) or not text:
        return None
    value = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text.strip(), count=1)
    value = value.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_lock(path: Path) -> LockFile:
    """The lock at `path`; pid/hostname None when the file cannot be read or parsed."""
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        pid = int(content.get("pid") or 0) or None
        hostname = content.get("hostname") if isinstance(content.get("hostname"), str) else None
        stamp = parse_timestamp(content.get("timestamp"))
    except (OSError, ValueError, TypeError, AttributeError):
        return LockFile(path, None, None, mtime)
    times = [t for t in (stamp, mtime) if t is not None]
    return LockFile(path, pid, hostname, max(times) if times else None)


def judge(lock: LockFile, host: str, leader_since: float | None,
          pid_alive: Callable[[int], bool] = _pid_alive) -> Verdict:
    """Whether `lock` is stale under the module's rule, and why (for the log)."""
    if lock.hostname == host and lock.pid:
        if pid_alive(lock.pid):
            return Verdict(False, f"holder pid {lock.pid} on this host ({host}) is running")
        return Verdict(True, f"holder pid {lock.pid} on this host ({host}) is gone")
    holder = (f"holder pid {lock.pid} on host {lock.hostname}" if lock.hostname
              else "unreadable lock, holder unknown")
    if leader_since is None:
        return Verdict(False, f"{holder}: not provably gone (only the Lease holder may remove "
                              "another host's lock)")
    if lock.written_at is None or lock.written_at >= leader_since:
        return Verdict(False, f"{holder}: written after this operator acquired the Lease, so "
                              "not by a previous leader")
    return Verdict(True, f"{holder}: written before this operator acquired the Lease (or, "
                         f"with --no-leader-elect, started) at {_utc(leader_since)}; its "
                         "writer stopped before")


def lock_files(root: Path) -> list[Path]:
    """Every lock file of a project's lock folder (`<stack>/<lock-id>.json`), and the
    temporary files of lock writes that never finished (`<lock-id>.json.<hex>.tmp`): fileblob
    writes next to the blob, its listing does not skip them, and Pulumi's lock check reads every
    file it lists, so a leftover one fails every later operation of the stack with "unexpected
    end of JSON input". They are judged like locks (an empty one like an unreadable lock)."""
    if not root.is_dir():
        return []
    return sorted([*root.glob("*/*.json"), *root.glob("*/*.json.*.tmp")])


def judge_all(root: Path, leader_since: float | None, hostname: str | None = None,
              pid_alive: Callable[[int], bool] = _pid_alive) -> list[tuple[LockFile, Verdict]]:
    host = hostname or socket.gethostname()
    return [(lock, judge(lock, host, leader_since, pid_alive))
            for lock in map(read_lock, lock_files(root))]


def lock_dir(backend_dir: Path, project: str) -> Path:
    return backend_dir / ".pulumi" / "locks" / DIY_ORGANIZATION / project


def locked_stacks(backend_dir: Path, project: str, hostname: str | None = None,
                  pid_alive: Callable[[int], bool] = _pid_alive,
                  leader_since: float | None = None) -> set[str]:
    """Stacks of our project with a lock file whose holder may be alive (the rule above: a lock
    is stale when on this host its pid is not running, or, for another host's or an unreadable
    lock, only for the Lease holder and only when written before `leader_since`, the Unix time
    it acquired the Lease)."""
    root = lock_dir(backend_dir, project)
    return {lock.stack for lock, verdict in judge_all(root, leader_since, hostname, pid_alive)
            if not verdict.stale}


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
