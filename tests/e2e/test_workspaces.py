"""End to end: at start the operator removes the workspace folders of stack workers that are
gone, and leaves those of running processes (another operator may share the temp dir)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.operator_process import OperatorProcess
from tests.e2e.test_operator import wait_for

pytestmark = pytest.mark.e2e


def test_operator_start_sweeps_only_dead_workers_workspaces(cluster, crds_installed, pulumi_env,
                                                            namespace, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp / f"jupyternetes-stack-{gone.pid}-x1y2z3"
    (dead / ".pulumi").mkdir(parents=True)
    (dead / "Pulumi.yaml").write_text("name: jupyternetes-instances\n")
    live = tmp / f"jupyternetes-stack-{os.getpid()}-a1b2c3"  # a running process's
    live.mkdir()
    unknown = tmp / "jupyternetes-stack-q8w7e6r5"  # an older version's: owner unknown
    unknown.mkdir()

    op = OperatorProcess(cluster.kubeconfig, {**pulumi_env.env, "TMPDIR": str(tmp)},
                         tmp_path / "state", pulumi_env.pulumi_home, [namespace],
                         tmp_path / "operator.log", backend_url=pulumi_env.backend_url)
    op.start()
    try:
        wait_for("the dead worker's workspace removed", lambda: not dead.exists(), timeout=30,
                 describe=op.log_tail)
        assert live.is_dir() and unknown.is_dir()
        assert f"pid {gone.pid}" in op.log_text()
    finally:
        assert op.terminate() == 0
