"""`jupyternetes operator`: the command line, wired to the controller, leader election or
shards, and the HTTP endpoints.

Wiring only; each concern lives in its own module (controller, watch, queue, reconcile,
podstatus, metrics, httpserver, logsetup). The RBAC the operator needs: see controller.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any

from jupyternetes import engine as stacks  # the stack engine's public API
from jupyternetes.app.httpserver import make_http_server, serve
from jupyternetes.app.logsetup import setup_logging
from jupyternetes.app.metrics import Metrics
from jupyternetes.controller.controller import Operator
from jupyternetes.controller.queue import Backoff
from jupyternetes.controller.reconcile import ReconcileConfig
from jupyternetes.coordination import election, leader, sharding
from jupyternetes.crd.definitions import TEMPLATE_CRD
from jupyternetes.engine import masking
from jupyternetes.engine.state import backendurl
from jupyternetes.kube.client import Kube, api_client
from jupyternetes.policy import trust
from jupyternetes.policy.rollout import NEXT_START, ROLLOUTS

log = logging.getLogger("jupyternetes.operator")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "operator", help="run the operator: every instance becomes a Pulumi stack",
        description="Watch JupyterNotebookInstances and keep one Pulumi stack per instance "
                    "up to date, mirroring what exists into each instance's status.")
    parser.add_argument("--namespace", action="append", default=[], metavar="NS",
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--namespace-selector", default="", metavar="LABEL=VALUE",
                        help="watch the namespaces whose labels match this selector, as they "
                             "appear and go (e.g. jupyternetes.kadense.io/user-namespace=true, "
                             "the label of the spawner's user namespaces); needs list/watch on "
                             "namespaces. Not together with --namespace")
    parser.add_argument("--template-namespace", action="append", default=[], metavar="NS",
                        help="watch templates only in this namespace (repeatable; default: all "
                             "namespaces, whatever --namespace says, because instances may use "
                             "templates from another namespace). Cluster-wide, the operator "
                             f"needs list/watch on {TEMPLATE_CRD} in a "
                             "ClusterRole; restricted, a Role in each NS is enough")
    parser.add_argument("--template-rollout", choices=ROLLOUTS, default=NEXT_START,
                        help="when a template edit reaches running servers: next-start (default)"
                             " leaves them running and marks them TemplateCurrent=False until "
                             "they restart (like KubeSpawner); immediate replaces their pods "
                             "at once (kernels are lost)")
    trust.add_arguments(parser)
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help="instances processed in parallel (default 4)")
    parser.add_argument("--resync-seconds", type=float, default=300.0, metavar="S",
                        help="re-check every instance this often (default 300; 0 disables)")
    parser.add_argument("--health-port", type=int, default=8080,
                        help="port for /healthz and /readyz (default 8080; 0 disables)")
    parser.add_argument("--metrics-port", type=int, default=8080,
                        help="port for /metrics (default 8080, same server as health; "
                             "0 disables)")
    parser.add_argument("--bind-address", default="0.0.0.0",
                        help="address the HTTP server listens on (default 0.0.0.0)")
    parser.add_argument("--shutdown-grace", type=float, default=30.0, metavar="S",
                        help="on SIGTERM, wait this long for in-flight stack operations")
    parser.add_argument("--degraded-after", type=int, default=5, metavar="N",
                        help="consecutive failed updates before Degraded=True (default 5)")
    parser.add_argument("--backoff-base", type=float, default=1.0, metavar="S")
    parser.add_argument("--backoff-cap", type=float, default=300.0, metavar="S")
    parser.add_argument("--orphan-check-seconds", type=float, default=600.0, metavar="S",
                        help="look for stacks whose instance no longer exists (and destroy "
                             "them, PVCs kept) at start and then this often (default 600; 0: "
                             "at start only)")
    parser.add_argument("--template-retry-seconds", type=float, default=30.0, metavar="S",
                        help="re-check an instance whose template is missing this often")
    parser.add_argument("--template-status-seconds", type=float, default=2.0, metavar="S",
                        help="write each template's instance counts (status.instances, "
                             "status.current) at most this often (default 2)")
    parser.add_argument("--create-ahead", action=argparse.BooleanOptionalAction, default=True,
                        help="apply a new server's PVCs and pods before its stack's first up, "
                             "which takes them over, so the pod does not wait for the engine "
                             "(default on; --no-create-ahead leaves every write to the engine)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", default="json", choices=("json", "text"))
    parser.add_argument("--expected-replicas", type=int, default=1, metavar="N",
                        help="how many operator replicas the deployment runs (default 1); "
                             "more than one is refused with the file:// backend, which one "
                             "replica's disk holds (use postgres:// and --shards N or "
                             "--leader-elect)")
    election.add_arguments(parser)
    sharding.add_arguments(parser)
    stacks.add_stack_arguments(parser)
    parser.set_defaults(func=run)


def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """Settings that change what `up` does; the passphrase and state paths do not."""
    return {
        "project": getattr(settings, "project", None),
        "kubeconfig": getattr(settings, "kubeconfig", None),
        "context": getattr(settings, "context", None),
        "backendUrl": backendurl.redact(getattr(settings, "backend_url", None) or ""),
    }


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format)
    if args.log_level == "debug":
        # The stack workers log at the operator's level too (their stderr is logged, masked).
        os.environ.setdefault("JUPYTERNETES_WORKER_LOG", "DEBUG")
    try:
        settings = stacks.settings_from_args(args)
    except (backendurl.BackendUrlError, stacks.StackConfigError) as exc:
        log.error("%s", exc)
        return 2
    # The backend password is masked in every log line from here on (Events and status carry
    # engine messages, which the stack workers mask the same way).
    masking.OPERATOR_LOG_MASK.add(backendurl.secret_forms(settings.backend_url))
    problem = (backendurl.replicas_error(settings.backend_url, args.expected_replicas)
               or sharding.config_error(args))
    if problem:
        log.error("%s", problem)
        return 2
    try:
        trust_policy = trust.policy_from_args(args)
    except ValueError as exc:
        log.error("--other-resource-kind: %s", exc)
        return 2
    if args.namespace_selector and args.namespace:
        log.error("--namespace-selector and --namespace: choose one (the selector's namespaces "
                  "are the watched ones)")
        return 2
    replica = sharding.replica_id(args)
    settings = dataclasses.replace(settings, replica=replica)
    kube = Kube(api_client(getattr(args, "kubeconfig", None), getattr(args, "context", None)))
    engine = stacks.StackEngine(settings)
    metrics = Metrics()
    config = ReconcileConfig(
        secret_variables=frozenset(settings.secret_variables),
        settings_fingerprint=settings_fingerprint(settings),
        degraded_after=args.degraded_after,
        template_retry_seconds=args.template_retry_seconds,
        template_rollout=args.template_rollout,
        trust_policy=trust_policy,
        create_ahead=args.create_ahead,
    )
    operator = Operator(kube, engine, namespaces=args.namespace,
                        template_namespaces=args.template_namespace, workers=args.workers,
                        resync_seconds=args.resync_seconds, config=config, metrics=metrics,
                        backoff=Backoff(base=args.backoff_base, cap=args.backoff_cap),
                        shutdown_grace=args.shutdown_grace,
                        template_status_seconds=args.template_status_seconds,
                        orphan_seconds=args.orphan_check_seconds,
                        namespace_selector=args.namespace_selector)

    elector: leader.LeaderElector | None = None
    shard_manager = (sharding.make_manager(args, kube, backendurl.redact(settings.backend_url),
                                           replica, operator, engine, metrics)
                     if args.shards else None)
    if args.leader_elect and shard_manager is None:
        try:
            leader.validate(args.leader_election_lease_duration,
                            args.leader_election_renew_deadline,
                            args.leader_election_retry_period)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        elector = election.make_elector(args, kube, backendurl.redact(settings.backend_url),
                                        operator, metrics)
        operator.leading = elector.is_leader

    def readiness() -> tuple[bool, dict]:
        if shard_manager is not None:
            return operator.ready(), {**shard_manager.status(), "ready": operator.ready()}
        if elector is None:
            return operator.ready(), {"leaderElection": False, "ready": operator.ready()}
        doc = elector.status()
        # A standby is ready: healthy and waiting; the leader once its watches synced.
        ok = operator.ready() if doc["leading"] else not elector.lost
        return ok, {**doc, "ready": ok}

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    servers = []
    ports = {p for p in (args.health_port, args.metrics_port) if p}
    for port in sorted(ports):
        server = make_http_server(
            args.bind_address, port,
            health=operator.healthy if port == args.health_port else None,
            ready=readiness if port == args.health_port else None,
            metrics=metrics if port == args.metrics_port else None)
        serve(server)
        servers.append(server)
        log.info("serving http on %s:%d", args.bind_address, server.server_address[1])

    elector_stop = threading.Event()
    elector_thread = None
    if shard_manager is not None:
        operator.start()
        elector_thread = threading.Thread(target=shard_manager.run, args=(elector_stop,),
                                          name="shard-leases", daemon=True)
        elector_thread.start()
    elif elector is None:
        # --no-leader-elect: the admin runs this as the only operator on its state, so it is the
        # writer from now on, as a leader is from its Lease's acquisition, and the lock rule is
        # the same (locks.py): another host's lock written before now is a predecessor's (a pod
        # rescheduled elsewhere), whose writer has stopped. Without this such locks blocked
        # their stacks forever.
        operator.leader_since = time.time()
        operator.start()
    else:
        elector_thread = threading.Thread(target=elector.run, args=(elector_stop,),
                                          name="leader-election", daemon=True)
        elector_thread.start()
    while not stop.wait(1.0):
        pass
    # In-flight operations finish (or are abandoned) while the Lease is still renewed; only
    # then is it released, so a standby never starts on a stack this replica still writes.
    if shard_manager is not None:
        shard_manager.stop_acquiring()
    abandoned = operator.stop()
    if elector_thread is not None:
        elector_stop.set()
        elector_thread.join(10)
        if abandoned:
            # Abandoned operations must not outlive the Lease(s) (another replica may take over).
            election.kill_engine_processes()
        if shard_manager is not None:
            shard_manager.release_all()
        elif elector is not None:
            elector.release()
    engine.close()  # idle pre-started workers; they would die with us anyway, this is tidier
    for server in servers:
        server.shutdown()
        server.server_close()
    log.info("stopped%s", f" (abandoned: {', '.join(abandoned)})" if abandoned else "")
    return 0


__all__ = ["add_parser", "run"]
