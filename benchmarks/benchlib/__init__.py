"""Shared plumbing of the benchmark scripts, one module per concern.

- `cli`: a script's options, progress on stderr, the error that stops it, its exit code;
- `fixtures`: the cluster, CRDs, seed template, namespaces, volumes and operator of one run;
- `procs`: CPU, RSS and PSS of process trees, sampled from /proc;
- `waiting`: waiting from outside the operator (a polled condition, pods seen on our watch);
- `summaries`: percentiles and the other figures, and the one JSON object on stdout.

Every benchmark runs against a real control plane (the harness's DevCluster on loopback, or the
cluster named by $JUPYTERNETES_BENCH_KUBECONFIG) and the real `jupyternetes operator` running as
a subprocess with the harness-built Pulumi CLI and Kubernetes provider. What is measured comes
from outside the operator where possible (our own pod watch, /proc), and from its /metrics and
log where only the operator knows (time spent in the engine, reconcile counts).

The scripts run as `python benchmarks/NAME.py`, so `benchmarks/` is first on sys.path and this
package is importable as `benchlib` without installing anything.
"""
