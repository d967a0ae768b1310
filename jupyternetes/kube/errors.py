"""Apiserver failures as `KubeError`, carrying the apiserver's own message (what an admin needs to
see in `kubectl describe jni`), and `WatchExpired` for a watch that must relist."""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException


class KubeError(Exception):
    """An apiserver request failed; `message` is the apiserver's own explanation."""

    def __init__(self, status: int | None, message: str, what: str = "") -> None:
        self.status = status
        self.message = message
        self.what = what
        super().__init__(f"{what}: {message}" if what else message)


class WatchExpired(Exception):
    """The resourceVersion a watch resumed from is gone (HTTP 410): relist."""


def api_message(exc: ApiException) -> str:
    """The `message` of the Status object the apiserver returned, else the HTTP reason."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            return str(body).strip()
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


def to_kube_error(exc: ApiException, what: str) -> KubeError:
    return KubeError(exc.status, api_message(exc), what)

