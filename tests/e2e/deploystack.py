"""One stack of the repository's deploy project (Pulumi.yaml at the root, program in stacks/),
driven through the real `pulumi` CLI from the repository root as an admin would."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# `pulumi up` waits for the operator Deployment's rollout; two loaded cores.
PULUMI_TIMEOUT = 600


@dataclass
class DeployStack:
    """One stack of the repository's Pulumi project, driven through the `pulumi` CLI."""

    name: str
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["pulumi", *args, "--stack", self.name, "--non-interactive"]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=PULUMI_TIMEOUT)
        self.log.append(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(cmd)}` exited {proc.returncode}\n"
                                 f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
        return proc

    def config(self, key: str, value: str, path: bool = False) -> None:
        self.run("config", "set", *(["--path"] if path else []), key, value)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--yes", "--skip-preview")

    def preview_json(self, *extra: str) -> dict:
        proc = self.run("preview", "--json", *extra)
        return json.loads(proc.stdout)
