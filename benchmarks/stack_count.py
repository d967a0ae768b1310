"""Engine only: a new stack's `up` with an empty backend against one holding N stacks.

Isolates the Pulumi side of scale.py's "new instance with 5,000 stacks" figure: no operator,
no watch caches. Runs `--count` first `up`s (new stacks) through the operator's StackEngine on
an empty file:// backend, then writes `--stacks` checkpoints where the engine keeps them (each
in its hash bucket, engine/state/statedirs.py; the first stack's checkpoint with its stack name
substituted, like scale.py's clones), then
`--count` more first `up`s. Reports each `up`'s wall time and the worker's split, and the
ratio of the medians. With `--profile`, a wrapper adds the CLI's `--profiling` to every CLI
run and the top of the `up` CPU profiles is reported per phase (go tool pprof).

Usage: .venv/bin/python benchmarks/stack_count.py [--count 6] [--stacks 5000] [--profile]
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench
from benchlib.summaries import emit, rounded, summary
from profile_up import pprof_top

from harness import pulumi_env as harness_pulumi
from jupyternetes.crd import naming
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import StackEngine, StackSettings
from jupyternetes.engine.settings import PROJECT
from jupyternetes.engine.state import statedirs
from jupyternetes.engine.state.backendurl import file_backend_path
from jupyternetes.render.objects import render

WRAPPER = """#!/bin/sh
cmd=none
for a in "$@"; do case "$a" in -*) ;; *) cmd="$a"; break;; esac; done
exec "{real}" "$@" --profiling "{out}/$PHASE-cli-$cmd"
"""


def ups(bench: Bench, engine: StackEngine, template: Template, prefix: str,
        count: int) -> list[dict[str, Any]]:
    rows = []
    for index in range(count):
        name = f"{prefix}-{index:03d}"
        rendered = render(template, Instance.from_dict(bench.instance_body(name),
                                                       source="stack_count"))
        started = time.monotonic()
        result = engine.up(bench.namespace, name, rendered, ())
        wall = time.monotonic() - started
        if result.result != "succeeded":
            log(f"{name}: {result.result}: {result.message[:300]}")
        log(f"{name}: {wall:.3f} s")
        rows.append({"wall_s": wall,
                     **{k: v for k, v in result.timings.items() if isinstance(v, float)}})
    return rows


def write_stacks(backend: Path, source_stack: str, count: int) -> float:
    started = time.monotonic()
    source = statedirs.checkpoint_file(backend, PROJECT, source_stack)
    text = source.read_text()
    for index in range(count):
        name = f"{source_stack}-clone{index:05d}"
        path = statedirs.checkpoint_file(backend, PROJECT, name)
        statedirs.ensure_layout(path.parents[3])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace(source_stack, name))
        # What an `up` leaves beside a checkpoint: the previous one (.bak) and fileblob's
        # attributes files, 4 files per stack (the source's, where it has them).
        for suffix in (".bak", ".attrs", ".bak.attrs"):
            side = source.with_name(source.name + suffix)
            if side.exists():
                path.with_name(path.name + suffix).write_bytes(side.read_bytes())
    return time.monotonic() - started


def split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for row in rows for k in row})
    return {k: summary([row[k] for row in rows if k in row]) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 6, "first ups per phase (the first of each phase is a warm-up)")
    parser.add_argument("--stacks", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with Bench("stackcount") as bench:
        env = dict(bench.pulumi_env)
        out = bench.tmp / "profile"
        if args.profile:
            out.mkdir()
            wrapper_dir = bench.tmp / "wrapper"
            wrapper_dir.mkdir()
            real = harness_pulumi.cli_root() / "bin" / "pulumi"
            (wrapper_dir / "pulumi").write_text(WRAPPER.format(real=real, out=out))
            (wrapper_dir / "pulumi").chmod(0o755)
            env["PATH"] = os.pathsep.join([str(wrapper_dir), env["PATH"]])
        settings = StackSettings(
            backend_url=env["PULUMI_BACKEND_URL"], passphrase=env["PULUMI_CONFIG_PASSPHRASE"],
            kubeconfig=str(bench.kubeconfig), context=None, pulumi_home=str(bench.pulumi_home))
        template = Template.from_dict(bench.template, source="seed template")
        backend = file_backend_path(env["PULUMI_BACKEND_URL"])
        assert backend is not None
        phases: dict[str, Any] = {}
        for phase, stacks in (("empty", 0), ("full", args.stacks)):
            os.environ["PHASE"] = phase
            env["PHASE"] = phase
            engine = StackEngine(settings, env=env, timeout=600)
            if stacks:
                seconds = write_stacks(backend, naming.stack_name(bench.namespace, "empty-000"),
                                       stacks)
                log(f"wrote {stacks} checkpoints in {seconds:.1f} s")
            rows = ups(bench, engine, template, phase, args.count)
            engine.close()
            phases[phase] = {"stacks_before": stacks, "first_up_cold_s": rounded(rows[0]["wall_s"]),
                             **split(rows[1:])}
            if args.profile:
                phases[phase]["up_cpu_profile_top_cum"] = pprof_top(
                    sorted(out.glob(f"{phase}-cli-up*.cpu")), 25)
        result = bench.result("stack_count", "a new stack's up, empty backend against N stacks")
    ratio = (phases["full"]["wall_s"]["p50"] or 0) / (phases["empty"]["wall_s"]["p50"] or 1)
    emit({**result, **phases, "ratio_p50": rounded(ratio, 2)})
    return 0


if __name__ == "__main__":
    run_main(main)
