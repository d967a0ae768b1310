"""Sharding of instances over operator replicas (pure: plain data in, plans out).

Instances are hashed into a fixed number of shards; each shard is owned by one replica through a
Lease (shardleases.py does the I/O). This module decides, from what one replica observed:

- `shard_of_stack` / `shard_of`: which shard an instance belongs to. The hash is of the
  instance's Pulumi *stack name* (naming.stack_name, a function of namespace and name): the
  same shard for the instance and for its stack, so a lock row or a pending operation found in
  the backend can be judged by the holder of its stack's shard from the stack name alone (a
  shortened stack name cannot be parsed back into the instance's key). SHA-256, never Python's
  `hash()` (salted per process: two replicas would disagree).
- `quotas`: how many shards each live replica should hold. Sorted by replica id, the first
  `shards % replicas` replicas hold ceil(shards / replicas), the others floor: the quotas sum to
  the shard count and differ by at most one, and every replica computes the same quotas from
  the same set of live replicas without talking to the others.
- `plan`: which shards to acquire and which to release. Invariants (tests/unit/test_shards.py,
  property-tested):
  * a shard whose Lease is live (renewed within its duration, as this replica observed it) and
    held by another replica is never acquired: takeover only after its holder stopped renewing;
  * a replica never holds more than its quota after releasing, and acquires only up to it;
  * when the replicas agree on who is live, repeated plans end with every shard held by exactly
    one replica and every replica at its quota.
- Acquiring prefers shards by rendezvous hashing (highest SHA-256 of `replica/shard` first), so
  two replicas looking for free shards at the same moment mostly reach for different ones; a
  clash is harmless anyway (the Lease write carries the resourceVersion: one of them gets 409).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from jupyternetes.crd.naming import stack_name


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def shard_of_stack(stack: str, shards: int) -> int:
    """The shard (0 .. shards-1) of a stack name; stable across processes, hosts and runs."""
    if shards < 1:
        raise ValueError(f"the shard count must be at least 1, got {shards}")
    return _digest(stack) % shards


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the instance `namespace/name` (the shard of its stack)."""
    return shard_of_stack(stack_name(namespace, name), shards)


def shard_of_key(key: str, shards: int) -> int:
    """The shard of an instance key `namespace/name`."""
    namespace, _, name = key.partition("/")
    return shard_of(namespace, name, shards)


def quotas(shards: int, replicas: Iterable[str]) -> dict[str, int]:
    """Each live replica's number of shards (see the module docstring)."""
    ids = sorted(set(replicas))
    if not ids:
        return {}
    base, extra = divmod(shards, len(ids))
    return {rid: base + (1 if rank < extra else 0) for rank, rid in enumerate(ids)}


def preference(replica: str, shard: int) -> int:
    """Rendezvous score: higher is wanted first by `replica` (and released last)."""
    return _digest(f"{replica}/{shard}")


@dataclass(frozen=True)
class ShardView:
    """One shard's Lease as this replica observed it. `holder` is "" when nobody holds it (never
    acquired, or released); `live` when its holder renewed it within its lease duration, as
    measured on this replica's own clock since it last saw the record change."""

    index: int
    holder: str
    live: bool

    def free_for(self, replica: str, held: Collection[int]) -> bool:
        """Whether `replica` may take it: nobody holds it, or its holder stopped renewing. A
        record naming `replica` itself that it does not hold (a previous process with the same
        id) counts as another holder's: it must lapse first."""
        if self.index in held:
            return False
        return not self.holder or not self.live


@dataclass(frozen=True)
class Plan:
    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    quota: int = 0


def live_replicas(me: str, members: Iterable[str], views: Iterable[ShardView]) -> frozenset[str]:
    """The replicas to share among: this one, those whose membership Lease is live, and the
    holders of live shard Leases (a replica that holds shards is alive, whatever its
    membership Lease says)."""
    return frozenset({me, *members, *(v.holder for v in views if v.live and v.holder)})


def plan(me: str, views: Sequence[ShardView], held: Collection[int],
         replicas: Collection[str]) -> Plan:
    """What replica `me` should do next. `views`: every shard's Lease (index 0..n-1); `held`:
    the shards `me` holds (and renews) right now; `replicas`: the live replicas
    (`live_replicas`)."""
    n = len(views)
    quota = quotas(n, {me, *replicas})[me]
    mine = sorted((i for i in held if 0 <= i < n), key=lambda i: preference(me, i))
    if len(mine) > quota:
        # Keep the ones this replica prefers; give up the rest.
        return Plan(release=tuple(sorted(mine[:len(mine) - quota])), quota=quota)
    room = quota - len(mine)
    if room <= 0:
        return Plan(quota=quota)
    # Free shards first (nobody loses anything), then lapsed ones (takeovers).
    candidates = sorted((v for v in views if v.free_for(me, held)),
                        key=lambda v: (bool(v.holder), -preference(me, v.index)))
    return Plan(acquire=tuple(v.index for v in candidates[:room]), quota=quota)
