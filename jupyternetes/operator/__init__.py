"""The operator: watch instances and their pods, queue them, reconcile each into a Pulumi stack.

Modules, one concern each: `watch` (list+watch with resume), `queue` (work queue with backoff),
`reconcile` (one instance's decisions), `podstatus` (pod -> status mirror, pure), `metrics`
(Prometheus), `run` (wiring and the `jupyternetes operator` command).
"""
