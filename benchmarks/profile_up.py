"""Profile: where one instance's first `up` spends its time, inside the Pulumi CLI and provider.

Runs N first `up`s (new stacks, the seed instance renamed) one after another through the
operator's own StackEngine, with a `pulumi` wrapper first on PATH that adds the CLI's
`--profiling PREFIX` (Go CPU profile per CLI process) and `--otel-traces file://...` and sets
`GODEBUG=inittrace=1`. Then reports:

- per CLI command: processes, wall seconds (from the OpenTelemetry spans' root), and the CPU
  profile's top functions (cumulative, summed over the `up` processes) through `go tool pprof`;
- the passphrase key derivation's share (pbkdf2 in the profiles);
- Go package init time of the CLI and of the Kubernetes provider (inittrace);
- the longest OpenTelemetry spans.

No operator, no timing assertions. Usage: .venv/bin/python benchmarks/profile_up.py [--count 3]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchlib.cli import arguments, log, run_main
from benchlib.fixtures import Bench
from benchlib.summaries import emit, kubernetes_provider_version, rounded

from harness import pulumi_env as harness_pulumi
from jupyternetes.crd.model import Instance, Template
from jupyternetes.engine import StackEngine, StackSettings
from jupyternetes.render.objects import render

WRAPPER = """#!/bin/sh
# Profiling wrapper around the real CLI (benchmarks/profile_up.py).
cmd=none
for a in "$@"; do case "$a" in -*) ;; *) cmd="$a"; break;; esac; done
export GODEBUG=inittrace=1
exec "{real}" "$@" --profiling "{out}/cli-$cmd" --otel-traces "file://{out}/otel-$cmd-$$.json" \\
  2>>"{out}/stderr-$cmd-$$.txt"
"""

INIT_LINE = re.compile(r"^init (\S+) @[\d.]+ ms, ([\d.]+) ms clock")


def init_ms(text: str) -> tuple[float, list[tuple[str, float]]]:
    """Sum of the inittrace clock times, and the slowest packages."""
    items = [(m.group(1), float(m.group(2))) for line in text.splitlines()
             if (m := INIT_LINE.match(line))]
    return sum(ms for _, ms in items), sorted(items, key=lambda i: -i[1])[:5]


def provider_init(plugin_binary: Path) -> dict[str, Any]:
    """Start the provider alone with inittrace until it prints its port: Go init cost."""
    started = time.monotonic()
    proc = subprocess.Popen([str(plugin_binary)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "GODEBUG": "inittrace=1"})
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # the gRPC port: init and main's setup are done
        until_port = time.monotonic() - started
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    total, top = init_ms(err.decode(errors="replace"))
    return {"until_port_s": rounded(until_port), "go_init_ms": round(total, 1),
            "slowest_inits_ms": top}


def pprof_top(profiles: list[Path], limit: int = 15) -> list[str]:
    if not profiles or not shutil.which("go"):
        return []
    done = subprocess.run(["go", "tool", "pprof", "-top", "-cum", f"-nodecount={limit}",
                           *map(str, profiles)], capture_output=True, text=True, timeout=300)
    return [line.strip() for line in done.stdout.splitlines()
            if line.strip() and not line.startswith(("File:", "Build", "Type:", "Time:"))]


def pprof_grep(profiles: list[Path], pattern: str) -> str:
    if not profiles or not shutil.which("go"):
        return ""
    done = subprocess.run(["go", "tool", "pprof", "-top", "-cum", f"-focus={pattern}",
                           "-nodecount=3", *map(str, profiles)],
                          capture_output=True, text=True, timeout=300)
    return next((line.strip() for line in done.stdout.splitlines()
                 if "flat%" not in line and pattern.split("|")[0] in line), "")


def spans(files: list[Path]) -> list[dict[str, Any]]:
    """Every span of the OTLP-JSON files: name and duration (ms)."""
    found: list[dict[str, Any]] = []
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for rs in doc.get("resourceSpans") or []:
                for ss in rs.get("scopeSpans") or []:
                    for span in ss.get("spans") or []:
                        ms = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6
                        found.append({"name": span.get("name"), "ms": round(ms, 1),
                                      "root": not span.get("parentSpanId")})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, 3)
    args = parser.parse_args(argv)
    with Bench("profile") as bench:
        out = bench.tmp / "profile"
        wrapper_dir = bench.tmp / "wrapper"
        out.mkdir()
        wrapper_dir.mkdir()
        real = harness_pulumi.cli_root() / "bin" / "pulumi"
        (wrapper_dir / "pulumi").write_text(WRAPPER.format(real=real, out=out))
        (wrapper_dir / "pulumi").chmod(0o755)
        env = dict(bench.pulumi_env)
        env["PATH"] = os.pathsep.join([str(wrapper_dir), env["PATH"]])
        settings = StackSettings(
            backend_url=env["PULUMI_BACKEND_URL"], passphrase=env["PULUMI_CONFIG_PASSPHRASE"],
            kubeconfig=str(bench.kubeconfig), context=None, pulumi_home=str(bench.pulumi_home))
        engine = StackEngine(settings, env=env, timeout=600)
        template = Template.from_dict(bench.template, source="seed template")
        names = bench.numbered_instances("profile", args.count)
        results = []
        for name in names:
            body = bench.instance_body(name)
            rendered = render(template, Instance.from_dict(body, source="profile"))
            started = time.monotonic()
            result = engine.up(bench.namespace, name, rendered, ())
            log(f"{name}: {result.result} in {time.monotonic() - started:.2f}s "
                f"{result.message[:200]}")
            results.append(result)
        engine.close()
        cpu = sorted(out.glob("cli-*.cpu"))
        by_command: dict[str, list[Path]] = {}
        for path in cpu:
            by_command.setdefault(path.name.split(".")[0].removeprefix("cli-"), []).append(path)
        cli_init = {}
        for path in sorted(out.glob("stderr-*.txt")):
            total, _slowest = init_ms(path.read_text(errors="replace"))
            cli_init.setdefault(path.name.split("-")[1], []).append(round(total, 1))
        all_spans = spans(sorted(out.glob("otel-*.json")))
        up_profiles = by_command.get("up", [])
        plugin = next(harness_pulumi.kubernetes_plugin_dir(kubernetes_provider_version())
                      .glob("pulumi-resource-kubernetes*"))
        report = {
            **bench.result("profile_up", f"{args.count} first ups (new stacks), one at a time"),
            "ups": [{"result": r.result, "wall_s": rounded(r.wall_seconds),
                     "engine_s": rounded(r.engine_seconds),
                     "timings_s": {k: rounded(v) for k, v in r.timings.items()}}
                    for r in results],
            "cli_processes_by_command": {k: len(v) for k, v in by_command.items()},
            "cli_go_init_ms_by_command": cli_init,
            "provider_init": provider_init(plugin),
            "pbkdf2_in_up_profiles": pprof_grep(up_profiles, "pbkdf2"),
            "pbkdf2_in_stack_init_profiles": pprof_grep(by_command.get("stack", []), "pbkdf2"),
            "up_cpu_profile_top_cum": pprof_top(up_profiles),
            "longest_spans_ms": sorted((s for s in all_spans), key=lambda s: -s["ms"])[:25],
            "artifacts_kept_in": str(out) if os.environ.get("KEEP_PROFILE") else None,
        }
        if os.environ.get("KEEP_PROFILE"):
            keep = Path(os.environ["KEEP_PROFILE"])
            shutil.copytree(out, keep, dirs_exist_ok=True)
    emit(report)
    return 0


if __name__ == "__main__":
    run_main(main)
