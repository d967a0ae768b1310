"""More than one operator replica: Leases decide who writes which stack.

- lease: the one Lease algorithm (acquire, renew stamped before the request, bounded calls,
  renew deadline and watchdog, release), with injected clocks; both modes are built on it
- leasestore: the Leases in the apiserver (no client retries) and their names
- membership: one membership Lease per replica, carrying its shard count; no work while a
  live replica disagrees
- fence: the one gate every write (kube edge, engine edge) passes
- leader: leader election on the Lease algorithm
- election: leader election wired into the operator process
- shardleases: one Lease per shard, held by the replica that reconciles its instances
- shards: which shard an instance belongs to, and fair plans (pure)
- sharding: sharded replicas wired into the operator process
"""
