"""The processes: the `jupyternetes` command line and the operator's entry point.

- cli: `jupyternetes` and its `render` subcommand; the others are in their own modules
- operator: `jupyternetes operator`, wired to the controller, leader election or shards
- httpserver: /healthz, /readyz and /metrics
- metrics: the operator's Prometheus metrics
- logsetup: JSON or text log lines with secrets masked
"""
