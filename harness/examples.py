"""The repository's example resources, ready to create in a cluster."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# Set by the apiserver; the seed files carry them (they are `kubectl get -o yaml` output), and a
# create must not.
SERVER_SET_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation",
                     "managedFields", "selfLink", "deletionTimestamp")


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of `obj` without status and server-set metadata, fit for a create."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    for key in SERVER_SET_FIELDS:
        obj.get("metadata", {}).pop(key, None)
    return obj


def load_example(name: str) -> dict[str, Any]:
    """examples/`name` as written (server-set fields included)."""
    return yaml.safe_load((EXAMPLES / name).read_text())


def shared_template(doc: dict[str, Any], namespaces: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    """A copy of template `doc` that instances of `namespaces` may use (spec.allowedNamespaces;
    without it only its own namespace may). The seed's instance lives in `default` and its
    template in `kadense`: an admin upgrading such an install does the same."""
    doc = copy.deepcopy(doc)
    doc.setdefault("spec", {})["allowedNamespaces"] = list(namespaces)
    return doc
