"""The hub's blocking Kubernetes API calls in one namespace: read, create and delete its
instances, their token Secrets, pods and PVCs (SharedCluster runs them in its thread pool
through `call`, never on the hub's event loop).

Deletes that name a `uid` touch only that object (a 409 from the apiserver's precondition means
another object of the same name, never deleted by mistake); a missing object is no error.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

from jupyternetes.crd.definitions import GROUP, INSTANCE_PLURAL, VERSION
from jupyternetes.crd.labels import LABEL_INSTANCE
from jupyternetes.kube.client import MERGE_PATCH, Kube
from jupyternetes.kube.errors import to_kube_error

FIELD_MANAGER = "jupyternetes-spawner"


class NamespaceCalls:
    """API calls for the hub's objects in `namespace` (blocking; a base of SharedCluster)."""

    def __init__(self, namespace: str, kube: Kube) -> None:
        self.namespace = namespace
        self.kube = kube

    def get_instance(self, name: str) -> dict | None:
        return self.kube.get_instance(self.namespace, name)

    def create_instance(self, body: dict) -> dict:
        try:
            return self.kube.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_PLURAL, body,
                field_manager=FIELD_MANAGER)
        except ApiException as exc:
            raise to_kube_error(exc, f"create instance {self.namespace}/"
                                     f"{body['metadata']['name']}") from exc

    def delete_instance(self, name: str, uid: str | None = None) -> bool:
        """Delete (only the object with that `uid`, when given); False when it was not there
        (or is another object of the same name)."""
        return self._delete("instance", name, uid, lambda body: (
            self.kube.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_PLURAL, name, body=body)))

    def delete_secret(self, name: str, uid: str | None = None) -> bool:
        """Delete (only the object with that `uid`, when given); False when it was not there
        (or is another object of the same name)."""
        return self._delete("secret", name, uid, lambda body: (
            self.kube.core.delete_namespaced_secret(name, self.namespace, body=body)))

    def delete_pod(self, name: str, uid: str | None = None) -> bool:
        """Delete a pod (only the one with that `uid`, when given); False when it was gone."""
        return self._delete("pod", name, uid, lambda body: (
            self.kube.core.delete_namespaced_pod(name, self.namespace, body=body,
                                                 _preload_content=False)))

    def _delete(self, kind: str, name: str, uid: str | None,
                call: Callable[[dict | None], object]) -> bool:
        """`call` with the uid precondition; 404 (gone) and, with a uid, 409 (another object
        of that name now) are False."""
        try:
            call(_preconditions(uid))
            return True
        except ApiException as exc:
            if exc.status == 404 or (uid and exc.status == 409):
                return False
            raise to_kube_error(exc, f"delete {kind} {self.namespace}/{name}") from exc

    def replace_secret(self, body: dict) -> dict:
        """Delete any Secret of that name (it may belong to an older instance and be garbage
        collected with it), then create this one."""
        name = body["metadata"]["name"]
        try:
            self.kube.core.delete_namespaced_secret(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"delete secret {self.namespace}/{name}") from exc
        try:
            resp = self.kube.core.create_namespaced_secret(self.namespace, body,
                                                           _preload_content=False)
            return json.loads(resp.data)
        except ApiException as exc:
            raise to_kube_error(exc, f"create secret {self.namespace}/{name}") from exc

    def patch_secret(self, name: str, patch: dict) -> None:
        try:
            self.kube.core.patch_namespaced_secret(name, self.namespace, patch,
                                                   _content_type=MERGE_PATCH,
                                                   _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"patch secret {self.namespace}/{name}") from exc

    def list_pods(self, name: str) -> list[dict]:
        items, _ = self.kube.list_pods(self.namespace, f"{LABEL_INSTANCE}={name}")
        return items

    def list_pvcs(self, selector: str) -> list[dict]:
        """The PVCs matching `selector`, read from the apiserver (not the cache)."""
        try:
            resp = self.kube.core.list_namespaced_persistent_volume_claim(
                self.namespace, label_selector=selector, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"list PVCs {selector} in {self.namespace}") from exc
        return list(json.loads(resp.data).get("items") or [])

    def delete_pvc(self, name: str) -> None:
        try:
            self.kube.core.delete_namespaced_persistent_volume_claim(name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"delete PVC {self.namespace}/{name}") from exc

    def patch_pvc(self, name: str, patch: dict) -> None:
        try:
            self.kube.core.patch_namespaced_persistent_volume_claim(
                name, self.namespace, patch, _content_type=MERGE_PATCH, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"patch PVC {self.namespace}/{name}") from exc


def _preconditions(uid: str | None) -> dict | None:
    """DeleteOptions that make a delete miss (409) any other object of the same name."""
    return {"apiVersion": "v1", "kind": "DeleteOptions",
            "preconditions": {"uid": uid}} if uid else None
