"""`pulumi stack ls` in a worker process, bounded in time (the orphan collector's list).

The list used to run as a child of the operator itself: a Go process nothing tied to the
operator's life, so an operator killed with SIGKILL while the state database hung left it running
(for hours, parented to init). Run here, it is a child of a worker, which dies with the operator
(PR_SET_PDEATHSIG) and then interrupts and kills every CLI it started (worker.on_sigterm). It is
also bounded on its own: after LIST_TIMEOUT_SECONDS the CLI and everything below it is killed
(its own process group) and the answer says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from jupyternetes.engine import settings as engine_settings
from jupyternetes.engine.masking import MESSAGE_LIMIT, clean_line, mask_secrets
from jupyternetes.engine.results import utc_now
from jupyternetes.engine.runtime.procs import descendants
from jupyternetes.engine.state import backendurl

LIST_TIMEOUT_SECONDS = 120.0
LIST_OP = "list"


class TimedOut(RuntimeError):
    """The command did not end in time; it and its descendants were killed."""


def run_bounded(command: Sequence[str], env: Mapping[str, str], cwd: str,
                timeout: float) -> subprocess.CompletedProcess[bytes]:
    """`command` in a process group of its own; after `timeout` seconds SIGKILL to it, its
    group and every descendant (a plugin may have a session of its own), then TimedOut."""
    proc = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        raise TimedOut(f"`{' '.join(command[:3])}` did not end within {timeout:.0f}s and was "
                       "killed") from None
    except BaseException:
        kill_tree(proc.pid)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_tree(pid: int) -> None:
    victims = [pid, *descendants(pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def list_command(project: str) -> list[str]:
    return ["pulumi", "stack", "ls", "--all", "--json", "--project", project]


def run(request: Mapping[str, Any], timeout: float = LIST_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The answer to a `list` request: {"result": "succeeded", "stdout": <the CLI's JSON>} or
    {"result": "failed", "message": ...} (masked: the backend URL's password)."""
    settings = request["settings"]
    masked = backendurl.request_mask_values(request)
    env = {**os.environ,
           "PULUMI_CONFIG_PASSPHRASE": settings["passphrase"],
           **backendurl.cli_environment(settings["backend_url"]),
           "PULUMI_SKIP_UPDATE_CHECK": "true",
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
           **engine_settings.cli_env(settings["backend_url"])}
    if settings.get("pulumi_home"):
        env["PULUMI_HOME"] = settings["pulumi_home"]
    started_at = utc_now()
    answer: dict[str, Any] = {"result": "failed", "message": "", "started_at": started_at}
    # An empty folder as cwd: no Pulumi.yaml (this repository has one) may pick a project.
    with tempfile.TemporaryDirectory(prefix="jupyternetes-ls-") as cwd:
        try:
            done = run_bounded(list_command(settings["project"]), env, cwd, timeout)
        except (OSError, TimedOut) as exc:
            answer["message"] = mask_secrets(f"listing stacks: {exc}", masked)
            done = None
    if done is not None and done.returncode != 0:
        answer["message"] = mask_secrets(
            "listing stacks with `pulumi stack ls` failed: "
            + clean_line(done.stderr.decode(errors="replace"))[:MESSAGE_LIMIT], masked)
    elif done is not None:
        answer.update(result="succeeded", stdout=done.stdout.decode(errors="replace"))
    answer["finished_at"] = utc_now()
    return answer
