"""The stale-lock rule (jupyternetes/locks.py): only a provably gone holder's lock is stale."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from jupyternetes.engine.state import locks

HOST = "op-host"


def write(root: Path, stack: str, content: object, mtime: float | None = None) -> Path:
    path = root / stack / "lock.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def lock(pid: int | None, host: str | None, written_at: float | None) -> locks.LockFile:
    return locks.LockFile(Path("/x/ns.a/l.json"), pid, host, written_at)


def alive(*pids: int):
    return lambda pid: pid in pids


def test_same_host_depends_only_on_the_pid():
    assert not locks.judge(lock(7, HOST, 0.0), HOST, None, alive(7)).stale
    assert not locks.judge(lock(7, HOST, 0.0), HOST, 1e12, alive(7)).stale  # even as leader
    verdict = locks.judge(lock(8, HOST, 0.0), HOST, None, alive(7))
    assert verdict.stale and "pid 8" in verdict.reason and "gone" in verdict.reason


def test_another_hosts_lock_needs_the_lease_and_to_be_older_than_its_acquisition():
    old = lock(7, "other", 1000.0)
    assert not locks.judge(old, HOST, None, alive()).stale  # standby / no leader election
    assert locks.judge(old, HOST, 1000.5, alive()).stale
    # Written at or after the acquisition: not from a previous leader.
    assert not locks.judge(old, HOST, 1000.0, alive()).stale
    assert not locks.judge(old, HOST, 999.0, alive()).stale
    # No time known at all: never provably old.
    assert not locks.judge(lock(7, "other", None), HOST, 1e12, alive()).stale


def test_unreadable_lock_is_judged_like_another_hosts():
    unknown = lock(None, None, 1000.0)
    assert not locks.judge(unknown, HOST, None, alive()).stale
    assert locks.judge(unknown, HOST, 2000.0, alive()).stale


def test_read_lock_takes_the_later_of_timestamp_and_mtime(tmp_path):
    path = write(tmp_path, "ns.a", {"pid": 5, "hostname": "h",
                                    "timestamp": "2026-01-01T00:00:00.123456789Z"},
                 mtime=1_700_000_000)
    read = locks.read_lock(path)
    assert (read.pid, read.hostname) == (5, "h")
    assert abs(read.written_at - 1767225600.123456) < 1e-3  # the timestamp is the later one
    os.utime(path, (1_800_000_000, 1_800_000_000))
    assert locks.read_lock(path).written_at == 1_800_000_000
    broken = write(tmp_path, "ns.b", "{not json", mtime=1_700_000_000)
    assert locks.read_lock(broken) == locks.LockFile(broken, None, None, 1_700_000_000)


def test_parse_timestamp_forms():
    assert locks.parse_timestamp("2026-01-01T00:00:00Z") == 1767225600.0
    assert locks.parse_timestamp("2026-01-01T01:00:00+01:00") == 1767225600.0
    assert locks.parse_timestamp("2026-01-01T00:00:00.5Z") == 1767225600.5
    assert locks.parse_timestamp("garbage") is None
    assert locks.parse_timestamp(None) is None


def test_judge_all_reads_every_stack(tmp_path):
    now = time.time()
    write(tmp_path, "ns.live", {"pid": os.getpid(), "hostname": HOST, "timestamp": ""})
    write(tmp_path, "ns.dead", {"pid": 999_999_999, "hostname": HOST})
    write(tmp_path, "ns.far", {"pid": 1, "hostname": "far"}, mtime=now - 100)
    # A lock write killed before its rename: an empty tmp file Pulumi's lock check would read.
    torn = tmp_path / "ns.torn" / "abc.json.18f2a3b4c5d6e7f8.tmp"
    torn.parent.mkdir()
    torn.write_bytes(b"")
    os.utime(torn, (now - 100, now - 100))
    verdicts = {lk.stack: v.stale for lk, v in locks.judge_all(tmp_path, now, HOST)}
    assert verdicts == {"ns.live": False, "ns.dead": True, "ns.far": True, "ns.torn": True}
    verdicts = {lk.stack: v.stale for lk, v in locks.judge_all(tmp_path, None, HOST)}
    assert verdicts == {"ns.live": False, "ns.dead": True, "ns.far": False, "ns.torn": False}
    assert locks.judge_all(tmp_path / "missing", None, HOST) == []



def test_another_hosts_lock_from_before_a_no_leader_elect_start_is_stale_after_is_kept():
    """--no-leader-elect passes the operator's start as leader_since (app/operator.py): the
    lock of the pod it replaced (another hostname) is stale, one written since is kept."""
    started = 1_000_000.0
    verdict = locks.judge(lock(4242, "operator-old", started - 60), "operator-new", started)
    assert verdict.stale and "--no-leader-elect" in verdict.reason
    assert not locks.judge(lock(4343, "admin-laptop", started + 1), "operator-new",
                           started).stale
    assert not locks.judge(lock(4242, "operator-old", started - 60), "operator-new",
                           None).stale
