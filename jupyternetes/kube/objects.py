"""Reading one object of any kind, for the ownership checks of the operator and the stack worker.

The worker's program runs in its own process and has no `Kube`: both sides build an
`ObjectReader` over a plain `ApiClient`, and the pure rule (`policy/ownership.py`) judges what it
returns.
"""

from __future__ import annotations

import json
from typing import Any


class ObjectReader:
    """GET one object by apiVersion/kind/namespace/name, None when it does not exist.

    Pods, PVCs and StorageClasses through their typed APIs; other kinds through the dynamic
    client, whose discovery runs once per reader and only when such a kind is read."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self._dynamic: Any = None

    def get(self, api_version: str, kind: str, namespace: str | None,
            name: str) -> dict | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            if api_version == "v1" and kind == "PersistentVolumeClaim":
                resp = client.CoreV1Api(self.api).read_namespaced_persistent_volume_claim(
                    name, namespace, _preload_content=False)
            elif api_version == "v1" and kind == "Pod":
                resp = client.CoreV1Api(self.api).read_namespaced_pod(
                    name, namespace, _preload_content=False)
            elif api_version == "storage.k8s.io/v1" and kind == "StorageClass":
                resp = client.StorageV1Api(self.api).read_storage_class(
                    name, _preload_content=False)
            else:
                return self._get_dynamic(api_version, kind, namespace, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj = json.loads(resp.data)
        obj.setdefault("kind", kind)
        return obj

    def _get_dynamic(self, api_version: str, kind: str, namespace: str | None,
                     name: str) -> dict | None:
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        if self._dynamic is None:
            self._dynamic = DynamicClient(self.api)
        try:
            resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return None  # the kind is not served: no object of it can be in the way
        try:
            if resource.namespaced:
                obj = resource.get(name=name, namespace=namespace)
            else:
                obj = resource.get(name=name)
        except NotFoundError:
            return None
        return obj.to_dict()
