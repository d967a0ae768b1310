"""Annotations an admin sets on a JupyterNotebookInstance to steer the operator (pure).

- `jupyternetes.kadense.io/retry-now: <any new value>`: ends a failing instance's backoff wait
  once (each new value is one immediate attempt; the value itself means nothing).
- `jupyternetes.kadense.io/force-delete: "true"`: the way out of a destroy that keeps failing.
  The operator deletes the instance's pods with the plain Kubernetes client (PVCs are kept),
  removes the stack's state (or leaves it for the orphan collector when even that fails; the
  next server of the same name refreshes before its first `up`), and drops its finalizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyternetes.naming import LABEL_PREFIX

RETRY_NOW = f"{LABEL_PREFIX}/retry-now"
FORCE_DELETE = f"{LABEL_PREFIX}/force-delete"


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = (obj.get("metadata") or {}).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


def retry_request(obj: Mapping[str, Any]) -> str | None:
    """The retry-now value (a change of it is a request for one immediate attempt)."""
    value = annotations_of(obj).get(RETRY_NOW)
    return value if isinstance(value, str) else None


def force_delete_requested(obj: Mapping[str, Any]) -> bool:
    value = annotations_of(obj).get(FORCE_DELETE)
    return isinstance(value, str) and value.strip().lower() == "true"
