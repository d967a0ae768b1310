"""A benchmark script's frame: options, progress on stderr, the error that stops it, exit code."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from harness.operator_process import OperatorError


def log(message: str) -> None:
    """Progress for the human running the script; stdout is reserved for the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The benchmark could not run; the message says what was being waited for."""


def arguments(doc: str | None, count: int,
              count_help: str = "instances") -> argparse.ArgumentParser:
    """The options every benchmark has: `--count` (what N is), the operator's `--workers` and
    extra `--operator-arg`s, and the process tree's `--sample-interval`; the description is
    the docstring's first paragraph."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=count,
                        help=f"{count_help} (default {count})")
    parser.add_argument("--workers", type=int, default=4, help="operator --workers (default 4)")
    # Every benchmark samples the operator's process tree (engine processes, memory).
    parser.add_argument("--sample-interval", type=float, default=0.1,
                        help="seconds between /proc samples (default 0.1)")
    # A/B runs of one operator setting, e.g. --operator-arg=--no-create-ahead.
    parser.add_argument("--operator-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for `jupyternetes operator` (repeatable)")
    return parser


def run_main(main: Callable[[], int]) -> None:
    """Exit with main's code: 130 on Ctrl-C/SIGTERM, 1 (with the reason on stderr) when the
    benchmark could not run."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    except (BenchError, OperatorError) as exc:
        log(f"benchmark failed: {exc}")
        sys.exit(1)

