"""The reconcile loop: watch instances and their pods, queue them, reconcile each into a stack.

- controller: watches feed the work queue, workers drain it through the reconciler
- namespacescope: the namespaces served by label (`--namespace-selector`), found by a watch
- queue: a work queue with client-go's semantics (dedup, one key at a time, backoff)
- reconcile: one instance -> its stack and its status
- noop: the no-op path from the watch caches, and drift flags (pods deleted out of band)
- preflight: ownership and PVC-change checks right before an `up`
- edges: the protocols the reconciler is written against, and one engine call run safely
- teardown: deletion always ends (force-delete)
- orphans: stacks whose instance is gone are destroyed (PVCs kept)
- status: the instance status contract and its builders (pure)
- templates: which instances use a template, and the template's status
"""
