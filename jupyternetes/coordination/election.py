"""Leader election wired into the operator process: flags, the Lease's name, and what leading
and losing the Lease do to the operator (the election itself is leader.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jupyternetes.app.metrics import Metrics
from jupyternetes.coordination import leader
from jupyternetes.coordination.leasestore import KubeLeaseStore
from jupyternetes.engine.runtime import engineprocs, procs
from jupyternetes.kube.client import Kube

log = logging.getLogger("jupyternetes.operator")


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("leader election (one writer per state)")
    group.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True,
                       help="take part in leader election on a coordination.k8s.io Lease; "
                            "only the leader watches and runs stack operations, other "
                            "replicas stand by (default: on)")
    group.add_argument("--leader-election-namespace", default=None, metavar="NS",
                       help="namespace of the Lease (default: $POD_NAMESPACE, else the "
                            "operator's own namespace in a pod, else `default`)")
    group.add_argument("--leader-election-name", default=None, metavar="NAME",
                       help="name of the Lease (default: jupyternetes-operator-<hash of the "
                            "backend URL and --namespace scopes>: operators sharing state "
                            "and scope elect one leader)")
    group.add_argument("--leader-election-identity", default=None, metavar="ID",
                       help="this replica's identity in the Lease (default: hostname_pid)")
    group.add_argument("--leader-election-lease-duration", type=float,
                       default=leader.LEASE_DURATION, metavar="S",
                       help="a standby takes over this long after it saw the leader's last "
                            "renew; shard Leases too (default %(default)g; raise all three on "
                            "busy nodes, see the README)")
    group.add_argument("--leader-election-renew-deadline", type=float,
                       default=leader.RENEW_DEADLINE, metavar="S",
                       help="a replica that could not renew a Lease for this long stops its "
                            "writes and engine operations (a leader exits); must be below the "
                            "lease duration, the margin is the time to stop (default "
                            "%(default)g)")
    group.add_argument("--leader-election-retry-period", type=float,
                       default=leader.RETRY_PERIOD, metavar="S",
                       help="time between acquire/renew attempts (default %(default)g)")


def kill_engine_processes(wait_seconds: float = 5.0) -> list[int]:
    """SIGKILL every process below this one (stack workers, Pulumi CLIs, providers) and wait
    (at most `wait_seconds`) until they are gone: a process is not dead the moment SIGKILL is
    sent (on a loaded node its exit takes a while), and the caller's next step (exiting, which
    lets another replica take the Lease) must not overlap an engine process still running.
    Processes started meanwhile (a worker pool refilling) are killed by the next round."""
    killed: list[int] = []
    deadline = time.monotonic() + wait_seconds
    while True:
        alive = [pid for pid in procs.descendants(os.getpid()) if procs.pid_alive(pid)]
        for pid in reversed(alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed += [pid for pid in alive if pid not in killed]
        if not alive or time.monotonic() >= deadline:
            return killed
        time.sleep(0.05)  # polling the kernel: no event tells that a process has exited


def default_lease_name(backend_url: str, namespaces: Sequence[str]) -> str:
    scope = json.dumps([backend_url, sorted(set(namespaces))])
    return f"{leader.DEFAULT_LEASE_NAME}-{hashlib.sha256(scope.encode()).hexdigest()[:10]}"


def default_lease_namespace(environ: Mapping[str, str] | None = None) -> str:
    """The operator's own namespace: $POD_NAMESPACE (the deploy stack sets it from the pod's
    fieldRef; a local run can set it too), else the ServiceAccount's namespace file, else
    `default`."""
    env = os.environ if environ is None else environ
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def make_elector(args: argparse.Namespace, kube: Kube, backend_url: str,
                 operator: Any, metrics: Metrics) -> leader.LeaderElector:
    """The elector wired to the operator: leading starts it, losing the Lease kills every
    engine process this operator started and exits (exit code 1; restarted, it stands by)."""
    namespace = args.leader_election_namespace or default_lease_namespace()
    name = args.leader_election_name or default_lease_name(backend_url, args.namespace)

    def start_leading(since: float) -> None:
        operator.leader_since = since
        metrics.leading.set(1)
        try:
            operator.start()
        except Exception:
            # A leader that cannot work must not keep the Lease from a standby that can.
            log.exception("the operator could not start after acquiring the Lease; exiting")
            kill_engine_processes()
            sys.stderr.flush()
            os._exit(1)

    def lost() -> None:
        # Called by the Lease watchdog at the renew deadline (or by the loop when the Lease is
        # taken): the fence is closed already (is_leader() is False), so no write is made.
        metrics.leading.set(0)
        operator.queue.shutdown()  # nothing new starts
        # Kill the engines before the Lease can expire for the others (renew deadline <
        # lease duration): the next leader may then remove their locks (locks.py).
        pids = kill_engine_processes()
        log.error("lost the Lease %s/%s: killed %d engine process(es); exiting so that this "
                  "replica restarts as a standby", namespace, name, len(pids))
        sys.stderr.flush()
        os._exit(1)

    elector = leader.LeaderElector(
        KubeLeaseStore(kube.api, namespace, name),
        args.leader_election_identity or leader.default_identity(), name,
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
        on_started=start_leading, on_stopped=lost)
    # One gate for every write: status, Events, finalizers (the kube edge) and engine
    # operations (engineprocs), open only while the Lease is held and renewed.
    operator.fence.guard(lambda stack: elector.is_leader())
    engineprocs.set_gate(operator.fence.allows)
    log.info("leader election on Lease %s/%s as %s", namespace, name, elector.identity)
    return elector
