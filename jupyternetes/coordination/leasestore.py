"""The operator's Leases in the apiserver (lease.LeaseStore), and their names.

Names, in the leader-election namespace (`--leader-election-namespace`), with `<base>` the
leader-election Lease name (`--leader-election-name`, default jupyternetes-operator-<hash>):
  `<base>`                        the leader's Lease (`--shards 0`)
  `<base>-shard-<i>-of-<n>`      shard i of n (`--shards n`): the count is in the name, so the
                                  Leases of two shard counts never alias (shard 2 of 4 and shard
                                  2 of 6 hold different instances)
  `<base>-member-<hash(id)>`     one per running replica, in both modes; its annotation
                                  `jupyternetes.kadense.io/shards` is the replica's --shards

Verbs on leases.coordination.k8s.io, exactly these: list (one LIST per retry period: every Lease
at once), create, update (acquire, renew, release: a PUT carrying the resourceVersion read),
delete (a replica's membership Lease on a graceful stop, and those of replicas long gone).

Every call is bounded by the caller's `timeout` and made through an ApiClient of its own with
urllib3's retries off: the kubernetes client's default retries would turn one black-holed
request into 20-40 s, past any renew deadline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jupyternetes.coordination.lease import LeaseConflict, LeaseRecord
from jupyternetes.crd.naming import stable_hash
from jupyternetes.kube.errors import api_message

SHARDS_ANNOTATION = "jupyternetes.kadense.io/shards"
DEFAULT_TIMEOUT = 5.0


def shard_lease_name(base: str, shard: int, count: int) -> str:
    return f"{base}-shard-{shard}-of-{count}"


def member_lease_name(base: str, replica: str) -> str:
    """Replica ids (hostname_pid) need not be valid object names: a hash of the id is."""
    return f"{base}-member-{stable_hash(replica)}"


def member_prefix(base: str) -> str:
    return f"{base}-member-"


def without_retries(api: client.ApiClient) -> client.ApiClient:
    """An ApiClient on a copy of `api`'s configuration whose requests are never retried."""
    cfg = copy.deepcopy(api.configuration)
    cfg.retries = False
    return client.ApiClient(cfg)


class KubeLeaseStore:
    """The Leases named `<base>` or `<base>-*` in `namespace`, on the operator's ApiClient
    configuration (--kubeconfig/--context), without retries."""

    def __init__(self, api: client.ApiClient, namespace: str, base: str) -> None:
        self.coordination = client.CoordinationV1Api(without_retries(api))
        self.namespace = namespace
        self.base = base

    def _mine(self, name: str) -> bool:
        return name == self.base or name.startswith(f"{self.base}-")

    def list(self, timeout: float | None = None) -> dict[str, LeaseRecord]:
        try:
            resp = self.coordination.list_namespaced_lease(
                self.namespace, _preload_content=False,
                _request_timeout=timeout or DEFAULT_TIMEOUT)
        except ApiException as exc:
            raise RuntimeError(f"list Leases in {self.namespace}: {api_message(exc)}") from exc
        items = json.loads(resp.data).get("items") or []
        return {item["metadata"]["name"]: record_of(item) for item in items
                if self._mine(str((item.get("metadata") or {}).get("name", "")))}

    def create(self, name: str, record: LeaseRecord,
               timeout: float | None = None) -> LeaseRecord:
        body = self._body(name, record)
        return self._write(lambda: self.coordination.create_namespaced_lease(
            self.namespace, body, _preload_content=False,
            _request_timeout=timeout or DEFAULT_TIMEOUT), "create", name)

    def replace(self, name: str, record: LeaseRecord,
                timeout: float | None = None) -> LeaseRecord:
        body = self._body(name, record)
        return self._write(lambda: self.coordination.replace_namespaced_lease(
            name, self.namespace, body, _preload_content=False,
            _request_timeout=timeout or DEFAULT_TIMEOUT), "replace", name)

    def delete(self, name: str, resource_version: str | None,
               timeout: float | None = None) -> None:
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(
            resource_version=resource_version)) if resource_version else None
        try:
            self.coordination.delete_namespaced_lease(
                name, self.namespace, body=body, _request_timeout=timeout or DEFAULT_TIMEOUT)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone already, or renewed meanwhile (then it is not ours to delete)
            raise RuntimeError(f"delete Lease {self.namespace}/{name}: "
                               f"{api_message(exc)}") from exc

    def _write(self, call: Callable[[], Any], verb: str, name: str) -> LeaseRecord:
        try:
            resp = call()
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(api_message(exc)) from exc
            raise RuntimeError(f"{verb} Lease {self.namespace}/{name}: "
                               f"{api_message(exc)}") from exc
        return record_of(json.loads(resp.data))

    def _body(self, name: str, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        if record.shards is not None:
            metadata["annotations"] = {SHARDS_ANNOTATION: str(record.shards)}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                "spec": {"holderIdentity": record.holder or None,
                         "leaseDurationSeconds": record.lease_seconds,
                         "acquireTime": record.acquire_time, "renewTime": record.renew_time,
                         "leaseTransitions": record.transitions}}


def record_of(obj: dict) -> LeaseRecord:
    spec = obj.get("spec") or {}
    meta = obj.get("metadata") or {}
    shards = (meta.get("annotations") or {}).get(SHARDS_ANNOTATION)
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=meta.get("resourceVersion"),
        shards=int(shards) if shards is not None and str(shards).isdigit() else None)
