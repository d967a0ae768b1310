"""The shard and membership Leases as a store: one LIST for all of them, single-Lease writes
through leader.KubeLease (the leader election's own Lease code), and their names.

Verbs on leases.coordination.k8s.io: list (`list`), create (`create`), update (`replace`),
delete (`delete`); see shardleases.py for when each is used.
"""

from __future__ import annotations

import json
from typing import Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jupyternetes.coordination.leader import KubeLease, LeaseRecord
from jupyternetes.crd.naming import stable_hash
from jupyternetes.kube.errors import api_message


def shard_lease_name(base: str, shard: int) -> str:
    return f"{base}-shard-{shard}"


def member_lease_name(base: str, replica: str) -> str:
    """Replica ids (hostname_pid) need not be valid object names: a hash of the id is."""
    return f"{base}-member-{stable_hash(replica)}"


class LeaseStore(Protocol):
    """The Leases whose names start with `<base>-` (name -> record), and writes to them."""

    def list(self) -> dict[str, LeaseRecord]: ...
    def create(self, name: str, record: LeaseRecord) -> LeaseRecord: ...
    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord: ...
    def delete(self, name: str, resource_version: str | None) -> None: ...


class KubeLeaseStore:
    """LeaseStore on the operator's ApiClient; single-Lease writes are leader.KubeLease's."""

    def __init__(self, api: client.ApiClient, namespace: str, base: str,
                 request_timeout: float = 5.0) -> None:
        self.api = api
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.prefix = f"{base}-"
        self.request_timeout = request_timeout

    def _lease(self, name: str) -> KubeLease:
        return KubeLease(self.api, self.namespace, name, self.request_timeout)

    def list(self) -> dict[str, LeaseRecord]:
        try:
            resp = self.coordination.list_namespaced_lease(
                self.namespace, _preload_content=False, _request_timeout=self.request_timeout)
        except ApiException as exc:
            raise RuntimeError(f"list Leases in {self.namespace}: {api_message(exc)}") from exc
        items = json.loads(resp.data).get("items") or []
        return {item["metadata"]["name"]: KubeLease._record(item) for item in items
                if str((item.get("metadata") or {}).get("name", "")).startswith(self.prefix)}

    def create(self, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._lease(name).create(record)

    def replace(self, name: str, record: LeaseRecord) -> LeaseRecord:
        return self._lease(name).replace(record)

    def delete(self, name: str, resource_version: str | None) -> None:
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(
            resource_version=resource_version)) if resource_version else None
        try:
            self.coordination.delete_namespaced_lease(
                name, self.namespace, body=body, _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status in (404, 409):
                return  # gone already, or renewed meanwhile (then it is not ours to delete)
            raise RuntimeError(f"delete Lease {self.namespace}/{name}: "
                               f"{api_message(exc)}") from exc
