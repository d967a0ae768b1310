"""Leader election on a `coordination.k8s.io/v1` Lease: one operator replica drives the engine.

Only the leader watches, starts engine operations, clears stack locks and repairs state files;
other replicas stand by and take over within the lease duration when the leader dies. The
algorithm is client-go's (k8s.io/client-go/tools/leaderelection):

- a candidate may take the Lease when it has no holder, or when the record it observed has not
  changed for `leaseDurationSeconds` on the candidate's *own* monotonic clock (no comparison of
  clocks across hosts);
- every write is a replace carrying the resourceVersion it read: of two racing candidates one
  gets 409 and stays a follower;
- the leader renews every retry period; when no renew succeeded for the renew deadline
  (shorter than the lease duration) it has lost the Lease: `is_leader()` is False from that
  instant, and `on_stopped` runs (the operator kills its engine processes and exits, so it has
  stopped writing before anyone else may acquire; locks.py relies on that);
- a leader that stops on purpose releases the Lease (empty holder, 1 s duration) after its
  in-flight work finished, so a standby takes over at once instead of after a lease duration.

Why not `kubernetes.leaderelection` (checked in kubernetes 37.0.2): its LeaseLock builds
`CoordinationV1Api()` on the client's global default configuration, not on the operator's
ApiClient (--kubeconfig/--context would be ignored); a follower's `run()` blocks in `acquire()`
with no way to stop it on SIGTERM; it never releases the Lease; config errors call
`sys.exit`; it keeps no leaseTransitions. The same algorithm, small, with injected clocks, is
easier to test than patching around those.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from jupyternetes.kube.errors import api_message

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "jupyternetes-operator"
# client-go's defaults (LeaseDuration, RenewDeadline, RetryPeriod).
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0
JITTER = 1.2


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (HTTP 409): re-read and decide again."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    lease_seconds: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int = 0
    resource_version: str | None = None


class LeasePort(Protocol):
    def get(self) -> LeaseRecord | None: ...
    def create(self, record: LeaseRecord) -> LeaseRecord: ...
    def replace(self, record: LeaseRecord) -> LeaseRecord: ...


def micro_time(unix: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """hostname_pid: unique per process, and says where to look (two replicas may share a
    host in tests; a restarted container gets a new pid or hostname)."""
    return f"{socket.gethostname()}_{os.getpid()}"


def validate(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """client-go's checks, as one error naming the flags to change."""
    if not 0 < retry_period * JITTER < renew_deadline < lease_duration:
        raise ValueError(
            f"leader election needs --leader-election-lease-duration ({lease_duration:g}s) > "
            f"--leader-election-renew-deadline ({renew_deadline:g}s) > {JITTER} x "
            f"--leader-election-retry-period ({retry_period:g}s) > 0")


class KubeLease:
    """The Lease object `namespace/name` through the operator's own ApiClient."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str,
                 request_timeout: float = 5.0) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.request_timeout = request_timeout

    def get(self) -> LeaseRecord | None:
        try:
            resp = self.coordination.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False,
                _request_timeout=self.request_timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise RuntimeError(f"read Lease {self.namespace}/{self.name}: "
                               f"{api_message(exc)}") from exc
        return self._record(json.loads(resp.data))

    def create(self, record: LeaseRecord) -> LeaseRecord:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(record)}
        return self._write(lambda: self.coordination.create_namespaced_lease(
            self.namespace, body, _preload_content=False,
            _request_timeout=self.request_timeout), "create")

    def replace(self, record: LeaseRecord) -> LeaseRecord:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": record.resource_version},
                "spec": self._spec(record)}
        return self._write(lambda: self.coordination.replace_namespaced_lease(
            self.name, self.namespace, body, _preload_content=False,
            _request_timeout=self.request_timeout), "replace")

    def _write(self, call: Callable[[], Any], verb: str) -> LeaseRecord:
        try:
            resp = call()
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict(api_message(exc)) from exc
            raise RuntimeError(f"{verb} Lease {self.namespace}/{self.name}: "
                               f"{api_message(exc)}") from exc
        return self._record(json.loads(resp.data))

    @staticmethod
    def _spec(record: LeaseRecord) -> dict[str, Any]:
        return {"holderIdentity": record.holder or None,
                "leaseDurationSeconds": record.lease_seconds,
                "acquireTime": record.acquire_time, "renewTime": record.renew_time,
                "leaseTransitions": record.transitions}

    @staticmethod
    def _record(obj: dict) -> LeaseRecord:
        spec = obj.get("spec") or {}
        return LeaseRecord(
            holder=spec.get("holderIdentity") or "",
            lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"), renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"))


class LeaderElector:
    """One candidate. `run(stop)` in a thread of its own; `on_started(since)` is called (in a
    new thread, so a slow start never delays a renew) with the Unix time the Lease was
    acquired; `on_stopped()` when it is lost. After a loss `run` returns: a process that lost
    the Lease is not trusted to lead again (the operator exits and restarts as a standby)."""

    def __init__(self, lease: LeasePort, identity: str, *,
                 lease_duration: float = LEASE_DURATION,
                 renew_deadline: float = RENEW_DEADLINE, retry_period: float = RETRY_PERIOD,
                 on_started: Callable[[float], None] = lambda since: None,
                 on_stopped: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        validate(lease_duration, renew_deadline, retry_period)
        self.lease = lease
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = False
        self._last_renew = 0.0
        self.since: float | None = None  # Unix time this candidate acquired the Lease
        self.lost = False

    # ---- state ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """Leading, and the last renew is younger than the renew deadline: a leader whose
        renews fail stops starting work at once, before its loop has noticed."""
        with self._lock:
            return self._leading and self.clock() - self._last_renew < self.renew_deadline

    def status(self) -> dict[str, Any]:
        """For /readyz: who leads (as last observed) and since when."""
        with self._lock:
            observed = self._observed
            leading = self._leading and self.clock() - self._last_renew < self.renew_deadline
        holder = (observed.holder or None) if observed else None
        return {"identity": self.identity, "leader": holder, "leading": leading,
                "since": observed.acquire_time if observed and holder else None}

    # ---- one attempt ------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """Acquire or renew once; True when this candidate holds the Lease afterwards."""
        now_unix, now = self.wall(), self.clock()
        try:
            current = self.lease.get()
            if current is None:
                record = self.lease.create(LeaseRecord(
                    self.identity, int(self.lease_duration), micro_time(now_unix),
                    micro_time(now_unix)))
                self._observe(record, now)
                return True
            self._observe(current, now, only_if_changed=True)
            with self._lock:
                observed_at = self._observed_at
            duration = current.lease_seconds or self.lease_duration
            if (current.holder and current.holder != self.identity
                    and observed_at + duration > now):
                return False  # held by someone else, and not expired on our clock
            mine = current.holder == self.identity
            record = replace(
                current, holder=self.identity, lease_seconds=int(self.lease_duration),
                acquire_time=current.acquire_time if mine else micro_time(now_unix),
                renew_time=micro_time(now_unix),
                transitions=current.transitions if mine else current.transitions + 1)
            self._observe(self.lease.replace(record), now)
            return True
        except LeaseConflict:
            return False
        except Exception as exc:  # an apiserver hiccup is one failed attempt, not a crash
            log.warning("leader election (%s): %s", self.identity, exc)
            return False

    def _observe(self, record: LeaseRecord, now: float, only_if_changed: bool = False) -> None:
        with self._lock:
            if only_if_changed and self._observed is not None and (
                    record.holder, record.renew_time, record.resource_version) == (
                    self._observed.holder, self._observed.renew_time,
                    self._observed.resource_version):
                return
            if self._observed is None or record.holder != self._observed.holder:
                log.info("Lease holder: %s (this candidate: %s)", record.holder or "nobody",
                         self.identity)
            self._observed, self._observed_at = record, now

    def holder(self) -> str | None:
        with self._lock:
            return (self._observed.holder or None) if self._observed else None

    # ---- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Follow until the Lease is ours, then lead until `stop` is set (the caller then
        calls `release()` once its work has stopped) or the Lease is lost."""
        log.info("leader election: %s is a candidate", self.identity)
        while not stop.is_set():
            if self.try_acquire_or_renew():
                break
            stop.wait(self.retry_period * random.uniform(1.0, JITTER))
        if stop.is_set():
            return
        with self._lock:
            self._leading, self._last_renew = True, self.clock()
            self.since = self.wall()
        log.info("leader election: %s acquired the Lease", self.identity)
        since = self.since
        threading.Thread(target=self.on_started, args=(since,), name="leading",
                         daemon=True).start()
        while not stop.wait(self.retry_period):
            if self.try_acquire_or_renew():
                with self._lock:
                    self._last_renew = self.clock()
                continue
            with self._lock:
                overdue = self.clock() - self._last_renew >= self.renew_deadline
                taken = bool(self._observed and self._observed.holder
                             and self._observed.holder != self.identity)
            if overdue or taken:
                with self._lock:
                    self._leading, self.lost = False, True
                log.error("leader election: %s lost the Lease (%s)", self.identity,
                          f"taken by {self.holder()}" if taken else
                          f"no renew for {self.renew_deadline:g}s")
                self.on_stopped()
                return

    def release(self) -> bool:
        """Give the Lease up (graceful stop, after in-flight work finished): empty holder and
        a 1 s duration, so a standby takes over at its next retry."""
        with self._lock:
            leading, self._leading = self._leading, False
        if not leading:
            return False
        try:
            current = self.lease.get()
            if current is None or current.holder != self.identity:
                return False
            now = micro_time(self.wall())
            self.lease.replace(replace(current, holder="", lease_seconds=1, renew_time=now))
        except Exception as exc:
            log.warning("leader election: releasing the Lease failed (%s); a standby takes "
                        "over once it expires", exc)
            return False
        log.info("leader election: %s released the Lease", self.identity)
        return True
