"""listing.py: `pulumi stack ls` in a worker, bounded in time with everything it started."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from jupyternetes.engine.runtime import listing
from jupyternetes.engine.runtime.procs import pid_alive


def fake_pulumi(tmp_path: Path, body: str) -> dict[str, str]:
    """A `pulumi` on PATH that runs `body` (sh); returns the environment that finds it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}


def request(backend_url: str = "postgres://u:s3cret-pw@127.0.0.1:1/db") -> dict:
    return {"op": listing.LIST_OP, "stack": "", "settings": {
        "backend_url": backend_url, "passphrase": "p", "project": "proj", "pulumi_home": None}}


def test_a_command_past_its_time_is_killed_with_its_children(tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(listing.TimedOut, match="did not end within 1s"):
        # A child in a session of its own too (setsid): found through /proc, not the group.
        listing.run_bounded(["sh", "-c", f"sleep 300 & echo $! >> {pids}; setsid sleep 300 & "
                             f"echo $! >> {pids}; wait"], dict(os.environ), str(tmp_path), 1.0)
    assert time.monotonic() - started < 30
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in children)


def test_list_answers_the_cli_json_with_the_password_out_of_argv(tmp_path, monkeypatch):
    env = fake_pulumi(tmp_path, f'echo "$@ $PULUMI_BACKEND_URL" > {tmp_path}/args; '
                                f'echo "$PGPASSWORD" > {tmp_path}/pw; '
                                'echo \'[{"name": "organization/proj/ns.a"}]\'')
    monkeypatch.setenv("PATH", env["PATH"])
    answer = listing.run(request())
    assert answer["result"] == "succeeded", answer
    assert "ns.a" in answer["stdout"]
    args = (tmp_path / "args").read_text()
    assert args.startswith("stack ls --all --json --project proj postgres://u@127.0.0.1:1/db")
    assert (tmp_path / "pw").read_text().strip() == "s3cret-pw"


def test_list_that_hangs_fails_in_time_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_pulumi(tmp_path, "sleep 300")["PATH"])
    started = time.monotonic()
    answer = listing.run(request(), timeout=1.0)
    assert time.monotonic() - started < 30
    assert answer["result"] == "failed"
    assert "pulumi stack ls" in answer["message"] and "did not end within 1s" in answer["message"]


def test_list_failure_is_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_pulumi(
        tmp_path, 'echo "error: cannot reach $PULUMI_BACKEND_URL s3cret-pw" >&2; exit 1')["PATH"])
    answer = listing.run(request())
    assert answer["result"] == "failed" and "`pulumi stack ls` failed" in answer["message"]
    assert "s3cret-pw" not in answer["message"]
