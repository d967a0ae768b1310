"""What a stack operation answers: the results the engine's public API returns (pure).

The worker sends these as JSON; the parent turns them into the frozen dataclasses here. Shared by
both sides (the worker imports `utc_now` from here, never from the parent's module).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OperationResult:
    operation: str
    result: str  # "succeeded" | "failed"
    started_at: str
    finished_at: str
    change_summary: dict[str, int]
    # {"objects": [{group, entry, apiVersion, kind, name, namespace, uid}], "errors": {...}}
    outputs: dict
    message: str
    engine_seconds: float
    # Wall time of the whole operation including the worker process (engine_seconds <= this).
    wall_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    replica: str | None = None  # the operator replica that ran it (StackSettings.replica)
    # The worker process that ran it (None: no worker answered).
    worker_pid: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.result == "succeeded"

    @property
    def objects(self) -> list[dict]:
        return list(self.outputs.get("objects") or [])

    @property
    def errors(self) -> dict[str, str]:
        """Per-resource errors (`pods/notebook` -> apiserver message) of a failed operation."""
        return dict(self.outputs.get("errors") or {})


@dataclass(frozen=True)
class PreviewStep:
    op: str  # create | update | replace | delete | same | create-replacement | ...
    urn: str
    type: str
    name: str  # resource name in the stack, e.g. pods/notebook
    object_name: str | None
    changed: tuple[str, ...]
    # path -> {"kind": "add|update|delete|...-replace", "old": value, "new": value}
    detailed_diff: dict[str, dict]

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class PreviewResult:
    result: str
    steps: tuple[PreviewStep, ...]
    change_summary: dict[str, int]
    message: str
    engine_seconds: float
    wall_seconds: float = 0.0

    @property
    def has_changes(self) -> bool:
        return any(op != "same" and count for op, count in self.change_summary.items())

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PreviewResult:
        steps = tuple(PreviewStep(
            op=s["op"], urn=s["urn"], type=s["type"], name=s["name"],
            object_name=s.get("object_name"), changed=tuple(s.get("changed") or ()),
            detailed_diff=dict(s.get("detailed_diff") or {}),
        ) for s in data.get("steps") or ())
        return PreviewResult(
            result=data["result"], steps=steps,
            change_summary=dict(data.get("change_summary") or {}),
            message=data.get("message", ""),
            engine_seconds=float(data.get("engine_seconds") or 0.0),
            wall_seconds=float(data.get("wall_seconds") or 0.0),
        )


def summarize_changes(change_summary: Mapping[str, int]) -> str:
    """`2 to create, 1 to replace` style line; `no changes` when only `same` is counted."""
    order = ("create", "update", "replace", "delete", "create-replacement", "delete-replaced",
             "read", "refresh", "import")
    parts = [f"{change_summary[op]} {op}" for op in order if change_summary.get(op)]
    parts += [f"{n} {op}" for op, n in sorted(change_summary.items())
              if op not in order and op != "same" and n]
    unchanged = change_summary.get("same", 0)
    if not parts:
        return f"no changes ({unchanged} unchanged)"
    return ", ".join(parts) + (f", {unchanged} unchanged" if unchanged else "")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
