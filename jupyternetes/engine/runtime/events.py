"""The engine's event stream of one operation, as plain data (no CLI runs, no I/O).

`Collector` is the `on_event` callback of an Automation API operation: it keeps the error
diagnostics (per resource), the steps of a preview with old and new values per changed path,
the outputs of every resource (the objects an `up` that failed did create) and the summary
event. Values that are secrets show up in the events as Pulumi's secret wrapper (below) or as
`[secret]`; they are never put into a step in plain text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Mapping
from typing import Any

from pulumi.automation import events as auto_events

from jupyternetes.engine.masking import SECRET_MASK, mask_secrets, trim_message
from jupyternetes.engine.runtime.program import GROUP_ORDER


class Collector:
    """Engine events of one operation: error diagnostics and per-resource steps."""

    def __init__(self, manifests: Mapping[str, Any] | None = None,
                 secret_values: Collection[str] = ()) -> None:
        self.manifests = manifests or {}
        self.secret_values = secret_values
        self.errors: list[tuple[str | None, str]] = []
        self.error_urns: list[tuple[str | None, str]] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.failed: set[str] = set()
        # The engine's summary of the operation and the stack's outputs, as the event stream
        # carries them: what the SDK would otherwise read back with three more CLI runs.
        self.summary: auto_events.SummaryEvent | None = None
        self.stack_outputs: dict[str, Any] | None = None
        self.finished = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, event: auto_events.EngineEvent) -> None:
        with self.lock:
            if event.summary_event is not None:
                self.summary = event.summary_event
                self.finished.set()
            diag = event.diagnostic_event
            if diag is not None and diag.severity == "error":
                self.errors.append((resource_name(diag.urn), diag.message))
                self.error_urns.append((diag.urn, diag.message))
            pre = event.resource_pre_event
            if pre is not None and pre.metadata is not None:
                self.steps[pre.metadata.urn + "|" + str(pre.metadata.op)] = step_dict(
                    pre.metadata, self.manifests, self.secret_values)
            out = event.res_outputs_event
            if out is not None and out.metadata is not None and out.metadata.new is not None:
                self.outputs[out.metadata.urn] = dict(out.metadata.new.outputs or {})
                if out.metadata.type == STACK_TYPE:
                    self.stack_outputs = dict(out.metadata.new.outputs or {})
            failed = event.res_op_failed_event
            if failed is not None and failed.metadata is not None:
                self.failed.add(failed.metadata.urn)

    def errors_by_resource(self, secret_values: Collection[str]) -> dict[str, str]:
        grouped: dict[str, list[tuple[str | None, str]]] = {}
        for name, message in self.errors:
            if name:
                grouped.setdefault(name, []).append((None, message))
        return {name: trim_message(items, "", secret_values) for name, items in grouped.items()}


STACK_TYPE = "pulumi:pulumi:Stack"
# How long to wait, after the CLI exited, for the summary event (the gRPC event stream is
# drained before the CLI exits, so this is a safety margin, not a delay).
SUMMARY_WAIT_SECONDS = 2.0


def resource_name(urn: str | None) -> str | None:
    if not urn:
        return None
    name = urn.rsplit("::", 1)[-1]
    # The stack itself and the provider are not objects of the instance.
    return None if urn.endswith("pulumi:pulumi:Stack::" + name) else name


def op_name(op: Any) -> str:
    return str(getattr(op, "value", op))


# Pulumi's property-value wire format marks a secret as an object holding this key (with the
# value SECRET_SIG_VALUE): `sig.Key` and `sig.Secret`, exported constants of the Go SDK
# (github.com/pulumi/pulumi/sdk/v3/go/common/resource/sig), part of the resource protocol. The
# Python SDK has them only under private names (pulumi.runtime.rpc._special_sig_key,
# _special_secret_sig); tests/unit/test_command.py checks that both spellings agree, so an SDK
# upgrade that changed the format would fail there.
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"


def is_secret_wrapper(value: Any) -> bool:
    return isinstance(value, Mapping) and SECRET_SIG in value


def get_path(value: Any, path: str) -> Any:
    """`value` at a Pulumi property path like `spec.containers[0].env[3].value` (None when
    absent). Keys with dots appear quoted: `metadata.annotations["a.b/c"]`. Inside a secret
    (the engine shows those as a signature wrapper) the answer is SECRET_MASK."""
    current = value
    for part in split_path(path):
        if is_secret_wrapper(current):
            return SECRET_MASK
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return None
            current = current[part]
        else:
            if not isinstance(current, Mapping) or part not in current:
                return None
            current = current[part]
    return SECRET_MASK if is_secret_wrapper(current) else current


def mask_value(value: Any, secret_values: Collection[str]) -> Any:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    masked = mask_secrets(text, secret_values)
    if masked == text:
        return value
    return SECRET_MASK if isinstance(value, str) else masked


def split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    i, n = 0, len(path)
    buf = ""
    while i < n:
        ch = path[i]
        if ch == ".":
            if buf:
                parts.append(buf)
            buf = ""
            i += 1
        elif ch == "[":
            if buf:
                parts.append(buf)
            buf = ""
            end = path.find("]", i)
            inner = path[i + 1:end if end >= 0 else n]
            if inner.startswith('"') and inner.endswith('"'):
                parts.append(json.loads(inner))
            elif inner.isdigit():
                parts.append(int(inner))
            else:
                parts.append(inner)
            i = (end if end >= 0 else n) + 1
        else:
            buf += ch
            i += 1
    if buf:
        parts.append(buf)
    return parts


def step_dict(meta: auto_events.StepEventMetadata,
              manifests: Mapping[str, Any] | None = None,
              secret_values: Collection[str] = ()) -> dict[str, Any]:
    """A step of the event stream as plain data, with old and new values per changed path.

    The Kubernetes provider marks a whole list secret when any item holds a secret (e.g. all
    `containers` for one env var), so the engine shows those values only as [secret]. New
    values are then taken from our own rendered manifest (`manifests`, by resource name) with
    the known secrets masked; old ones are only in the encrypted state and stay [secret].
    """
    old_inputs = dict(meta.old.inputs or {}) if meta.old is not None else {}
    new_inputs = dict(meta.new.inputs or {}) if meta.new is not None else {}
    manifest = (manifests or {}).get(meta.urn.rsplit("::", 1)[-1])
    detailed: dict[str, dict] = {}
    for path, diff in (meta.detailed_diff or {}).items():
        kind = op_name(getattr(diff, "diff_kind", "update"))
        new = get_path(new_inputs, path)
        if new == SECRET_MASK and manifest is not None:
            new = mask_value(get_path(manifest, path), secret_values)
        detailed[path] = {"kind": kind, "old": get_path(old_inputs, path), "new": new}
    object_name = (get_path(new_inputs, "metadata.name") or get_path(old_inputs, "metadata.name"))
    return {
        "op": op_name(meta.op),
        "urn": meta.urn,
        "type": meta.type,
        "name": meta.urn.rsplit("::", 1)[-1],
        "object_name": object_name,
        "changed": list(meta.diffs or meta.keys or []),
        "detailed_diff": detailed,
    }


# The apiserver's answers to a dry-run apply of a replacement onto the object it replaces (the
# old object still exists in a preview): not a problem of the desired state.
DRY_RUN_REPLACE_ERRORS = ("pod updates may not change fields", "field is immutable")
REPLACE_OPS = ("replace", "create-replacement", "delete-replaced")


def dry_run_replacements(collector: Collector) -> list[str]:
    """URNs whose preview failed only because their replacement was dry-run onto the old object.

    pulumi-kubernetes previews a create by a server-side dry-run apply; for a replacement under
    the same name that apply hits the still-existing old object. The provider retries under a
    generated name for "field is immutable", but not for a Pod's "pod updates may not change
    fields" (a Forbidden cause inside an Invalid error), so a pod replacement cannot be
    previewed. Returns [] when any error is something else.
    """
    replaced = {s["urn"] for s in collector.steps.values() if s["op"] in REPLACE_OPS}
    urns: list[str] = []
    for urn, message in collector.error_urns:
        if urn is None and not any(m in message for m in DRY_RUN_REPLACE_ERRORS):
            continue  # the summary line ("preview failed") of the same failure
        if urn not in replaced or not any(m in message for m in DRY_RUN_REPLACE_ERRORS):
            return []
        if urn not in urns:
            urns.append(urn)
    return urns


def objects_from_events(collector: Collector) -> list[dict[str, Any]]:
    """Objects the engine did apply before an update failed (their live uid included)."""
    objects = []
    for urn, outputs in collector.outputs.items():
        name = resource_name(urn)
        if not name or "/" not in name or urn in collector.failed:
            continue
        group, entry = name.split("/", 1)
        if group not in GROUP_ORDER:
            continue
        metadata = outputs.get("metadata") or {}
        objects.append({"group": group, "entry": entry, "apiVersion": outputs.get("apiVersion"),
                        "kind": outputs.get("kind"), "name": metadata.get("name"),
                        "namespace": metadata.get("namespace"), "uid": metadata.get("uid")})
    return objects
