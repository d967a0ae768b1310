"""Pure rules that keep users' objects and data safe.

- ownership: whose object is it (adoption only of the same instance's objects)
- pvc: what a template edit may do to a user's existing claim
- rollout: when a changed render reaches a running server
- revisions: a template edit as a numbered ControllerRevision, pins, which revision an instance
  renders
- staged: the staged rollout's judge (maxUnavailable, maxFailures halt, canary, approval)
- trust: which namespaces may use a template, which kinds it may make, which Secrets
  variablesFrom may read (the operator never grants more than a template's author could do)
"""
