"""Jupyternetes: JupyterHub notebook servers from templates, one Pulumi stack per user server.

How one server flows through these packages: docs/flow.md.

- crd: the two resources (names, CRDs, model, naming, labels, conditions)
- render: placeholders and rendering a template for an instance (pure)
- policy: pure rules (ownership/adoption, PVC changes, rollouts)
- kube: the Kubernetes edge (client, errors, list/watch, caches, writes)
- controller: the reconcile loop
- coordination: Leases between operator replicas
- engine: the Pulumi edge (one stack per instance)
- app: the `jupyternetes` command and the operator process
- admin: preview, fleet preview, lint
- spawner: the JupyterHub spawner (needs crd, kube and render only)
- deploy: the install program (`pulumi up`)
"""

__version__ = "0.1.0"
