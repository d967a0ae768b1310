"""Kubernetes client wiring for the operator: config, both CRDs, pods, status, finalizers, Events.

Everything here returns plain dicts (the API's JSON), not the client's typed models: the rest of the
code reads them with `crd/model.py`, and raw JSON is much cheaper than the generated models for
pods.
Errors from the apiserver are turned into `KubeError` carrying the apiserver's own message, because
that message is what an admin needs to see in `kubectl describe jni` (kube/errors.py). Paged lists
and watch streams are kube/listwatch.py; conflict-safe read-modify-write is kube/writes.py.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from jupyternetes.crd.definitions import (
    API_VERSION,
    GROUP,
    INSTANCE_KIND,
    INSTANCE_PLURAL,
    TEMPLATE_PLURAL,
    VERSION,
)
from jupyternetes.crd.labels import FINALIZER
from jupyternetes.kube import eventkey, statusmerge
from jupyternetes.kube.errors import WatchExpired, api_message, to_kube_error
from jupyternetes.kube.listwatch import Transform, WatchStream, list_pages, watch_kwargs
from jupyternetes.kube.objects import ObjectReader
from jupyternetes.kube.writes import read_modify_write

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # server-side apply (a JSON body is YAML too)
COMPONENT = "jupyternetes-operator"

# Watches are long polls; the pool must hold them plus one request per worker.
POOL_MAXSIZE = 64


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """A client from `kubeconfig`/`context`, $KUBECONFIG, ~/.kube/config, or the service account.

    In a pod with no kubeconfig given, the in-cluster service account is the right identity; an
    explicit kubeconfig always wins so tests and admins can point at any cluster.
    """
    cfg = client.Configuration()
    default_path = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0])
    if kubeconfig or context or default_path.expanduser().exists():
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=cfg, persist_config=False)
    else:
        config.load_incluster_config(client_configuration=cfg)
    cfg.connection_pool_maxsize = POOL_MAXSIZE
    return client.ApiClient(cfg)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Typed helpers over one ApiClient; thread-safe (urllib3 pools are)."""

    def __init__(self, api: client.ApiClient, component: str = COMPONENT) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.component = component
        self.host = socket.gethostname()
        # Status writes retried after a 409 (another writer in between): for tests and logs.
        self.status_conflicts = 0
        self._objects: ObjectReader | None = None

    # ---- instances and templates ------------------------------------------------------------

    def get_instance(self, namespace: str, name: str) -> dict | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, INSTANCE_PLURAL, name), f"instance {namespace}/{name}")

    def get_template(self, namespace: str, name: str) -> dict | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, TEMPLATE_PLURAL, name), f"template {namespace}/{name}")

    def list_instances(self, namespace: str | None = None,
                       transform: Transform | None = None) -> tuple[list[dict], str]:
        return self._list_custom(INSTANCE_PLURAL, "instances", namespace, transform)

    def watch_instances(self, namespace: str | None, resource_version: str,
                        timeout_seconds: int) -> WatchStream:
        return self._watch_custom(INSTANCE_PLURAL, "instances", namespace, resource_version,
                                  timeout_seconds)

    def list_templates(self, namespace: str | None = None,
                       transform: Transform | None = None) -> tuple[list[dict], str]:
        return self._list_custom(TEMPLATE_PLURAL, "templates", namespace, transform)

    def watch_templates(self, namespace: str | None, resource_version: str,
                        timeout_seconds: int) -> WatchStream:
        return self._watch_custom(TEMPLATE_PLURAL, "templates", namespace, resource_version,
                                  timeout_seconds)

    def _list_custom(self, plural: str, noun: str, namespace: str | None,
                     transform: Transform | None = None) -> tuple[list[dict], str]:
        what = f"list {noun} in {namespace or 'all namespaces'}"
        if namespace:
            return list_pages(lambda **kw: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, **kw), what, transform)
        return list_pages(lambda **kw: self.custom.list_cluster_custom_object(
            GROUP, VERSION, plural, **kw), what, transform)

    def _watch_custom(self, plural: str, noun: str, namespace: str | None,
                      resource_version: str, timeout_seconds: int) -> WatchStream:
        what = f"watch {noun} in {namespace or 'all namespaces'}"
        kwargs = watch_kwargs(resource_version, timeout_seconds)
        try:
            if namespace:
                resp = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **kwargs)
            else:
                resp = self.custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(api_message(exc)) from exc
            raise to_kube_error(exc, what) from exc
        return WatchStream(resp, what)

    # ---- pods -------------------------------------------------------------------------------

    def list_pods(self, namespace: str | None, selector: str,
                  transform: Transform | None = None) -> tuple[list[dict], str]:
        what = f"list pods {selector} in {namespace or 'all namespaces'}"
        if namespace:
            return list_pages(lambda **kw: self.core.list_namespaced_pod(
                namespace, label_selector=selector, **kw), what, transform)
        return list_pages(lambda **kw: self.core.list_pod_for_all_namespaces(
            label_selector=selector, **kw), what, transform)

    def list_pvcs(self, namespace: str, selector: str) -> list[dict]:
        what = f"list persistentvolumeclaims {selector} in {namespace}"
        try:
            resp = self.core.list_namespaced_persistent_volume_claim(
                namespace, label_selector=selector, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, what) from exc
        return list(json.loads(resp.data).get("items") or [])

    def watch_pods(self, namespace: str | None, selector: str, resource_version: str,
                   timeout_seconds: int) -> WatchStream:
        what = f"watch pods {selector} in {namespace or 'all namespaces'}"
        kwargs = watch_kwargs(resource_version, timeout_seconds)
        try:
            if namespace:
                resp = self.core.list_namespaced_pod(namespace, label_selector=selector, **kwargs)
            else:
                resp = self.core.list_pod_for_all_namespaces(label_selector=selector, **kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(api_message(exc)) from exc
            raise to_kube_error(exc, what) from exc
        return WatchStream(resp, what)

    def get_pod(self, namespace: str, name: str) -> dict | None:
        def read() -> dict:
            resp = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            return json.loads(resp.data)
        return self._get(read, f"pod {namespace}/{name}")

    def get_object(self, api_version: str, kind: str, namespace: str | None,
                   name: str) -> dict | None:
        """Any object by apiVersion/kind (a rendered object, a StorageClass); None when absent."""
        if self._objects is None:
            self._objects = ObjectReader(self.api)
        reader = self._objects
        where = f"{namespace}/{name}" if namespace else name
        return self._get(lambda: reader.get(api_version, kind, namespace, name),
                         f"{kind} {where}")

    def apply_object(self, manifest: dict, field_manager: str) -> dict:
        """Server-side apply of a Pod or PersistentVolumeClaim as `field_manager`, without
        force (a field another manager owns is a conflict, never taken). Used by the
        create-ahead only (controller/createahead.py), for objects the preflight found absent.
        """
        meta = manifest.get("metadata") or {}
        namespace, name, kind = meta.get("namespace"), meta.get("name"), manifest.get("kind")
        patch = {"Pod": self.core.patch_namespaced_pod,
                 "PersistentVolumeClaim":
                     self.core.patch_namespaced_persistent_volume_claim}.get(str(kind))
        if manifest.get("apiVersion") != "v1" or patch is None:
            raise ValueError(f"apply_object applies v1 Pods and PVCs, not {kind}")
        try:
            resp = patch(name, namespace, manifest, field_manager=field_manager, force=False,
                         _content_type=APPLY_PATCH, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, f"apply {kind} {namespace}/{name}") from exc
        return json.loads(resp.data)

    def delete_pods(self, namespace: str, selector: str) -> list[str]:
        """Delete the pods matching `selector` (the plain client, no stack involved); returns
        their names. Used by force-delete only: PVCs are never deleted this way."""
        pods, _ = self.list_pods(namespace, selector)
        deleted = []
        for pod in pods:
            name = (pod.get("metadata") or {}).get("name", "")
            try:
                self.core.delete_namespaced_pod(name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise to_kube_error(exc, f"delete pod {namespace}/{name}") from exc
            deleted.append(name)
        return deleted

    def list_namespaces(self, selector: str,
                        transform: Transform | None = None) -> tuple[list[dict], str]:
        """The namespaces with labels matching `selector` (only those: a label-selected list)."""
        return list_pages(lambda **kw: self.core.list_namespace(label_selector=selector, **kw),
                          f"list namespaces {selector}", transform)

    def watch_namespaces(self, selector: str, resource_version: str,
                         timeout_seconds: int) -> WatchStream:
        what = f"watch namespaces {selector}"
        try:
            resp = self.core.list_namespace(label_selector=selector,
                                            **watch_kwargs(resource_version, timeout_seconds))
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpired(api_message(exc)) from exc
            raise to_kube_error(exc, what) from exc
        return WatchStream(resp, what)

    def namespace_terminating(self, namespace: str) -> bool:
        """The namespace is being deleted (or already gone). False when it cannot be read (no
        RBAC to get namespaces): then nothing is skipped on its account."""
        try:
            resp = self.core.read_namespace(namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return True
            log.debug("cannot read namespace %s: %s", namespace, api_message(exc))
            return False
        meta = json.loads(resp.data).get("metadata") or {}
        return bool(meta.get("deletionTimestamp"))

    # ---- template history (ControllerRevisions) and admin edits -------------------------------

    def list_controller_revisions(self, namespace: str, selector: str) -> list[dict]:
        what = f"list controllerrevisions {selector} in {namespace}"
        try:
            resp = self.apps.list_namespaced_controller_revision(
                namespace, label_selector=selector, _preload_content=False)
        except ApiException as exc:
            raise to_kube_error(exc, what) from exc
        return list(json.loads(resp.data).get("items") or [])

    def create_controller_revision(self, body: dict) -> dict | None:
        """Create it; None when one of that name exists already (same content: same name)."""
        meta = body.get("metadata") or {}
        try:
            resp = self.apps.create_namespaced_controller_revision(
                meta.get("namespace"), body, field_manager=self.component,
                _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise to_kube_error(exc, f"create controllerrevision {meta.get('namespace')}/"
                                     f"{meta.get('name')}") from exc
        return json.loads(resp.data)

    def delete_controller_revision(self, namespace: str, name: str) -> None:
        try:
            self.apps.delete_namespaced_controller_revision(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise to_kube_error(exc, f"delete controllerrevision {namespace}/{name}") from exc

    def patch_instance(self, namespace: str, name: str, patch: dict) -> dict | None:
        """Merge patch of an instance (annotations, spec); None when it is gone."""
        return self._patch_custom(INSTANCE_PLURAL, "instance", namespace, name, patch)

    def patch_template(self, namespace: str, name: str, patch: dict) -> dict | None:
        """Merge patch of a template (annotations, spec); None when it is gone."""
        return self._patch_custom(TEMPLATE_PLURAL, "template", namespace, name, patch)

    def _patch_custom(self, plural: str, noun: str, namespace: str, name: str,
                      patch: dict) -> dict | None:
        try:
            return self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, patch,
                field_manager=self.component, _content_type=MERGE_PATCH)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise to_kube_error(exc, f"patch {noun} {namespace}/{name}") from exc

    # ---- secrets ----------------------------------------------------------------------------

    def get_secret(self, namespace: str, name: str) -> dict | None:
        """A Secret (spec.variablesFrom); the operator needs `get` on secrets in the instance
        namespaces. Its values are never logged: KubeError carries only the apiserver message."""
        def read() -> dict:
            resp = self.core.read_namespaced_secret(name, namespace, _preload_content=False)
            return json.loads(resp.data)
        return self._get(read, f"secret {namespace}/{name}")

    # ---- status, finalizers -----------------------------------------------------------------

    def patch_instance_status(self, namespace: str, name: str, status: dict) -> dict | None:
        """JSON merge patch of `status` on the status subresource; None when the instance is gone.

        Merge patch, not update: fields this call does not mention are left alone, maps merge.
        `conditions` are upserts by type (statusmerge): merged into the instance's current
        conditions, written with that read's resourceVersion as a precondition, and on 409
        read and merged again, so a concurrent writer's conditions are neither dropped nor
        undone, and our own write is retried, not lost.

        Why not server-side apply (the list is a map keyed by type, so it would merge too):
        an apply must carry every field this manager owns, or the ones left out are removed,
        and the operator writes partial status (a pod mirror is a few fields); and a
        conflicting apply is either refused or forced over the other writer, never re-derived.
        """
        what = f"patch status of instance {namespace}/{name}"
        if "conditions" not in status:
            # Nothing here is a list: the merge patch cannot undo anyone else's write.
            try:
                return self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, INSTANCE_PLURAL, name, {"status": status},
                    field_manager=self.component, _content_type=MERGE_PATCH)
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise to_kube_error(exc, what) from exc

        def change(current: dict) -> dict:
            return {"status": statusmerge.rebased(status, current.get("status") or {})}

        def conflict(attempt: int) -> None:
            self.status_conflicts += 1
            log.info("%s: written by someone else meanwhile; re-reading and merging again "
                     "(attempt %d)", what, attempt + 2)

        return read_modify_write(
            what, lambda: self.get_instance(namespace, name), change,
            lambda body: self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, INSTANCE_PLURAL, name, body,
                field_manager=self.component, _content_type=MERGE_PATCH),
            pause=0.02, on_conflict=conflict)

    def patch_template_status(self, namespace: str, name: str, status: dict) -> dict | None:
        """Merge patch of a template's status (instance counts); None when it is gone."""
        try:
            return self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, TEMPLATE_PLURAL, name, {"status": status},
                field_manager=self.component, _content_type=MERGE_PATCH)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise to_kube_error(exc, f"patch status of template {namespace}/{name}") from exc

    def add_finalizer(self, namespace: str, name: str, finalizer: str = FINALIZER) -> dict | None:
        return self._edit_finalizers(namespace, name, finalizer, add=True)

    def remove_finalizer(self, namespace: str, name: str,
                         finalizer: str = FINALIZER) -> dict | None:
        return self._edit_finalizers(namespace, name, finalizer, add=False)

    def _edit_finalizers(self, namespace: str, name: str, finalizer: str,
                         add: bool) -> dict | None:
        """Add/remove one finalizer, keeping everyone else's; retried on resourceVersion conflicts.

        The merge patch replaces the whole list, so it carries the resourceVersion it was computed
        from: a concurrent edit by another controller makes it fail with 409 instead of silently
        dropping that controller's finalizer.
        """
        what = f"{'add' if add else 'remove'} finalizer {finalizer} on instance {namespace}/{name}"

        def change(current: dict) -> dict | None:
            present = list((current.get("metadata") or {}).get("finalizers") or [])
            if (finalizer in present) == add:
                return None
            wanted = [*present, finalizer] if add else [f for f in present if f != finalizer]
            return {"metadata": {"finalizers": wanted}}

        return read_modify_write(
            what, lambda: self.get_instance(namespace, name), change,
            lambda body: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, INSTANCE_PLURAL, name, body,
                field_manager=self.component, _content_type=MERGE_PATCH),
            pause=0.05)

    # ---- events -----------------------------------------------------------------------------

    def emit_event(self, instance: dict, event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event on the instance (what `kubectl describe jni` shows). Never raises:
        losing an Event must not fail a reconcile whose real result is already in status.

        A repeat (same instance, type, reason, and message but for attempt counters, see
        eventkey) raises the existing Event's count and lastTimestamp instead of creating
        another object."""
        meta = instance.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        stamp = now_rfc3339()
        # The apiserver caps Event messages at 1 KiB.
        message = message if len(message) <= 1024 else message[:1021] + "..."
        event_name = eventkey.event_name(name, meta.get("uid"), event_type, reason, message)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION, "kind": INSTANCE_KIND,
                "namespace": namespace, "name": name, "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        try:
            try:
                self.core.create_namespaced_event(namespace, client.CoreV1Event.from_dict(body))
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self._count_event(namespace, event_name, message, stamp)
        except ApiException as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, namespace, name,
                        api_message(exc))
        except Exception:  # see docstring
            log.warning("could not record event %s on %s/%s", reason, namespace, name,
                        exc_info=True)

    def _count_event(self, namespace: str, event_name: str, message: str, stamp: str) -> None:
        """One more occurrence of an existing Event: count + 1, lastTimestamp, latest message
        (read-modify-write with the resourceVersion read, retried on 409)."""
        def read() -> dict:
            resp = self.core.read_namespaced_event(event_name, namespace, _preload_content=False)
            return json.loads(resp.data)

        def change(event: dict) -> dict:
            return {"count": int(event.get("count") or 1) + 1, "lastTimestamp": stamp,
                    "message": message}

        read_modify_write(
            f"count event {namespace}/{event_name}", read, change,
            lambda body: self.core.patch_namespaced_event(event_name, namespace, body,
                                                          _content_type=MERGE_PATCH),
            pause=0.02)

    def list_events(self, namespace: str, name: str) -> list[dict]:
        """Events about one instance, oldest first (used by tests and `describe`-like tooling)."""
        selector = f"involvedObject.name={name},involvedObject.kind={INSTANCE_KIND}"
        resp = self.core.list_namespaced_event(namespace, field_selector=selector,
                                               _preload_content=False)
        items = json.loads(resp.data).get("items") or []
        return sorted(items, key=lambda e: e["metadata"].get("creationTimestamp") or "")

    # ---- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _get(call: Callable[[], dict], what: str) -> dict | None:
        try:
            return call()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise to_kube_error(exc, f"get {what}") from exc
