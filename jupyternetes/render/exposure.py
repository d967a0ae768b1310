"""Secrets the template puts into labels: where, and the condition that says so. Pure.

Any placement of a secret value works (the operator applies what the template says, and the value
stays a Pulumi secret in the state). But labels are not a place for secrets: everyone who may
list the object sees them, and label selectors index them. So a secret value in a label key or
value gives the instance `SecretExposed=True` with the template paths; annotations are not
flagged (they are not indexed, and `token <x>` annotations are a common, deliberate use).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from jupyternetes.crd.model import key_path

SECRET_EXPOSED = "SecretExposed"


def secret_labels(objects: Iterable[Any], secret_values: Collection[str]) -> list[str]:
    """Template paths (`spec.pods[notebook].labels["k"]`) of the rendered labels whose key or
    value contains a secret value. `objects`: render.RenderedObject (group, entry, manifest)."""
    secrets = [s for s in secret_values if s]
    found: list[str] = []
    for obj in objects:
        labels = ((obj.manifest.get("metadata") or {}).get("labels") or {})
        for key, value in labels.items():
            if any(s in str(key) or s in str(value) for s in secrets):
                found.append(key_path(f"spec.{obj.group}[{obj.entry}].labels", key))
    return found


def exposure(paths: list[str]) -> tuple[bool, str, str]:
    """(status, reason, message) of the SecretExposed condition for `secret_labels`' answer."""
    if not paths:
        return False, "NoSecretInLabels", "no secret value is used in a label"
    return True, "SecretInLabel", (
        f"a secret value is used in label(s) {', '.join(paths)}: labels are visible to everyone "
        "who may list these objects and are indexed by label selectors. The objects are "
        "applied as the template says; move the value to an annotation, or better let the pod "
        "read it from its Secret (env[].valueFrom.secretKeyRef)")
