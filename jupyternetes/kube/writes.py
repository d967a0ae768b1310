"""Writes that must not lose a concurrent writer's edit: read -> change -> write with the read's
resourceVersion as a precondition, read and changed again on 409."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from jupyternetes.kube.errors import KubeError, to_kube_error

CONFLICT_RETRIES = 8


def read_modify_write(what: str, read: Callable[[], dict | None],
                      change: Callable[[dict], dict | None], write: Callable[[dict], Any],
                      pause: float,
                      on_conflict: Callable[[int], None] | None = None) -> dict | None:
    """read -> `change(current)` -> write, with the read's resourceVersion as a
    precondition; on 409 (written by someone else in between) read and change again, up to
    CONFLICT_RETRIES times, so the other writer's edit is neither lost nor undone.

    `change` returns the merge-patch body, or None when nothing is to be written (the
    current object is returned). None when the object is gone (read or write 404)."""
    for attempt in range(CONFLICT_RETRIES):
        current = read()
        if current is None:
            return None
        body = change(current)
        if body is None:
            return current
        body = {**body, "metadata": {**(body.get("metadata") or {}), "resourceVersion": (
            current.get("metadata") or {}).get("resourceVersion")}}
        try:
            return write(body)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409 and attempt + 1 < CONFLICT_RETRIES:
                if on_conflict is not None:
                    on_conflict(attempt)
                time.sleep(pause * (attempt + 1))
                continue
            raise to_kube_error(exc, what) from exc
    raise KubeError(409, "conflicts on every retry", what)
