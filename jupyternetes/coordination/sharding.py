"""Sharded replicas wired into the operator process: flags, and what holding, acquiring and
losing a shard do to the operator (the decisions are shards.py, the Leases shardleases.py).

`--shards N` (N > 0) replaces the single leader: every replica is active for the shards it
holds. Each replica watches every instance (the watch caches are cheap) but its workers start
nothing for an instance whose shard it does not hold; such a key is dropped, and enqueued again
by the replica that acquires the shard. Duties done once for all replicas:
- orphaned stacks: every replica destroys only those of the shards it holds (orphans.py);
- template status counts: written by the holder of shard 0 only (every replica sees every
  instance, so any could count; one writer avoids conflicting patches);
- stale stack locks and pending operations: cleared per shard by its new holder, judged with
  the time it acquired that shard (locks.py), before its instances are enqueued.
`--shards 0` (the default) keeps the single-leader election (election.py) exactly as it was.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import Any

from jupyternetes.app.metrics import Metrics
from jupyternetes.coordination import election, leader, shards
from jupyternetes.coordination.leasestore import KubeLeaseStore
from jupyternetes.coordination.shardleases import ShardManager
from jupyternetes.engine.runtime import engineprocs
from jupyternetes.kube.client import Kube

log = logging.getLogger("jupyternetes.operator")

SINGLETON_SHARD = 0  # its holder writes the template status counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sharding (several active replicas)")
    group.add_argument("--shards", type=int, default=0, metavar="N",
                       help="hash instances into N shards, each owned by one replica through "
                            "a Lease <leader-election-name>-shard-<i>-of-<N>; every replica "
                            "reconciles the instances of the shards it holds, and replicas share "
                            "them fairly. Same N on every replica; needs a shared backend "
                            "(postgres://) for more than one replica; a replica does no work "
                            "while a live replica runs with another N. 0 (default): one leader "
                            "does all the work. The Lease timings are the "
                            "--leader-election-* ones")
    group.add_argument("--replica-id", default=None, metavar="ID",
                       help="this replica's identity in the shard Leases, the stack history "
                            "and status.stack.lastUpdate.replica; unique among running "
                            "replicas (default: $POD_NAME, else hostname_pid)")


def replica_id(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return args.replica_id or env.get("POD_NAME") or leader.default_identity()


def config_error(args: argparse.Namespace) -> str | None:
    """A message naming the flag to change, or None."""
    if args.shards < 0:
        return f"--shards must be 0 (no sharding) or a positive shard count, got {args.shards}"
    if args.shards and not args.leader_elect:
        return ("--shards needs the Lease API (shard Leases replace the leader Lease): drop "
                "--no-leader-elect, or use --shards 0")
    if args.shards:
        try:
            leader.validate(args.leader_election_lease_duration,
                            args.leader_election_renew_deadline,
                            args.leader_election_retry_period)
        except ValueError as exc:
            return str(exc)
    return None


def make_manager(args: argparse.Namespace, kube: Kube, backend_url: str, replica: str,
                 operator: Any, engine: Any, metrics: Metrics) -> ShardManager:
    """The shard manager wired to the operator and its engine (see the module docstring)."""
    namespace = args.leader_election_namespace or election.default_lease_namespace()
    base = args.leader_election_name or election.default_lease_name(backend_url, args.namespace)
    count = args.shards

    def in_shard(shard: int) -> Any:
        return lambda stack: shards.shard_of_stack(stack, count) == shard

    def acquired(shard: int, since: float, takeover: bool) -> None:
        mine = in_shard(shard)
        # Asked per stack, right before each removal or repair: a shard lost meanwhile stops it.
        cleared = operator.engine_clear_locks(
            stacks=lambda stack: mine(stack) and manager.holds(shard))
        if cleared:
            metrics.locks_cleared.inc(
                sum(1 for line in cleared if str(line).startswith("removed stale lock")))
        manager.serve(shard)
        keys = [key for watcher in operator.instance_watchers for key in watcher.cached_keys()
                if shards.shard_of_key(key, count) == shard]
        for key in keys:
            operator.queue.add(key)
        if shard == SINGLETON_SHARD:
            operator.mark_all_templates()
        log.info("shard %d: %d instance(s) enqueued%s", shard, len(keys),
                 " after a takeover" if takeover else "")

    def lost(shard: int) -> None:
        # Before the Lease can lapse for another replica (renew deadline < lease duration):
        # then the next holder may remove the locks these engines leave (locks.py).
        pids = engineprocs.kill(in_shard(shard))
        log.error("shard %d lost: killed %d engine process(es) of its stacks", shard, len(pids))

    def busy(shard: int) -> bool:
        """In-flight reconciles of the shard, or engine operations on its stacks."""
        return (any(shards.shard_of_key(key, count) == shard for key in operator.in_flight())
                or any(shards.shard_of_stack(s, count) == shard for s in engineprocs.stacks()))

    manager = ShardManager(
        KubeLeaseStore(kube.api, namespace, base), replica, count, base,
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
        on_acquired=acquired, on_lost=lost, busy=busy,
        on_held=metrics.shards_held.set, on_takeover=metrics.shard_takeovers.inc)
    operator.owns = manager.serves_key
    operator.stack_filter = manager.holds_stack
    operator.singleton = lambda: manager.holds(SINGLETON_SHARD)
    if operator.orphans is not None:
        operator.orphans.owns = manager.holds_stack
    engine.lock_since = manager.since_for_stack
    # One gate for every write: status, Events, finalizers (the kube edge) and engine
    # operations (engineprocs), open while the stack's shard is held and renewed (also while it
    # is being released: its in-flight work ends before the release).
    operator.fence.guard(manager.writes_stack)
    engineprocs.set_gate(operator.fence.allows)
    log.info("sharding: %d shards on Leases %s/%s-shard-*-of-%d, this replica is %s", count,
             namespace, base, count, replica)
    return manager
