"""The Kubernetes edge: plain JSON in and out, the apiserver's own messages in errors.

- client: client wiring and the operator's calls (both CRDs, pods, status, finalizers, Events)
- errors: apiserver failures as `KubeError`
- listwatch: paged lists and watch streams as plain JSON
- informer: the generic list+watch loop with a local cache (used by the operator and the spawner)
- caches: what the operator's watch caches keep of each object, and their sources
- writes: conflict-safe read-modify-write
- statusmerge: how a status write merges with other writers' fields (pure)
- eventkey: which Events are the same Event repeated (pure)
- objects: reading one object of any kind (ownership checks)
"""
