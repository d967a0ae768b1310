"""More than one operator replica: Leases decide who writes which stack.

- leader: leader election on a `coordination.k8s.io/v1` Lease
- election: leader election wired into the operator process
- leasestore: the shard and membership Leases as a store
- shardleases: one Lease per shard, held by the replica that reconciles its instances
- shards: which shard an instance belongs to, and fair plans (pure)
- sharding: sharded replicas wired into the operator process
"""
