"""The install (`pulumi up` from the repository root; entry point stacks/__main__.py).

- settings: `pulumi config` values -> one validated DeploySettings
- rbac: least-privilege RBAC for the operator and the hub (pure)
- manifests: the other objects as plain manifests (pure); the example template is package data
- program: the Pulumi program declaring all of it
"""
