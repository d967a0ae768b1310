"""The two resources, JupyterNotebookTemplate and JupyterNotebookInstance: the contract (pure).

- definitions: group, version, kinds, plurals; the CRDs as package data (manifests/)
- model: typed views of both specs; parse errors name the field
- naming: deterministic object names, label values, stack names, hub instance names
- labels: labels on every managed object, the finalizer, the annotations an admin sets
- conditions: status conditions and the stack result words
- podstatus: a pod -> its `status.pods[entry]` fields (shared by the controller and the spawner)
"""
