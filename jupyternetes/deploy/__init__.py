"""The deploy stack (`pulumi up` from the repository root): settings, RBAC, manifests, program."""
