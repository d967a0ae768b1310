"""The object the engine applies for a rendered object: its manifest plus the annotations that
steer pulumi-kubernetes.

One copy, read by the stack program (engine/runtime/program.py) and by the operator's
create-ahead (controller/createahead.py), which applies the very same object before the `up`:
both write with one server-side-apply field manager, so the `up` finds an object that already
holds exactly its fields, owned by the name it applies with, and changes nothing. Pure: the
operator imports it without the Pulumi SDK.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# `up` returns once objects exist; readiness is the pod watch's business, so a slow image pull
# never holds an engine worker.
SKIP_AWAIT = "pulumi.com/skipAwait"
# Adoption of a PVC retained by an earlier stack of another field manager (stacks made before
# FIELD_MANAGER was fixed): force makes this stack's apply take its fields over instead of
# conflicting.
PATCH_FORCE = "pulumi.com/patchForce"
# pulumi-kubernetes' documented annotation naming the server-side-apply field manager. Without
# it every resource gets a random `pulumi-kubernetes-<suffix>` manager, and an object created
# ahead by the operator would have fields owned by another manager than the stack's.
PATCH_FIELD_MANAGER = "pulumi.com/patchFieldManager"
FIELD_MANAGER = "jupyternetes-engine"


def object_annotations(group: str) -> dict[str, str]:
    """The engine's annotations for an object of `group` (pvcs, pods, otherResources)."""
    annotations = {SKIP_AWAIT: "true", PATCH_FIELD_MANAGER: FIELD_MANAGER}
    if group == "pvcs":
        annotations[PATCH_FORCE] = "true"
    return annotations


def with_annotations(manifest: Mapping[str, Any], annotations: Mapping[str, str]) -> dict:
    """A deep copy of `manifest` with `annotations` added to metadata.annotations."""
    result = copy.deepcopy(dict(manifest))
    metadata = dict(result.get("metadata") or {})
    merged = dict(metadata.get("annotations") or {})
    merged.update(annotations)
    metadata["annotations"] = merged
    result["metadata"] = metadata
    return result


def applied_manifest(group: str, manifest: Mapping[str, Any]) -> dict:
    """What the engine applies for `manifest` of `group` (a new dict; `manifest` is untouched)."""
    return with_annotations(manifest, object_annotations(group))
