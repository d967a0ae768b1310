"""Rendering a template for an instance (pure, no I/O).

- placeholders: the `{placeholder}` grammar, typed placeholders, substitution on parsed values
- objects: (Template, Instance) -> Rendered manifests with names, labels and owner references
- secretvars: variables from Secrets (`spec.variablesFrom`): decode, merge, say what is wrong
- hubvars: the variables JupyterHub's spawner gives every instance, and their placeholders
- exposure: secret values that a template puts into labels (the SecretExposed condition)
"""
